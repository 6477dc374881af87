// Dead-letter file: requests a backend rejected for good, kept next to the state so that
// `chsync replay-dead-letters` can send them again. One JSON object per line:
//   {"time","instance","endpoint","content_type","status","reason","span_ids":[hex...],
//    "body_b64"}   (body uncompressed, as encoded for that backend)
// Thread-safety: write() may be called from any thread (serialised by a mutex; each record is
// one write(2) with O_APPEND, so concurrent writers never interleave records).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "backends/exporter.h"

namespace chsync {

std::string dead_letter_path(const std::string& state_path);

struct DeadLetter {
  std::string time, instance, endpoint, content_type, reason;
  int status = 0;
  std::vector<std::uint64_t> span_keys;
  std::string body;
};

class DeadLetterWriter {
 public:
  explicit DeadLetterWriter(std::string path);
  void write(const std::string& instance, const Ack& ack, const std::vector<std::uint64_t>& keys);
  // A record read back (replay keeps what is still dead), stamped with the time of this write.
  void write(const DeadLetter& d);
  // A line kept byte for byte (replay keeps lines it cannot read); a newline is added.
  void write_raw(std::string_view line);
  std::uint64_t written() const { return written_; }
  // False once a record could not be written whole (open or write failed: disk full...).
  bool ok() const { return ok_; }

 private:
  void append(const std::string& line);

  std::string path_;
  std::mutex mu_;
  std::uint64_t written_ = 0;
  bool ok_ = true;
};

// A line of the file that is not a record: kept as read, never replayed (design: bad input is
// named by file and line, counted, and loses nothing).
struct BadDeadLetterLine {
  std::uint64_t line = 0;  // 1-based
  std::string kind;        // "not_json", "truncated", "schema", "span_id", "base64"
  std::string reason;      // for the operator, e.g. "span_ids[2] 'xyz' is not 16 hex digits"
  std::string text;        // the line as read, without its newline
};

// The file in its order: every non-blank line is either a record or a bad line.
struct DeadLetterFile {
  struct Line {
    std::uint64_t number = 0;  // 1-based line in the file
    bool bad = false;
    std::size_t index = 0;  // into letters or bad
  };
  std::vector<DeadLetter> letters;
  std::vector<BadDeadLetterLine> bad;
  std::vector<Line> order;
};

// Reads and checks every line. A record needs `instance` (non-empty), `endpoint`, `span_ids`
// (strings of 16 hex digits) and `body_b64` (base64); `time`, `content_type`, `reason` and
// `status` are optional but must have their types. A missing file reads as empty.
DeadLetterFile read_dead_letter_file(const std::string& path);

}  // namespace chsync
