// Spans for the exporter tests (console, file, OTLP, the HTTP client through an exporter): the
// one place they are made, so every exporter test sends the same shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/span.h"

namespace chsync::test {

struct ToolSpanOptions {
  std::size_t output_bytes = 10;  // the tool output: that many 'o'
  std::uint64_t spans_per_bundle = 1;
  std::string source_file;  // "" : none; else each span's line is its key
};

// `n` tool spans "execute_tool Bash" with keys first+1 .. first+n (span ids from the keys), all in
// one trace, 10 ms long; span i belongs to bundle i / spans_per_bundle.
inline std::vector<Span> tool_spans(int n, int first = 0, const ToolSpanOptions& o = {}) {
  std::vector<Span> v;
  for (int i = first; i < first + n; ++i) {
    const auto key = static_cast<std::uint64_t>(i) + 1;
    Span s;
    s.trace_id[0] = 9;
    s.span_id = span_id_from_key(key);
    s.kind = SpanKind::kSpan;
    s.tool_name = "Bash";
    s.name = "execute_tool Bash";
    s.start_ms = 1756860758373;
    s.end_ms = s.start_ms + 10;
    s.output = std::string(o.output_bytes, 'o');
    s.bundle_seq = static_cast<std::uint64_t>(i) / o.spans_per_bundle;
    if (!o.source_file.empty()) {
      s.source_file = o.source_file;
      s.source_line = key;
    }
    v.push_back(std::move(s));
  }
  return v;
}

}  // namespace chsync::test
