// Mapper stage: turns the entries of one session bundle into spans.
//
// Input: the lines of every file of a bundle, fed file by file in file order (add_line), each with
// its 1-based line number and byte offset. Lines are parsed here (simdjson On-Demand; one parser
// per BundleMapper, reused). Output: finished spans (finish), following docs/mapping.md. Thread: a
// BundleMapper is used by one thread at a time; many run in parallel on different bundles. Errors:
// a malformed line is counted in MapStats and reported through the BadLine callback; it never stops
// the bundle. Blocks on nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/bundle.h"
#include "pipeline/span.h"

namespace chsync {

class Redactor;

struct MapOptions {
  bool trace_per_session = false;
  std::string trace_name =
      "claude-code";  // --trace-name: the name of every root (Langfuse trace name)
  std::size_t max_field_bytes = std::size_t{64} << 10;  // per-field truncation, UTF-8 safe
  bool message_hash = false;                            // add the seed's message hash to metadata
  std::string user_id;                                  // --user-id
  std::string user_from_path_regex;                     // --user-from-path (first capture group)
  std::int64_t now_ms = 0;                              // "now" for --settle decisions
  std::int64_t settle_ms =
      std::int64_t{10} * 60 * 1000;  // a turn whose file changed less than this ago is held
  std::int64_t since_ms = 0;         // --since/--until on entry timestamps (0: unbounded)
  std::int64_t until_ms = 0;
  // Content policy (stages/redact), applied before truncation and before content is hashed:
  const Redactor* redactor = nullptr;  // --redact: secrets in content become [REDACTED:kind]
  bool no_content = false;             // --no-content: structure and usage only
};

struct MapStats {
  std::uint64_t lines = 0;
  std::uint64_t bad_lines_json = 0;    // not valid JSON
  std::uint64_t bad_lines_utf8 = 0;    // invalid UTF-8 replaced (line still used)
  std::uint64_t bad_lines_schema = 0;  // valid JSON but unusable (e.g. not an object)
  std::uint64_t turns = 0;
  std::uint64_t turns_held = 0;  // not final yet (--settle)
  std::uint64_t spans = 0;
  std::uint64_t generations = 0;
  std::uint64_t tool_spans = 0;
  std::uint64_t agents = 0;
  std::uint64_t agents_unlinked = 0;
  std::uint64_t events = 0;
};

struct BadLine {
  std::string file;  // display path
  std::uint64_t line = 0;
  std::string kind;  // "json", "utf8", "schema", "too_long", "truncated_tail"
  std::string message;
};

class BundleMapper {
 public:
  using BadLineFn = std::function<void(const BadLine&)>;
  BundleMapper(const MapOptions& options, const Bundle& bundle, BadLineFn on_bad_line);
  ~BundleMapper();
  BundleMapper(const BundleMapper&) = delete;
  BundleMapper& operator=(const BundleMapper&) = delete;

  // file_index: index into bundle.files. `line` must be readable for `padded_capacity` bytes
  // (>= line.size() + 64, simdjson padding); its content is not modified.
  void add_line(std::size_t file_index, std::string_view line, std::size_t padded_capacity,
                std::uint64_t line_no, std::uint64_t offset);

  // Emits all final spans of the bundle (parents before children, deterministic order).
  void finish(std::vector<Span>& out);

  const MapStats& stats() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The seed's GenerateMessageHash: sha256(type + sessionId + timestamp + uuid + message)[0:32 hex],
// computed over one raw JSONL line. Returns false if the line is not a JSON object.
bool seed_message_hash(std::string_view line, std::string& out_hex);

}  // namespace chsync
