#include "backends/langfuse_legacy/langfuse_legacy.h"

#include "backends/otlp/message_json.h"
#include "pipeline/json_writer.h"

#include <openssl/evp.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "backends/http/batching_exporter.h"
#include "backends/http/settings_check.h"
#include "backends/otlp/otlp_exporter.h"
#include "backends/otlp/otlp_proto.h"

namespace chsync::langfuse {

using std::chrono::milliseconds;

namespace {

constexpr std::string_view kContentType = "application/json";
// {"batch":[ ... ]} framing plus the separating commas is accounted per event (+1).
constexpr std::size_t kFrameBytes = 16;

// A content field: raw JSON when the mapper says it holds JSON, else a JSON string.
void content(std::string& out, std::string_view key, const std::string& v, bool is_json) {
  out += ",\"";
  out += key;
  out += "\":";
  if (is_json && !v.empty()) {
    out += v;
  } else {
    append_json_string(out, v);
  }
}

// ,"metadata":{...}: the span's metadata, then the semantic fields Langfuse shows there.
void metadata(std::string& out, const Span& s) {
  out += ",\"metadata\":";
  JsonWriter w(out);
  w.begin_object();
  for (const auto& a : s.metadata) {
    w.key(a.key);
    write_attr_value(w, a);
  }
  auto has = [&](std::string_view k) {
    return std::any_of(s.metadata.begin(), s.metadata.end(),
                       [&](const Attr& a) { return a.key == k; });
  };
  if (!s.finish_reason.empty()) w.field("finish_reason", s.finish_reason);
  if (s.tool_name) w.field("tool_name", *s.tool_name);
  // Ids the metadata may already carry under the same key: written once.
  const std::pair<std::string_view, const std::string*> ids[] = {{"tool_use_id", &s.tool_use_id},
                                                                 {"agent_id", &s.agent_id},
                                                                 {"message_id", &s.response_id},
                                                                 {"stop_reason", &s.stop_reason}};
  for (const auto& [k, v] : ids)
    if (!v->empty() && !has(k)) w.field(k, *v);
  if (!s.source_file.empty())
    w.field("source_file", s.source_file).field("source_line", s.source_line);
  w.end_object();
}

std::string envelope_id(std::string_view type, std::string_view body_id, std::string_view body) {
  std::string in;
  in.reserve(type.size() + body_id.size() + body.size() + 2);
  in.append(type).append("\n").append(body_id).append("\n").append(body);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(in.data(), in.size(), md, &n, EVP_sha256(), nullptr);
  return to_hex(md, 16);
}

std::string envelope(std::string_view type, const std::string& body_id, const std::string& body,
                     const std::string& export_time) {
  std::string e = "{\"id\":\"" + envelope_id(type, body_id, body) + "\",\"timestamp\":\"" +
                  export_time + "\",\"type\":\"";
  e += type;
  e += "\",\"body\":";
  e += body;
  e += '}';
  return e;
}

std::string export_time_now() {
  const auto now =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  return format_rfc3339_ms(now.count());
}

// The envelope id of an event JSON built by envelope(): {"id":"<32 hex>",...
std::string_view id_of(std::string_view ev) { return ev.substr(7, 32); }

}  // namespace

std::vector<std::string> legacy_events(const Span& s, const EventOptions& options,
                                       const std::string& export_time) {
  const std::string& environment = options.environment;
  std::vector<std::string> out;
  const std::string trace_id = to_hex(s.trace_id);
  const std::string span_id = to_hex(s.span_id);
  const bool is_tool = s.kind == SpanKind::kSpan && s.tool_name.has_value();
  const std::optional<std::string>& output =
      (is_tool && !s.output && s.tool_result) ? s.tool_result : s.output;
  auto common_tail = [&](std::string& b) {
    if (!environment.empty()) {
      b += ",\"environment\":";
      append_json_string(b, environment);
    }
  };
  // Every trace root gets its trace-create: without one, an unlinked subagent's observations count
  // in no trace or session total.
  const bool root = s.kind == SpanKind::kTrace || (s.kind == SpanKind::kAgent && !s.has_parent);
  if (root) {
    std::string b = "{\"id\":\"" + trace_id + "\",\"timestamp\":\"" +
                    format_rfc3339_ms(s.start_ms) + "\",\"name\":";
    append_json_string(b, s.trace_name.empty() ? s.name : s.trace_name);
    if (!s.session_id.empty()) {
      b += ",\"sessionId\":";
      append_json_string(b, s.session_id);
    }
    if (!s.user_id.empty()) {
      b += ",\"userId\":";
      append_json_string(b, s.user_id);
    }
    if (s.input) content(b, "input", *s.input, s.input_is_json);
    if (output) content(b, "output", *output, s.output_is_json);
    metadata(b, s);
    b += ",\"tags\":[\"claude-code\"";
    for (std::size_t i = 0; i < options.tags.size(); ++i) {
      if (options.tags[i] == "claude-code" ||
          std::find(options.tags.begin(), options.tags.begin() + static_cast<std::ptrdiff_t>(i),
                    options.tags[i]) != options.tags.begin() + static_cast<std::ptrdiff_t>(i))
        continue;
      b += ',';
      append_json_string(b, options.tags[i]);
    }
    b += ']';
    for (const auto& a : s.metadata)
      if (a.key == "cc_version" && !a.str.empty()) {
        b += ",\"release\":";
        append_json_string(b, a.str);
      }
    common_tail(b);
    b += '}';
    out.push_back(envelope("trace-create", trace_id, b, export_time));
  }
  std::string_view type = "span-create";
  if (s.kind == SpanKind::kGeneration) type = "generation-create";
  if (s.kind == SpanKind::kEvent) type = "event-create";
  if (options.typed_observations && is_tool) type = "tool-create";
  if (options.typed_observations && (s.kind == SpanKind::kAgent || s.kind == SpanKind::kTrace))
    type = "agent-create";
  std::string b = "{\"id\":\"" + span_id + "\",\"traceId\":\"" + trace_id + "\",\"name\":";
  append_json_string(b, s.name);
  if (s.has_parent) b += ",\"parentObservationId\":\"" + to_hex(s.parent_id) + '"';
  b += ",\"startTime\":\"" + format_rfc3339_ms(s.start_ms) + '"';
  if (s.kind != SpanKind::kEvent)
    b += ",\"endTime\":\"" + format_rfc3339_ms(std::max(s.end_ms, s.start_ms)) + '"';
  if (!s.input_messages.empty()) {  // generations: chat messages, as the OTel langfuse profile
    b += ",\"input\":";
    otlp::append_chat_messages(b, s.input_messages);
  } else if (s.input) {
    content(b, "input", *s.input, s.input_is_json);
  }
  if (!s.output_messages.empty()) {
    b += ",\"output\":";
    otlp::append_chat_messages(b, s.output_messages);
  } else if (output) {
    content(b, "output", *output, s.output_is_json);
  }
  metadata(b, s);
  if (s.is_error) {
    b += ",\"level\":\"ERROR\"";
    if (!s.status_message.empty()) {
      b += ",\"statusMessage\":";
      append_json_string(b, s.status_message);
    }
  }
  if (s.kind == SpanKind::kGeneration) {
    if (s.model) {
      b += ",\"model\":";
      append_json_string(b, *s.model);
    }
    const Usage& u = s.usage;
    if (u.present) {
      // §A.5: one synonym per bucket, input excludes the cache, no total.
      b += ",\"usageDetails\":{\"input\":" + std::to_string(u.input_tokens) +
           ",\"output\":" + std::to_string(u.output_tokens) +
           ",\"cache_read_input_tokens\":" + std::to_string(u.cache_read_input_tokens);
      if (u.cache_creation_5m >= 0 || u.cache_creation_1h >= 0) {
        b += ",\"input_cache_creation_5m\":" +
             std::to_string(std::max<std::int64_t>(0, u.cache_creation_5m));
        b += ",\"input_cache_creation_1h\":" +
             std::to_string(std::max<std::int64_t>(0, u.cache_creation_1h));
      } else {
        b += ",\"cache_creation_input_tokens\":" + std::to_string(u.cache_creation_input_tokens);
      }
      b += '}';
    } else if (s.tokens_in != 0 || s.tokens_out != 0) {
      b += ",\"usageDetails\":{\"input\":" + std::to_string(s.tokens_in) +
           ",\"output\":" + std::to_string(s.tokens_out) + '}';
    }
  }
  common_tail(b);
  b += '}';
  out.push_back(envelope(type, span_id, b, export_time));
  return out;
}

namespace {

// One span's encoded bytes (opaque to the exporter core): an index of its events, then the
// events themselves, so that the reading of a 207 answer can name the span of each event and a
// retry can carry only the events that failed:
//   <32-hex envelope id><decimal length>; ... \n <event>,<event>,...
struct EventRef {
  std::string_view id;
  std::string_view json;
};
std::vector<EventRef> events_of(std::string_view item) {
  std::vector<EventRef> out;
  const std::size_t nl = item.find('\n');
  if (nl == std::string_view::npos) return out;
  std::string_view index = item.substr(0, nl);
  std::size_t at = nl + 1;
  while (index.size() > 32) {
    const std::string_view id = index.substr(0, 32);
    const std::size_t semi = index.find(';', 32);
    if (semi == std::string_view::npos) break;
    std::size_t len = 0;
    for (char c : index.substr(32, semi - 32)) len = len * 10 + static_cast<std::size_t>(c - '0');
    out.push_back({id, item.substr(at, len)});
    at += len + 1;  // and the comma
    index.remove_prefix(semi + 1);
  }
  return out;
}
void append_item(std::string& out, const std::vector<EventRef>& evs) {
  for (const auto& e : evs) {
    out += e.id;
    out += std::to_string(e.json.size());
    out += ';';
  }
  out += '\n';
  for (std::size_t i = 0; i < evs.size(); ++i) {
    if (i > 0) out += ',';
    out += evs[i].json;
  }
}

// One span's ingestion events, as one item of the codec's own format. Stateless: the codec and
// each map worker share nothing but the options.
void encode_legacy_span(const Span& span, const EventOptions& options, std::string& out) {
  const auto evs = legacy_events(span, options, export_time_now());
  std::vector<EventRef> refs;
  refs.reserve(evs.size());
  for (const auto& e : evs) refs.push_back({id_of(e), e});
  append_item(out, refs);
}

class LegacySpanBytes final : public SpanBytesEncoder {
 public:
  explicit LegacySpanBytes(EventOptions options) : options_(std::move(options)) {}
  void encode(const Span& span, std::string& out) override {
    encode_legacy_span(span, options_, out);
  }

