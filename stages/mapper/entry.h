// Compact owning view of one transcript line, as far as the Mapper needs it.
//
// Contract: EntryParser::parse reads one padded JSONL line with simdjson On-Demand (one parser per
// EntryParser, reused) and copies out only the fields the span model uses (transcript-format §4,
// §5). Keys are matched in any order (Claude Code reorders them between versions); unknown keys and
// unknown entry types are skipped. simdjson stays out of this header (two-core builds).
// Thread: one EntryParser per thread. Errors: returned as ParseStatus, never thrown.
#pragma once

#include "pipeline/json_escape.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/span.h"
#include "pipeline/text.h"

namespace chsync::mapper {

enum class EntryType : std::uint8_t {
  kOther,  // unknown or not span-relevant (file-history-snapshot, attachment, ...)
  kUser,
  kAssistant,
  kSystem,
  kSummary,
  kProgress,  // only agent_progress links are kept
};

// One content block of an assistant entry (the corpus holds one per entry, but any count works).
struct Block {
  enum class Type : std::uint8_t { kText, kThinking, kToolUse, kOther };
  Type type = Type::kOther;
  std::string type_name;      // the raw "type" for kOther (redacted_thinking, server_tool_use, ...)
  std::string text;           // text / thinking text (never the signature)
  std::string tool_id;        // tool_use.id
  std::string tool_name;      // tool_use.name
  std::string input_json;     // tool_use.input as raw JSON text
  std::string task_prompt;    // tool_use.input.prompt (Task/Agent link for 1.0.x sidechains)
  std::string subagent_type;  // tool_use.input.subagent_type
  bool operator==(const Block& o) const noexcept {
    return type == o.type && type_name == o.type_name && text == o.text && tool_id == o.tool_id &&
           input_json == o.input_json;
  }
};

// One tool_result block of a user entry.
struct ToolResult {
  std::string tool_use_id;
  std::string content;  // string content, or text blocks joined with "\n"
  bool is_error = false;
};

struct Entry {
  EntryType type = EntryType::kOther;
  std::uint32_t file = 0;
  std::uint64_t line = 0;
  std::uint32_t seq = 0;  // position in the bundle (file order, then line order)
  std::int64_t ts_ms = 0;
  bool has_ts = false;

  std::string uuid;
  std::string parent_uuid;
  std::string session_id;
  std::string agent_id;  // agentId (entries of agent files, 2.0+)
  std::string cwd;
  std::string git_branch;
  std::string version;
  bool is_sidechain = false;
  bool is_meta = false;
  bool is_compact_summary = false;
  bool is_api_error = false;

  // user
  bool content_is_string = false;
  std::string text;  // string content, or text blocks joined with "\n" (images as "[image]")
  bool has_image = false;
  std::vector<ToolResult> results;
  std::string tur_agent_id;  // toolUseResult.agentId (Task/Agent result)
  std::string tur_error;     // toolUseResult when it is a string (error text)
  std::int64_t tur_total_tokens = -1;
  std::int64_t tur_total_duration_ms = -1;
  std::int64_t tur_total_tool_use_count = -1;
  std::string tur_usage_json;  // toolUseResult.usage raw JSON (metadata only, never counted)
  std::string tur_agent_type;

  // assistant
  std::string message_id;
  std::string request_id;
  std::string model;
  std::string stop_reason;  // empty: null
  Usage usage;
  std::vector<Block> blocks;

  // system
  std::string subtype;
  std::string level;
  std::string content;  // system content text
  std::string compact_trigger;
  std::int64_t compact_pre_tokens = -1;
  std::int64_t duration_ms = -1;  // turn_duration

  // summary
  std::string summary;
  std::string leaf_uuid;

  // progress (agent_progress): data.agentId and parentToolUseID
  std::string progress_agent_id;
  std::string parent_tool_use_id;

  // seed message hash (MapOptions::message_hash)
  std::string message_hash;
};

enum class ParseStatus : std::uint8_t {
  kOk,
  kSkipped,    // valid JSON object of a type the Mapper ignores (nothing stored)
  kBadJson,    // not valid JSON (or truncated)
  kBadSchema,  // valid JSON but not an object
};

class EntryParser {
 public:
  EntryParser();
  ~EntryParser();
  EntryParser(const EntryParser&) = delete;
  EntryParser& operator=(const EntryParser&) = delete;

  // `data` must be readable for `capacity` bytes (>= size + simdjson padding). Invalid UTF-8 is
  // replaced by U+FFFD on a private copy first (utf8_repaired = true). `error` gets a message when
  // the status is not kOk/kSkipped. with_hash: also compute the seed message hash.
  ParseStatus parse(const char* data, std::size_t size, std::size_t capacity, bool with_hash,
                    Entry& out, bool& utf8_repaired, std::string& error);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Text helpers of the turn rules (docs/mapping.md "Turns").
inline bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}
std::string_view ltrim(std::string_view s) noexcept;
// Outputs of local commands typed by the user: they belong to the current turn, never start one.
bool is_command_output(std::string_view text) noexcept;
// A real user prompt: a main-context user entry with text or an image that is not meta, a compact
// summary, a tool result, an interruption notice or command output.
bool is_prompt(const Entry& e) noexcept;

// Replaces every invalid UTF-8 sequence by U+FFFD (maximal-subpart rule). Returns true if changed.
bool repair_utf8(std::string_view in, std::string& out);
// Largest prefix length <= max_bytes that does not split a UTF-8 sequence (pipeline/text.h).
using chsync::utf8_cut;
// JSON string literal (with quotes) for s: see pipeline/json_escape.h.
using chsync::append_json_string;

}  // namespace chsync::mapper
