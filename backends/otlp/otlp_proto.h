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

// Which content attributes a span carries (protocols §C.4.6). Non-content attributes are the union.
enum class Profile : std::uint8_t {
  kGeneric,   // gen_ai.input.messages / gen_ai.output.messages (tools: gen_ai.tool.call.arguments/result)
  kLangfuse,  // langfuse.observation.input/output (+ langfuse.trace.input/output on the root)
  kPhoenix,   // input.value / output.value + mime types
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
  Profile profile = Profile::kGeneric;
  bool emit_flags = true;  // Span.flags = 0x101 (sampled, parent known to be local)
};

class SpanEncoder {
 public:
  explicit SpanEncoder(EncoderOptions options = {}) : options_(options) {}
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

 public:
  static Attr make_attr(std::string_view k, Attr::Type t, std::string_view v = {}) { return make(k, t, v); }

 private:
  std::string_view keep(std::string s);
  static Attr make(std::string_view k, Attr::Type t, std::string_view v = {}) {
    Attr a;
    a.key = k;
    a.type = t;
    a.str = v;
    return a;
  }
  void add_str(std::string_view k, std::string_view v) { attrs_.push_back(make(k, Attr::Type::kString, v)); }
  void add_int(std::string_view k, std::int64_t v) {
    Attr a = make(k, Attr::Type::kInt);
    a.num = v;
    attrs_.push_back(a);
  }

  EncoderOptions options_;
  std::vector<Attr> attrs_;
  std::deque<std::string> scratch_;  // deque: push_back keeps earlier views valid
};

// Resource message bytes (no outer tag): string attributes in order.
std::string encode_resource(const StringPairs& attributes);
// InstrumentationScope message bytes (no outer tag).
std::string encode_scope(std::string_view name, std::string_view version);
// ExportTraceServiceRequest{ResourceSpans{resource, ScopeSpans{scope, spans}}} where `spans` is a
// concatenation of append_span() slices. Replaces the content of out. Empty spans: empty body.
void build_request(std::string_view resource, std::string_view scope, std::string_view spans, std::string& out);

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
