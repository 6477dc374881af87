// Hand-written OTLP/protobuf encoder (protocols §B.3, §C.5; perf-limits §6: ~25x libprotobuf).
//
// Contract: SpanEncoder::append_span() encodes one chsync::Span, with the GenAI + OpenInference +
// langfuse.* attributes of its profile, as one `ScopeSpans.spans` field (tag, length, Span bytes)
// appended to a caller buffer. Each span is encoded once; a request body is then assembled around
// any contiguous run of such slices by build_request(), so a 413 split re-frames halves without
// re-encoding. Message lengths are computed exactly before writing (no placeholders), strings are
// copied raw (the mapper guarantees valid UTF-8). Not thread-safe: one encoder per thread.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pipeline/json_escape.h"
#include "pipeline/span.h"

namespace chsync::otlp {

// Which attributes a span carries (docs/mapping.md "Backend profiles"): each profile sends what
// its target reads, and every content value once.
enum class Profile : std::uint8_t {
  kGeneric,   // union of the GenAI, OpenInference and langfuse.* non-content keys (a collector may
              // forward anywhere); content as gen_ai.input/output.messages (tools:
              // gen_ai.tool.call.arguments/result); metadata as chsync.<key>
  kLangfuse,  // langfuse.* + the gen_ai keys Langfuse reads; content as langfuse.observation.input/
              // output (chat messages for generations); trace-level keys on roots only; metadata
              // once, as langfuse.observation.metadata.<key> (roots: langfuse.trace.metadata.<key>)
  kPhoenix,   // OpenInference only: llm.input_messages/llm.output_messages on LLM spans,
              // input.value/output.value elsewhere, metadata as one JSON object, agent.name
};
std::string_view to_string(Profile p) noexcept;

using StringPairs = std::vector<std::pair<std::string, std::string>>;

// Low-level wire helpers (exposed for tests and the bench).
namespace pb {
constexpr std::size_t varint_size(std::uint64_t v) noexcept {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
inline char* write_varint(char* p, std::uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>(static_cast<std::uint8_t>(v) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}
// Size of a LEN field with a 1-byte tag and a payload of n bytes.
constexpr std::size_t len_field_size(std::size_t n) noexcept { return 1 + varint_size(n) + n; }
}  // namespace pb

struct EncoderOptions {
  // A constructor rather than an aggregate, so {profile, flags} stays valid as fields are added.
  EncoderOptions(Profile p = Profile::kGeneric, bool flags = true, std::vector<std::string> t = {})
      : profile(p), emit_flags(flags), tags(std::move(t)) {}
  Profile profile = Profile::kGeneric;
  bool emit_flags = true;  // Span.flags = 0x101 (sampled, parent known to be local)
  // langfuse: langfuse.trace.tags on roots ("claude-code" first, then --tag values, no repeats).
  std::vector<std::string> tags;
};

class SpanEncoder {
 public:
  explicit SpanEncoder(EncoderOptions options = {});
  // Appends one ScopeSpans.spans field to out; returns the number of bytes appended.
  std::size_t append_span(const Span& span, std::string& out);
  const EncoderOptions& options() const noexcept { return options_; }

  // One attribute as encoded (exposed for tests).
  struct Attr {
    enum class Type : std::uint8_t { kString, kInt, kBool, kDouble, kStringArray1 };
    std::string_view key;
    Type type = Type::kString;
    std::string_view str;
    std::int64_t num = 0;
    double dbl = 0;
    bool flag = false;
    std::size_t any_size = 0;  // filled by the encoder
    std::size_t kv_size = 0;
  };
  // The attribute list a span gets (views into the span and into this encoder's scratch storage,
  // valid until the next call).
  const std::vector<Attr>& collect_attributes(const Span& span);

  static Attr make_attr(std::string_view k, Attr::Type t, std::string_view v = {}) {
    return make(k, t, v);
  }

 private:
  std::string_view keep(std::string s);
  static Attr make(std::string_view k, Attr::Type t, std::string_view v = {}) {
    Attr a;
    a.key = k;
    a.type = t;
    a.str = v;
    return a;
  }
  void add_str(std::string_view k, std::string_view v) {
    attrs_.push_back(make(k, Attr::Type::kString, v));
  }
  // The attribute just added, for its value.
  Attr& add(std::string_view k, Attr::Type t) { return attrs_.emplace_back(make(k, t)); }
  void add_int(std::string_view k, std::int64_t v) { add(k, Attr::Type::kInt).num = v; }
  void add_bool(std::string_view k, bool v) { add(k, Attr::Type::kBool).flag = v; }
  void add_double(std::string_view k, double v) { add(k, Attr::Type::kDouble).dbl = v; }
  // Parts of collect_attributes (backends/otlp/span_attributes.cpp).
  void add_identity(const Span& s);
  void add_generation(const Span& s);
  void add_usage(const Span& s);
  void add_tool(const Span& s);
  void add_content_generic(const Span& s);
  void add_content_langfuse(const Span& s);
  void add_content_phoenix(const Span& s);
  void add_oi_messages(std::string_view prefix, const std::vector<Message>& messages);
  void add_metadata(const Span& s);
  std::string tags_json_;  // langfuse.trace.tags value, built once from options_.tags

  EncoderOptions options_;
  std::vector<Attr> attrs_;
  std::deque<std::string> scratch_;  // deque: push_back keeps earlier views valid
};

// Fills a.any_size and a.kv_size (the encoded sizes of one attribute).
void size_attr(SpanEncoder::Attr& a);

// Resource message bytes (no outer tag): string attributes in order.
std::string encode_resource(const StringPairs& attributes);
// InstrumentationScope message bytes (no outer tag).
std::string encode_scope(std::string_view name, std::string_view version);
// ExportTraceServiceRequest{ResourceSpans{resource, ScopeSpans{scope, spans}}} where `spans` is a
// concatenation of append_span() slices. Replaces the content of out. Empty spans: empty body.
void build_request(std::string_view resource, std::string_view scope, std::string_view spans,
                   std::string& out);

// ExportTraceServiceResponse.partial_success.
struct PartialSuccess {
  bool present = false;
  std::int64_t rejected_spans = 0;
  std::string error_message;
};
// Protobuf response body. Returns false when malformed.
bool decode_partial_success_proto(std::string_view body, PartialSuccess& out);
// OTLP/JSON response body (looks for "rejectedSpans" / "errorMessage"). Returns false if absent.
bool decode_partial_success_json(std::string_view body, PartialSuccess& out);
// google.rpc.Status.message from a protobuf error body; empty when not decodable.
std::string decode_rpc_status_message(std::string_view body);

// JSON string escaping (RFC 8259), appended to out without quotes: see pipeline/json_escape.h.
using chsync::append_json_escaped;

}  // namespace chsync::otlp
