// Reader stage: turns one input file (plain, .gz, .zst, archive member, stdin) into lines.
//
// Input: a FileRef (or bytes already in memory for archive members). Output: a callback per line
// with its 1-based line number and byte offset (in the decompressed stream), and a pointer that is
// readable for `padded_capacity` bytes (>= line size + 64: simdjson's padding) so the parser can
// run on the buffer in place without a copy.
// Memory: one buffer of chunk_bytes, grown only for a line longer than it, up to max_line_bytes;
// a longer line is skipped (counted, reported by line number) and never held whole.
// A final line without '\n' is passed with no_newline = true: the caller decides whether it is a
// complete record (it parses) or a truncated tail still being written.
// Memory (zstd): the decoder window, at most max_window_bytes (a larger one is an error).
// Errors: open/read/decompression errors end that file (Result::error), never the run.
// Thread: any; one Reader call per thread at a time. Blocks on file I/O only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "pipeline/bundle.h"

namespace chsync {

struct ReaderOptions {
  std::size_t chunk_bytes = 4u << 20;
  std::size_t max_line_bytes = 64u << 20;
  std::uint64_t start_offset = 0;  // plain files: resume here (must be a line start)
  std::uint64_t start_line = 0;    // line number of start_offset minus one
  // zstd: the largest decoder window accepted (stages/reader/zstd_decoder.h); a frame asking for
  // more fails the file with a clear error. The sync sets
  // decoder_window_budget_bytes(--max-memory); 0 keeps libzstd's own limit (128 MiB).
  std::uint64_t max_window_bytes = 0;
};

struct ReadResult {
  std::uint64_t bytes = 0;       // decompressed bytes consumed
  std::uint64_t lines = 0;       // complete lines delivered
  std::uint64_t too_long = 0;    // lines skipped for exceeding max_line_bytes
  std::uint64_t end_offset = 0;  // offset just past the last '\n' seen
  std::uint64_t end_line = 0;    // line number of the last complete line
  bool had_tail = false;         // data after the last '\n' was delivered with no_newline
  std::string error;             // non-empty: the file could not be (fully) read
};

// Called per line. `line` excludes the '\n'. Return false to stop reading early.
using LineFn = std::function<bool(std::string_view line, std::size_t padded_capacity,
                                  std::uint64_t line_no, std::uint64_t offset, bool no_newline)>;
// Called for each skipped oversize line.
using TooLongFn = std::function<void(std::uint64_t line_no, std::uint64_t bytes)>;

// Reads a file from disk (plain, gzip, zstd; kStdin reads fd 0). Archive members are not read
// here: the feeder reads them (stages/reader/archive_reader.h) and passes their bytes to
// read_memory_lines, or spools them to a file read here.
ReadResult read_lines(const FileRef& file, const ReaderOptions& options, const LineFn& on_line,
                      const TooLongFn& on_too_long);

// Reads bytes from memory as lines (used for spooled archive members and tests).
ReadResult read_memory_lines(std::string_view data, const ReaderOptions& options,
                             const LineFn& on_line, const TooLongFn& on_too_long);

}  // namespace chsync
