// Span: the owning value type that flows from the Mapper to the exporters.
//
// Contract: a Span owns all of its bytes (no views into parser buffers), so it can cross queues and
// threads freely. Field meanings follow the console JSON contract in docs/design.md (the 19 seed
// keys); the extra semantic fields (usage, session, tool ids) feed the OTLP and Langfuse encoders.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chsync {

enum class SpanKind : std::uint8_t {
  kTrace,       // root of a turn (or of a session under --trace-per-session)
  kGeneration,  // one API response (entries grouped by requestId / message.id)
  kSpan,        // a tool call (tool_name set) or a turn span under --trace-per-session
  kAgent,       // a subagent invocation, nested under its Task/Agent tool span
  kEvent,       // compaction, system entries: zero-length
};
std::string_view to_string(SpanKind kind) noexcept;

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

// A metadata value. kJson holds already-serialised JSON text (object, array, ...).
struct Attr {
  enum class Type : std::uint8_t { kString, kInt, kBool, kDouble, kJson };
  std::string key;
  Type type = Type::kString;
  std::string str;  // kString, kJson
  std::int64_t num = 0;
  double dbl = 0;
  bool flag = false;

  static Attr string(std::string k, std::string v) {
    return {std::move(k), Type::kString, std::move(v)};
  }
  static Attr integer(std::string k, std::int64_t v) { return {std::move(k), Type::kInt, {}, v}; }
  static Attr boolean(std::string k, bool v) { return {std::move(k), Type::kBool, {}, 0, 0, v}; }
  static Attr real(std::string k, double v) { return {std::move(k), Type::kDouble, {}, 0, v}; }
  static Attr json(std::string k, std::string v) {
    return {std::move(k), Type::kJson, std::move(v)};
  }
};

// Token usage of one API response, Anthropic semantics: input excludes the cache buckets.
struct Usage {
  bool present = false;
  std::int64_t input_tokens = 0;
  std::int64_t cache_read_input_tokens = 0;
  std::int64_t cache_creation_input_tokens = 0;
  std::int64_t cache_creation_5m = -1;  // -1: the split is absent in this version
  std::int64_t cache_creation_1h = -1;
  std::int64_t output_tokens = 0;
  bool final = true;  // false: no entry of the response had a stop_reason (streaming count)
  std::int64_t prompt_total() const noexcept {
    return input_tokens + cache_read_input_tokens + cache_creation_input_tokens;
  }
};

// One part of a chat message, typed as the GenAI conventions type message parts (docs/mapping.md
// "Messages"). Encoders render the same parts as GenAI JSON, OpenInference flattened keys or
// Langfuse chat messages; the mapper has already applied --redact, --no-content and truncation.
struct MessagePart {
  enum class Type : std::uint8_t { kText, kReasoning, kToolCall, kToolCallResponse };
  Type type = Type::kText;
  std::string content;     // text, reasoning, tool result text; kToolCall: arguments as JSON text
  std::string id;          // kToolCall / kToolCallResponse: the tool_use_id
  std::string name;        // kToolCall: tool name; kToolCallResponse: tool name when known
  bool is_error = false;   // kToolCallResponse
  bool truncated = false;  // content was cut to the field budget (kToolCall: arguments then hold a
                           // JSON string of the cut text, since cut JSON is no longer JSON)
  std::uint64_t original_bytes = 0;  // set when truncated
};

// role: "user", "assistant" or "tool" (a message of tool_call_response parts).
struct Message {
  std::string role;
  std::vector<MessagePart> parts;
};

struct Span {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_id{};
  bool has_parent = false;
  std::int64_t start_ms = 0;  // Unix epoch milliseconds (transcripts carry ms precision)
  std::int64_t end_ms = 0;
  SpanKind kind = SpanKind::kSpan;
  std::string name;
  std::optional<std::string> input;
  std::optional<std::string> output;
  std::optional<std::string> model;
  std::int64_t tokens_in = 0;
  std::int64_t tokens_out = 0;
  bool is_streaming = false;
  std::optional<std::string> tool_name;
  std::optional<std::string> tool_result;
  bool is_error = false;
  std::string source_file;  // relative to the input root, or archive + "!" + member
  std::uint64_t source_line = 0;
  std::vector<Attr> metadata;  // ordered; console prints it as a JSON object

  // Semantic fields for protocol encoders (not printed as top-level console keys).
  std::string session_id;
  std::string user_id;
  std::string status_message;  // set with is_error
  Usage usage;                 // generations only
  std::string stop_reason;     // Anthropic's raw value (end_turn, tool_use, ...)
  std::string finish_reason;   // stop_reason mapped to the OTel set: stop, length, content_filter,
                               // tool_call, error (empty: the response does not say)
  std::string trace_name;  // roots only (turn roots, session root, unlinked agents): --trace-name
  // Generations: the call's new input (prompt, tool results) and its output content blocks.
  std::vector<Message> input_messages;
  std::vector<Message> output_messages;
  std::string response_id;  // message.id
  std::string tool_use_id;
  std::string agent_id;
  std::string agent_name;
  bool input_is_json = false;  // input holds JSON text (tool arguments)
  bool output_is_json = false;

  // Delivery bookkeeping: which bundle produced it (for per-bundle ack accounting).
  std::uint64_t bundle_seq = 0;

  std::uint64_t span_key() const noexcept;  // the 8 span-id bytes as a big-endian integer
};

// Lower-case hex of arbitrary bytes.
std::string to_hex(const std::uint8_t* data, std::size_t n);
inline std::string to_hex(const TraceId& id) { return to_hex(id.data(), id.size()); }
inline std::string to_hex(const SpanId& id) { return to_hex(id.data(), id.size()); }
SpanId span_id_from_key(std::uint64_t key) noexcept;

class JsonWriter;
// A metadata value as JSON (kJson as its text, null when empty; doubles as JsonWriter writes
// them), and the whole list as one object: the console line and Langfuse legacy metadata.
void write_attr_value(JsonWriter& w, const Attr& a);
void write_metadata(JsonWriter& w, const std::vector<Attr>& metadata);

// Approximate heap footprint, used to bound queues by bytes.
std::size_t approx_bytes(const Span& span) noexcept;

// RFC 3339 UTC with milliseconds: 2025-09-03T00:52:38.373Z
std::string format_rfc3339_ms(std::int64_t epoch_ms);
// Parses YYYY-MM-DDTHH:MM:SS[.fff...](Z|+hh:mm). Returns false on malformed input.
bool parse_rfc3339_ms(std::string_view s, std::int64_t& epoch_ms) noexcept;

}  // namespace chsync
