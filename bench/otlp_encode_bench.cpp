// OTLP encode throughput (spans/s, MB/s out) and gzip of request bodies: zlib deflate vs
// libdeflate on a synthetic 512-span body, and libdeflate levels 1..9 on the real request bodies
// of a chsync-gen archive (BM_GzipArchive: MB/s of uncompressed body per core, ratio). The
// default --compression-level is chosen from the latter (BENCHMARKS.md "Compression level").
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "backends/otlp/gzip.h"
#include "backends/otlp/otlp_proto.h"
#include "bench/bench_data.h"
#include "stages/mapper/mapper.h"

namespace {

using chsync::Span;
using chsync::SpanKind;

// A realistic mix: generations with usage and ~1.2 KB of UTF-8 text, tool spans with JSON args.
std::vector<Span> corpus(int n) {
  std::vector<Span> v;
  std::string text;
  for (int i = 0; text.size() < 1200; ++i)
    text +=
        (i % 9 == 0) ? "caf\xC3\xA9 \xE2\x82\xAC " : "the quick brown fox jumps over the lazy dog ";
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
    s.metadata.push_back(
        chsync::Attr::string("entry_uuid", "9a0c0b9e-7c57-4b0a-8e0a-6f7b6ddf6f1d"));
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
  state.counters["span_bytes"] =
      static_cast<double>(out.size()) / static_cast<double>(spans.size());
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
BENCHMARK(BM_Gzip<true>)
    ->Arg(1)
    ->Arg(6)
    ->ArgName("libdeflate_level")
    ->Unit(benchmark::kMillisecond);

// Request bodies as the exporter sends them: the archive's spans (generic profile, protobuf),
// cut at 512 spans or 4 MiB, whichever comes first. Capped at ~48 MB of bodies.
const std::vector<std::string>& archive_bodies() {
  static const std::vector<std::string> v = [] {
    const auto& c = chsync::bench::corpus();
    chsync::MapOptions mo;
    mo.settle_ms = 0;
    mo.now_ms = 4102444800000;  // 2100: every turn final
    chsync::otlp::SpanEncoder enc;
    const std::string resource = chsync::otlp::encode_resource({{"service.name", "claude-code"}});
    const std::string scope = chsync::otlp::encode_scope("chsync", "0.1.0");
    std::vector<std::string> bodies;
    std::string blob;
    std::size_t in_blob = 0, total = 0;
    auto cut = [&] {
      if (in_blob == 0) return;
      std::string body;
      chsync::otlp::build_request(resource, scope, blob, body);
      total += body.size();
      bodies.push_back(std::move(body));
      blob.clear();
      in_blob = 0;
    };
    std::vector<chsync::Span> spans;
    for (std::size_t b = 0; b < c.bundles.size() && total < (48u << 20); ++b) {
      chsync::BundleMapper m(mo, c.bundles[b], nullptr);
      for (std::size_t fi = 0; fi < c.files[b].size(); ++fi) {
        const auto& f = c.files[b][fi];
        for (std::size_t i = 0; i < f.line_starts.size(); ++i)
          m.add_line(fi, std::string_view(f.data.data() + f.line_starts[i], f.line_sizes[i]),
                     f.data.capacity() - f.line_starts[i], i + 1, f.line_starts[i]);
      }
      spans.clear();
      m.finish(spans);
      for (const auto& sp : spans) {
        std::string one;
        enc.append_span(sp, one);
        if (in_blob > 0 && (in_blob >= 512 || blob.size() + one.size() > (4u << 20))) cut();
        blob += one;
        ++in_blob;
      }
    }
    cut();
    return bodies;
  }();
  return v;
}

void BM_GzipArchive(benchmark::State& state) {
  const auto& bodies = archive_bodies();
  const int level = static_cast<int>(state.range(0));
  std::string out;
  std::uint64_t in_bytes = 0, out_bytes = 0;
  for (auto _ : state) {
    for (const auto& b : bodies) {
      if (!chsync::otlp::gzip_libdeflate(b, out, level)) state.SkipWithError("gzip failed");
      in_bytes += b.size();
      out_bytes += out.size();
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(in_bytes));
  state.counters["ratio"] = static_cast<double>(in_bytes) / static_cast<double>(out_bytes);
  state.counters["bodies"] = static_cast<double>(bodies.size());
}
BENCHMARK(BM_GzipArchive)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Arg(4)
    ->Arg(6)
    ->Arg(9)
    ->ArgName("libdeflate_level")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