 private:
  EventOptions options_;
};

// The Langfuse batch ingestion part of an exporter: events per span, {"batch":[...]} framing,
// and the reading of the 207 answer's per-event errors.
class LegacyCodec final : public http::HttpCodec {
 public:
  explicit LegacyCodec(EventOptions options) : options_(std::move(options)) {}

  void encode_span(const Span& span, std::string& out) override {
    encode_legacy_span(span, options_, out);
  }
  std::unique_ptr<SpanBytesEncoder> make_encoder() const override {
    return std::make_unique<LegacySpanBytes>(options_);
  }
  std::string request_body(const std::vector<std::string_view>& spans) const override {
    std::string body = "{\"batch\":[";
    bool first = true;
    for (auto item : spans) {
      const std::size_t nl = item.find('\n');
      if (nl == std::string_view::npos || nl + 1 == item.size()) continue;
      if (!first) body += ',';
      first = false;
      body += item.substr(nl + 1);
    }
    body += "]}";
    return body;
  }
  std::string_view content_type() const override { return kContentType; }

  // 207 {"successes":[{id,status}],"errors":[{id,status,message,error}]}. A per-event 429/5xx is
  // Langfuse saying "this event, later" (the request itself succeeded): only those events are
  // sent again. A per-event 4xx refuses the span for good. An event named nowhere is accepted.
  http::SuccessReading read_success(const http::Response& r,
                                    const std::vector<std::string_view>& spans) const override {
    http::SuccessReading rd;
    std::unordered_map<std::string, std::pair<int, std::string>> errors;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    simdjson::dom::array arr;
    if (parser.parse(r.body).get(doc) || doc["errors"].get_array().get(arr)) return rd;
    for (auto e : arr) {
      std::string_view eid;
      std::int64_t est = 500;
      if (e["id"].get_string().get(eid)) continue;
      if (e["status"].get_int64().get(est)) est = 500;
      std::string msg;
      std::string_view m;
      if (!e["message"].get_string().get(m)) msg = std::string(m);
      if (!e["error"].get_string().get(m)) msg += (msg.empty() ? "" : ": ") + std::string(m);
      errors[std::string(eid)] = {static_cast<int>(est), msg};
    }
    if (errors.empty()) return rd;
    for (std::uint32_t pos = 0; pos < spans.size(); ++pos) {
      std::vector<EventRef> again;
      bool dead = false;
      for (const auto& ev : events_of(spans[pos])) {
        auto it = errors.find(std::string(ev.id));
        if (it == errors.end()) continue;
        const std::string what =
            "event status " + std::to_string(it->second.first) + ": " + it->second.second;
        if (it->second.first >= 500 || it->second.first == 429) {
          again.push_back(ev);
          rd.retry_reason = what;
        } else {
          dead = true;
          if (rd.rejected_reason.empty()) {
            rd.rejected_reason = what;
            rd.rejected_status = it->second.first;
          }
        }
      }
      if (dead) {
        rd.rejected.push_back(pos);
      } else if (!again.empty()) {
        rd.retry.push_back(pos);
        std::string bytes;
        append_item(bytes, again);
        rd.retry_bytes.push_back(std::move(bytes));
      }
    }
    return rd;
  }

