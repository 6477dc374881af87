#include "backends/console/span_json.h"

#include "pipeline/json_writer.h"

namespace chsync {

void append_span_json(std::string& out, const Span& s) {
  JsonWriter w(out);
  w.begin_object()
      .field("id", to_hex(s.span_id))
      .field("trace_id", to_hex(s.trace_id))
      .key("parent_id");
  if (s.has_parent) w.value(to_hex(s.parent_id));
  else w.null();
  w.field("start_time", format_rfc3339_ms(s.start_ms))
      .field("end_time", format_rfc3339_ms(s.end_ms))
      .field("kind", to_string(s.kind))
      .field("name", s.name)
      .field("input", s.input)
      .field("output", s.output)
      .key("metadata");
  write_metadata(w, s.metadata);
  w.field("model", s.model)
      .field("tokens_in", s.tokens_in)
      .field("tokens_out", s.tokens_out)
      .field("is_streaming", s.is_streaming)
      .field("tool_name", s.tool_name)
      .field("tool_result", s.tool_result)
      .field("is_error", s.is_error)
      .field("source_file", s.source_file)
      .field("source_line", s.source_line)
      .end_object();
}

}  // namespace chsync
