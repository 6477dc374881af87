// libFuzzer: the line parser and the mapper. The input is split at '\n' into the lines of a
// one-session bundle (a main file and, for lines starting with 0x01, a subagent file), fed in file
// order through BundleMapper::add_line, then finish(). Every line is handed over in a buffer with
// exactly the promised padding (simdjson reads up to 64 bytes past the end), so ASan catches any
// read beyond it. Invariants: no crash, no sanitizer report, span ids non-zero and unique.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "stages/mapper/mapper.h"

using namespace chsync;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Bundle b;
  b.seq = 1;
  b.session_id = "fuzz-session";
  b.project = "-fuzz-project";
  FileRef main;
  main.key = main.display = main.path = "/fuzz/-fuzz-project/fuzz-session.jsonl";
  main.size = size;
  main.mtime_ms = 1;
  FileRef agent;
  agent.key = agent.display = agent.path =
      "/fuzz/-fuzz-project/fuzz-session/subagents/agent-a1.jsonl";
  agent.is_subagent = true;
  agent.agent_id = "a1";
  agent.mtime_ms = 1;
  b.files = {main, agent};

  std::vector<std::string_view> lines[2];
  std::size_t pos = 0;
  while (pos <= in.size()) {
    std::size_t nl = in.find('\n', pos);
    if (nl == std::string_view::npos) nl = in.size();
    std::string_view l = in.substr(pos, nl - pos);
    if (!l.empty() && l[0] == '\x01') lines[1].push_back(l.substr(1));
    else lines[0].push_back(l);
    pos = nl + 1;
  }

  MapOptions opt;
  opt.now_ms = 1'700'000'000'000;
  opt.settle_ms = 0;
  opt.max_field_bytes = 256;  // exercise UTF-8-safe truncation
  std::uint64_t bad = 0;
  BundleMapper m(opt, b, [&](const BadLine&) { ++bad; });
  for (std::size_t f = 0; f < 2; ++f) {
    std::uint64_t off = 0, no = 0;
    for (std::string_view l : lines[f]) {
      const std::size_t cap = l.size() + 64;
      char* buf = static_cast<char*>(std::malloc(cap));
      std::memcpy(buf, l.data(), l.size());
      std::memset(buf + l.size(), 0, 64);
      m.add_line(f, std::string_view(buf, l.size()), cap, ++no, off);
      std::free(buf);
      off += l.size() + 1;
    }
  }
  std::vector<Span> spans;
  m.finish(spans);
  std::set<std::string> ids;
  for (const Span& s : spans) {
    std::string id(reinterpret_cast<const char*>(s.span_id.data()), s.span_id.size());
    if (!ids.insert(id).second) std::abort();  // the mapper must never emit a span id twice
  }
  return 0;
}
