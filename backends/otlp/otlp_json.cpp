#include "backends/otlp/otlp_json.h"

#include <cmath>
#include <cstdio>

namespace chsync::otlp {

namespace {

void any_value(std::string& out, const SpanEncoder::Attr& a) {
  using T = SpanEncoder::Attr::Type;
  switch (a.type) {
    case T::kString:
      out += "{\"stringValue\":";
      append_json_string(out, a.str);
      out += '}';
      break;
    case T::kInt: out += "{\"intValue\":\"" + std::to_string(a.num) + "\"}"; break;
    case T::kBool: out += a.flag ? "{\"boolValue\":true}" : "{\"boolValue\":false}"; break;
    case T::kDouble: {
      out += "{\"doubleValue\":";
      if (std::isnan(a.dbl)) {
        out += "\"NaN\"";
      } else if (std::isinf(a.dbl)) {
        out += a.dbl > 0 ? "\"Infinity\"" : "\"-Infinity\"";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", a.dbl);
        out += buf;
      }
      out += '}';
      break;
    }
    case T::kStringArray1:
      out += "{\"arrayValue\":{\"values\":[{\"stringValue\":";
      append_json_string(out, a.str);
      out += "}]}}";
      break;
  }
}

void attributes(std::string& out, const std::vector<SpanEncoder::Attr>& attrs) {
  out += "\"attributes\":[";
  bool first = true;
  for (const auto& a : attrs) {
    if (!first) out += ',';
    first = false;
    out += "{\"key\":";
    append_json_string(out, a.key);
    out += ",\"value\":";
    any_value(out, a);
    out += '}';
  }
  out += ']';
}

std::string ns(std::int64_t ms) { return ms <= 0 ? "0" : std::to_string(ms) + "000000"; }

}  // namespace

std::size_t JsonSpanEncoder::append_span(const Span& s, std::string& out) {
  const std::size_t old = out.size();
  const auto& attrs = attrs_.collect_attributes(s);
  out += ",{\"traceId\":\"" + to_hex(s.trace_id) + "\",\"spanId\":\"" + to_hex(s.span_id) + '"';
  if (s.has_parent) out += ",\"parentSpanId\":\"" + to_hex(s.parent_id) + '"';
  out += ",\"name\":";
  append_json_string(out, s.name);
  out += s.kind == SpanKind::kGeneration ? ",\"kind\":3" : ",\"kind\":1";
  const std::int64_t end_ms =
      s.kind == SpanKind::kEvent ? s.start_ms : std::max(s.end_ms, s.start_ms);
  out += ",\"startTimeUnixNano\":\"" + ns(s.start_ms) + "\",\"endTimeUnixNano\":\"" + ns(end_ms) +
         "\",";
  attributes(out, attrs);
  if (s.is_error) {
    out += ",\"status\":{\"code\":2";
    if (!s.status_message.empty()) {
      out += ",\"message\":";
      append_json_string(out, s.status_message);
    }
    out += '}';
  }
  if (attrs_.options().emit_flags) out += ",\"flags\":257";
  out += '}';
  return out.size() - old;
}

std::string json_resource(const StringPairs& attributes_in) {
  std::vector<SpanEncoder::Attr> attrs;
  for (const auto& [k, v] : attributes_in)
    attrs.push_back(SpanEncoder::make_attr(k, SpanEncoder::Attr::Type::kString, v));
  std::string out = "{";
  attributes(out, attrs);
  out += '}';
  return out;
}

std::string json_scope(std::string_view name, std::string_view version) {
  std::string out = "{\"name\":";
  append_json_string(out, name);
  if (!version.empty()) {
    out += ",\"version\":";
    append_json_string(out, version);
  }
  out += '}';
  return out;
}

void build_json_request(std::string_view resource, std::string_view scope, std::string_view spans,
                        std::string& out) {
  out.clear();
  if (spans.empty()) return;
  if (spans.front() == ',') spans.remove_prefix(1);
  out.reserve(spans.size() + resource.size() + scope.size() + 64);
  out += "{\"resourceSpans\":[{\"resource\":";
  out += resource;
  out += ",\"scopeSpans\":[{\"scope\":";
  out += scope;
  out += ",\"spans\":[";
  out += spans;
  out += "]}]}]}";
}

}  // namespace chsync::otlp
