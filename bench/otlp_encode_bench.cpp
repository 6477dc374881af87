// OTLP encode throughput (spans/s, MB/s out) and gzip of a 512-span request body:
// zlib deflate vs libdeflate at levels 1 and 6 (MB/s of input, compression ratio as a counter).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "backends/otlp/gzip.h"
#include "backends/otlp/otlp_proto.h"

namespace {

using chsync::Span;
using chsync::SpanKind;

// A realistic mix: generations with usage and ~1.2 KB of UTF-8 text, tool spans with JSON args.
std::vector<Span> corpus(int n) {
  std::vector<Span> v;
  std::string text;
  for (int i = 0; text.size() < 1200; ++i)
    text += (i % 9 == 0) ? "caf\xC3\xA9 \xE2\x82\xAC " : "the quick brown fox jumps over the lazy dog ";
  for (int i = 0; i < n; ++i) {
    Span s;
    s.trace_id.fill(static_cast<std::uint8_t>(i));
    s.span_id = chsync::span_id_from_key(static_cast<std::uint64_t>(i) + 1);
    s.parent_id = chsync::span_id_from_key(7);
    s.has_parent = true;
    s.start_ms = 1756860758373 + i;
    s.end_ms = s.start_ms + 1500;
    s.session_id = "0b7f6c1e-4c4b-4a9e-9a55-1c9f0f3a2b11";
    if (i % 2 == 0) {
      s.kind = SpanKind::kGeneration;
      s.name = "chat claude-sonnet-4-5";
      s.model = "claude-sonnet-4-5-20250929";
      s.response_id = "msg_01XyZabcdefghijklmnop";
      s.stop_reason = "tool_use";
      s.usage = {true, 3, 24000, 1200, 1200, 0, 350, true};
      s.input = text;
      s.output = text.substr(0, 600);
    } else {
      s.kind = SpanKind::kSpan;
      s.name = "execute_tool Bash";
      s.tool_name = "Bash";
      s.tool_use_id = "toolu_01ABCDEFGHijklmnop";
      s.input = "{\"command\":\"ls -la /src && make -j8\",\"description\":\"build\"}";
      s.input_is_json = true;
      s.output = text.substr(0, 800);
    }
    s.metadata.push_back(chsync::Attr::string("entry_uuid", "9a0c0b9e-7c57-4b0a-8e0a-6f7b6ddf6f1d"));
    s.metadata.push_back(chsync::Attr::integer("mapping_version", 1));
    v.push_back(std::move(s));
  }
  return v;
}

void BM_EncodeSpans(benchmark::State& state) {
  const auto spans = corpus(512);
  chsync::otlp::SpanEncoder enc({static_cast<chsync::otlp::Profile>(state.range(0)), true});
  std::string out;
  std::size_t bytes = 0;
  for (auto _ : state) {
    out.clear();
    for (const auto& s : spans) enc.append_span(s, out);
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(spans.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["span_bytes"] = static_cast<double>(out.size()) / static_cast<double>(spans.size());
}
BENCHMARK(BM_EncodeSpans)->Arg(0)->Arg(1)->Arg(2)->ArgName("profile");

std::string body_512() {
  const auto spans = corpus(512);
  chsync::otlp::SpanEncoder enc;
  std::string blob, body;
  for (const auto& s : spans) enc.append_span(s, blob);
  chsync::otlp::build_request(chsync::otlp::encode_resource({{"service.name", "claude-code"}}),
                              chsync::otlp::encode_scope("chsync", "0.1.0"), blob, body);
  return body;
}

template <bool kLibdeflate>
void BM_Gzip(benchmark::State& state) {
  const std::string body = body_512();
  const int level = static_cast<int>(state.range(0));
  std::string out;
  for (auto _ : state) {
    const bool ok = kLibdeflate ? chsync::otlp::gzip_libdeflate(body, out, level)
                                : chsync::otlp::gzip_zlib(body, out, level);
    if (!ok) state.SkipWithError("gzip failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
  state.counters["ratio"] = static_cast<double>(body.size()) / static_cast<double>(out.size());
  state.counters["body_MB"] = static_cast<double>(body.size()) / 1e6;
}
BENCHMARK(BM_Gzip<false>)->Arg(1)->Arg(6)->ArgName("zlib_level")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gzip<true>)->Arg(1)->Arg(6)->ArgName("libdeflate_level")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
