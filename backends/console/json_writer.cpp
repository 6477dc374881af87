#include "backends/console/json_writer.h"

#include <charconv>
#include <cstdio>

namespace chsync {

namespace {
void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
void append_opt(std::string& out, const std::optional<std::string>& v) {
  if (v)
    append_json_string(out, *v);
  else
    out += "null";
}
}  // namespace

void append_metadata_json(std::string& out, const std::vector<Attr>& metadata) {
  out.push_back('{');
  bool first = true;
  for (const auto& a : metadata) {
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, a.key);
    out.push_back(':');
    switch (a.type) {
      case Attr::Type::kString: append_json_string(out, a.str); break;
      case Attr::Type::kInt: append_int(out, a.num); break;
      case Attr::Type::kBool: out += a.flag ? "true" : "false"; break;
      case Attr::Type::kDouble: {
        char buf[32];
        auto r = std::to_chars(buf, buf + sizeof buf, a.dbl);
        out.append(buf, r.ptr);
        break;
      }
      case Attr::Type::kJson: out += a.str.empty() ? "null" : a.str; break;
    }
  }
  out.push_back('}');
}

void append_span_json(std::string& out, const Span& s) {
  out += "{\"id\":\"";
  out += to_hex(s.span_id);
  out += "\",\"trace_id\":\"";
  out += to_hex(s.trace_id);
  out += "\",\"parent_id\":";
  if (s.has_parent) {
    out.push_back('"');
    out += to_hex(s.parent_id);
    out.push_back('"');
  } else {
    out += "null";
  }
  out += ",\"start_time\":\"";
  out += format_rfc3339_ms(s.start_ms);
  out += "\",\"end_time\":\"";
  out += format_rfc3339_ms(s.end_ms);
  out += "\",\"kind\":\"";
  out += to_string(s.kind);
  out += "\",\"name\":";
  append_json_string(out, s.name);
  out += ",\"input\":";
  append_opt(out, s.input);
  out += ",\"output\":";
  append_opt(out, s.output);
  out += ",\"metadata\":";
  append_metadata_json(out, s.metadata);
  out += ",\"model\":";
  append_opt(out, s.model);
  out += ",\"tokens_in\":";
  append_int(out, s.tokens_in);
  out += ",\"tokens_out\":";
  append_int(out, s.tokens_out);
  out += ",\"is_streaming\":";
  out += s.is_streaming ? "true" : "false";
  out += ",\"tool_name\":";
  append_opt(out, s.tool_name);
  out += ",\"tool_result\":";
  append_opt(out, s.tool_result);
  out += ",\"is_error\":";
  out += s.is_error ? "true" : "false";
  out += ",\"source_file\":";
  append_json_string(out, s.source_file);
  out += ",\"source_line\":";
  append_int(out, static_cast<std::int64_t>(s.source_line));
  out.push_back('}');
}

}  // namespace chsync