 private:
  EventOptions options_;
};

http::BatchingOptions batching_options(const LegacyOptions& o) {
  http::BatchingOptions b = http::batching_options_of(o, "langfuse-legacy");
  // The encoded index (~36 bytes per event) counts too: requests stay under the 3.5 MB cap.
  b.batch_bytes = std::clamp<std::size_t>(o.batch_bytes, 1024, kMaxBatchBytes) - kFrameBytes;
  return b;
}

}  // namespace

std::unique_ptr<Exporter> make_langfuse_legacy_exporter(LegacyOptions options,
                                                        std::unique_ptr<http::Transport> transport,
                                                        std::string* error) {
  if (auto e = http::check_http_settings(options.endpoint, options.headers); !e.empty()) {
    if (error) *error = "langfuse-legacy: " + e;
    return nullptr;
  }
  auto url = http::parse_url(options.endpoint);
  if (!url) {
    if (error) *error = "langfuse-legacy: invalid URL: " + http::mask_url(options.endpoint);
    return nullptr;
  }
  auto codec = std::make_unique<LegacyCodec>(
      EventOptions{options.environment, options.tags, options.typed_observations});
  return std::make_unique<http::BatchingHttpExporter>(batching_options(options), std::move(*url),
                                                      std::move(transport), std::move(codec));
}

std::unique_ptr<Exporter> make_langfuse_legacy_exporter(LegacyOptions options, std::string* error) {
  if (!http::parse_url(options.endpoint)) {
    if (error) *error = "langfuse-legacy: invalid URL: " + http::mask_url(options.endpoint);
    return nullptr;
  }
  auto t = http::make_exporter_client(options, "langfuse-legacy", otlp::chsync_version(), error);
  if (!t) return nullptr;
  return make_langfuse_legacy_exporter(std::move(options), std::move(t), error);
}

}  // namespace chsync::langfuse
