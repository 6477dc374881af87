// Helpers shared by the mapper tests: feed files/lines to a BundleMapper, dump spans.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "pipeline/bundle.h"
#include "pipeline/span.h"
#include "stages/mapper/mapper.h"

namespace chsync::test {

struct MapResult {
  std::vector<Span> spans;
  MapStats stats;
  std::vector<BadLine> bad;
};

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// contents[i] is the text of bundle.files[i].
inline MapResult map_bundle(const Bundle& bundle, const std::vector<std::string>& contents,
                            const MapOptions& options) {
  MapResult r;
  BundleMapper m(options, bundle, [&](const BadLine& b) { r.bad.push_back(b); });
  for (std::size_t f = 0; f < contents.size(); ++f) {
    std::uint64_t line_no = 0, offset = 0;
    for (const std::string& line : split_lines(contents[f])) {
      ++line_no;
      std::string padded = line;
      padded.append(64, '\0');
      m.add_line(f, std::string_view(padded.data(), line.size()), padded.size(), line_no, offset);
      offset += line.size() + 1;
    }
  }
  m.finish(r.spans);
  r.stats = m.stats();
  return r;
}

inline MapOptions final_options() {
  MapOptions o;
  o.now_ms = 4102444800000;  // 2100-01-01: every file has settled
  o.settle_ms = 0;
  return o;
}

inline FileRef file_ref(std::string display, bool subagent = false, std::string agent_id = {}) {
  FileRef f;
  f.key = f.path = f.display = std::move(display);
  f.is_subagent = subagent;
  f.agent_id = std::move(agent_id);
  f.settles = false;
  return f;
}

inline const Attr* find_attr(const Span& s, std::string_view key) {
  for (const auto& a : s.metadata)
    if (a.key == key) return &a;
  return nullptr;
}

inline std::string dump(const Span& s) {
  std::ostringstream o;
  o << to_hex(s.trace_id) << ' ' << to_hex(s.span_id) << ' '
    << (s.has_parent ? to_hex(s.parent_id) : "-") << ' ' << s.start_ms << ' ' << s.end_ms << ' '
    << to_string(s.kind) << ' ' << s.name << ' ' << s.input.value_or("<null>") << '|'
    << s.output.value_or("<null>") << '|' << s.model.value_or("") << ' ' << s.tokens_in << ' '
    << s.tokens_out << ' ' << s.tool_name.value_or("") << ' ' << s.tool_result.value_or("<null>")
    << ' ' << s.is_error << ' ' << s.source_file << ':' << s.source_line << ' ' << s.user_id << ' '
    << s.status_message;
  for (const auto& a : s.metadata) o << ' ' << a.key << '=' << a.str << a.num << a.flag << a.dbl;
  return o.str();
}

}  // namespace chsync::test
