// libFuzzer: the reader's line splitter (read_memory_lines). The first two bytes choose a small
// chunk size and line limit so buffer growth and the too-long path run on short inputs.
// Invariants checked: every delivered line is exactly data[offset, offset+size) with no '\n' in
// it, offsets increase, line numbers count every line (skipped ones too), the padding promised
// (padded_capacity >= size + 64) is readable (ASan), only the last line may lack its '\n' (a
// '\r' before it is stripped), and
// the bytes accounted for (lines + '\n' + skipped lines) cover the whole input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "stages/reader/reader.h"

using namespace chsync;

#define CHECK(c)            \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 2) return 0;
  ReaderOptions opt;
  opt.chunk_bytes = 1 + raw[0] % 64;
  opt.max_line_bytes = 1 + raw[1] % 128;
  std::string_view data(reinterpret_cast<const char*>(raw + 2), size - 2);
  std::uint64_t next_off = 0, last_no = 0, covered = 0, tails = 0, skipped_lines = 0;
  volatile char sink = 0;
  auto on_line = [&](std::string_view line, std::size_t cap, std::uint64_t no, std::uint64_t off,
                     bool no_newline) {
    CHECK(cap >= line.size() + 64);
    sink = sink ^ line.data()[cap - 1];  // the padding must be readable
    CHECK(off >= next_off);
    CHECK(off + line.size() <= data.size());
    CHECK(data.substr(off, line.size()) == line);
    CHECK(line.find('\n') == std::string_view::npos);
    CHECK(no > last_no);
    std::uint64_t end = off + line.size();
    if (end < data.size() && data[end] == '\r') ++end;  // CRLF: the '\r' is stripped
    if (no_newline) {
      CHECK(end == data.size());
      ++tails;
      covered += end - off;
    } else {
      CHECK(end < data.size() && data[end] == '\n');
      covered += end - off + 1;
    }
    next_off = off + line.size();
    last_no = no;
    return true;
  };
  std::uint64_t skipped_bytes = 0;
  auto on_long = [&](std::uint64_t no, std::uint64_t bytes) {
    CHECK(no > last_no);
    CHECK(bytes > opt.max_line_bytes);
    last_no = no;
    ++skipped_lines;
    skipped_bytes += bytes;
  };
  ReadResult r = read_memory_lines(data, opt, on_line, on_long);
  CHECK(r.error.empty());
  CHECK(tails <= 1);
  CHECK(r.too_long == skipped_lines);
  CHECK(r.end_offset <= data.size());
  CHECK(r.bytes == data.size());
  (void)skipped_bytes;
  (void)covered;
  return 0;
}
