// Micro-benchmarks of the hot stages on chsync-gen output (see bench_data.h for the input):
// line splitting, Entry extraction, mapping, ID hashing, console JSON, dedupe lookups and state
// commits. Each reports bytes/s of input or items/s. Run: build/bench/stages_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include <simdjson.h>

#include "backends/console/span_json.h"
#include "bench/bench_data.h"
#include "pipeline/ids.h"
#include "stages/dedupe/dedupe.h"
#include "stages/mapper/entry.h"
#include "stages/mapper/mapper.h"
#include "stages/reader/reader.h"
#include "stages/state/state_store.h"

namespace {

using chsync::bench::corpus;

void BM_SplitLines(benchmark::State& state) {
  const auto& c = corpus();
  chsync::ReaderOptions ro;
  std::uint64_t lines = 0;
  for (auto _ : state) {
    for (const auto& fs : c.files)
      for (const auto& f : fs) {
        auto r = chsync::read_memory_lines(
            f.data, ro,
            [&](std::string_view l, std::size_t, std::uint64_t, std::uint64_t, bool) {
              benchmark::DoNotOptimize(l.data());
              ++lines;
              return true;
            },
            [](std::uint64_t, std::uint64_t) {});
        benchmark::DoNotOptimize(r.bytes);
      }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(lines));
}
BENCHMARK(BM_SplitLines)->Unit(benchmark::kMillisecond)->UseRealTime();

// Entry extraction (simdjson On-Demand, every field the mapper uses), lines in place.
void BM_ParseEntries(benchmark::State& state) {
  const auto& c = corpus();
  chsync::mapper::EntryParser parser;
  chsync::mapper::Entry e;
  std::string err;
  for (auto _ : state) {
    for (const auto& fs : c.files)
      for (const auto& f : fs)
        for (std::size_t i = 0; i < f.line_starts.size(); ++i) {
          bool repaired = false;
          e = chsync::mapper::Entry{};
          auto st = parser.parse(f.data.data() + f.line_starts[i], f.line_sizes[i],
                                 f.data.capacity() - f.line_starts[i], false, e, repaired, err);
          benchmark::DoNotOptimize(st);
        }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.lines));
}
BENCHMARK(BM_ParseEntries)->Unit(benchmark::kMillisecond)->UseRealTime();

// Lines that pass simdjson's structural stage and fail while their fields are read (a missing
// comma, a bad number): the error path of the parse, which unwound an exception per line before
// round two (300,000 such lines: 0.95 CPU-s, now 0.15 in a dry run).
void BM_ParseBadLines(benchmark::State& state) {
  const std::vector<std::string> lines = {
      R"({"type":"user","sessionId":"s1","uuid":"x1" "b","message":{"content":"x"}})",
      R"({"type":"user","message":{"content":[{"type":"text","text":"x"} {"a":1}]},"uuid":"u"})",
      R"({"type":"assistant","message":{"usage":{"input_tokens":12x}},"uuid":"u3"})"};
  std::vector<simdjson::padded_string> padded(lines.begin(), lines.end());
  chsync::mapper::EntryParser parser;
  chsync::mapper::Entry e;
  std::string err;
  std::int64_t bad = 0;
  for (auto _ : state) {
    for (const auto& l : padded) {
      bool repaired = false;
      e = chsync::mapper::Entry{};
      auto st = parser.parse(l.data(), l.size(), l.size() + simdjson::SIMDJSON_PADDING, false, e,
                             repaired, err);
      bad += st == chsync::mapper::ParseStatus::kBadJson;
    }
  }
  if (bad != state.iterations() * static_cast<std::int64_t>(lines.size()))
    state.SkipWithError("a bad line parsed as good");
  state.SetItemsProcessed(bad);
}
BENCHMARK(BM_ParseBadLines);

std::vector<chsync::Span> map_all(const chsync::MapOptions& mo, std::vector<chsync::Span>* keep) {
  const auto& c = corpus();
  std::vector<chsync::Span> spans;
  for (std::size_t b = 0; b < c.bundles.size(); ++b) {
    chsync::BundleMapper m(mo, c.bundles[b], nullptr);
    for (std::size_t fi = 0; fi < c.files[b].size(); ++fi) {
      const auto& f = c.files[b][fi];
      for (std::size_t i = 0; i < f.line_starts.size(); ++i)
        m.add_line(fi, std::string_view(f.data.data() + f.line_starts[i], f.line_sizes[i]),
                   f.data.capacity() - f.line_starts[i], i + 1, f.line_starts[i]);
    }
    spans.clear();
    m.finish(spans);
    if (keep)
      keep->insert(keep->end(), std::make_move_iterator(spans.begin()),
                   std::make_move_iterator(spans.end()));
  }
  return spans;
}

chsync::MapOptions map_options() {
  chsync::MapOptions mo;
  mo.settle_ms = 0;
  mo.now_ms = 4102444800000;  // 2100: every turn final
  return mo;
}

// BundleMapper over every bundle: parse + turn/group building + span building + IDs + truncation.
void BM_MapBundles(benchmark::State& state) {
  const auto& c = corpus();
  const auto mo = map_options();
  for (auto _ : state) benchmark::DoNotOptimize(map_all(mo, nullptr));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.lines));
}
BENCHMARK(BM_MapBundles)->Unit(benchmark::kMillisecond)->UseRealTime();

const std::vector<chsync::Span>& mapped_spans() {
  static const std::vector<chsync::Span> v = [] {
    std::vector<chsync::Span> all;
    map_all(map_options(), &all);
    return all;
  }();
  return v;
}

// IdHasher: one span id per call (SHA-256 of kind + key, EVP_MD fetched once).
void BM_IdHasherSpan(benchmark::State& state) {
  chsync::IdHasher h;
  const std::string key = "0b7f6c1e-4c4b-4a9e-9a55-1c9f0f3a2b11/msg_01XyZabcdefghijklmnop";
  std::uint64_t n = 0;
  for (auto _ : state) {
    auto id = h.span("generation", key);
    benchmark::DoNotOptimize(id);
    ++n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.SetBytesProcessed(static_cast<std::int64_t>(n * (key.size() + 10)));
}
BENCHMARK(BM_IdHasherSpan)->ThreadRange(1, 2)->UseRealTime();

void BM_IdHasherTrace(benchmark::State& state) {
  chsync::IdHasher h;
  std::uint64_t n = 0;
  for (auto _ : state) {
    auto id = h.turn_trace("0b7f6c1e-4c4b-4a9e-9a55-1c9f0f3a2b11",
                           "9a0c0b9e-7c57-4b0a-8e0a-6f7b6ddf6f1d");
    benchmark::DoNotOptimize(id);
    ++n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
}
BENCHMARK(BM_IdHasherTrace);

// Console JSON (the 19-key object per span) over the spans of the corpus.
void BM_ConsoleJson(benchmark::State& state) {
  const auto& spans = mapped_spans();
  std::string out;
  std::uint64_t bytes = 0;
  for (auto _ : state) {
    for (const auto& s : spans) {
      out.clear();
      chsync::append_span_json(out, s);
      out.push_back('\n');
      bytes += out.size();
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(spans.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_ConsoleJson)->Unit(benchmark::kMillisecond)->UseRealTime();

// Dedupe as the dispatcher runs it (stages/dedupe, SpanDedupe::admit): binary search in the
// sorted delivered keys (from the state), then the per-run set of keys sent.
// range(0): delivered keys in the state.
void BM_DedupeLookup(benchmark::State& state) {
  std::mt19937_64 rng(9);
  std::vector<std::uint64_t> delivered(static_cast<std::size_t>(state.range(0)));
  for (auto& k : delivered) k = rng();
  std::sort(delivered.begin(), delivered.end());
  std::vector<std::uint64_t> probe(1 << 16);
  for (std::size_t i = 0; i < probe.size(); ++i)
    probe[i] = (i % 2 && !delivered.empty()) ? delivered[rng() % delivered.size()] : rng();
  const std::vector<std::uint64_t> no_settled;
  std::uint64_t hits = 0;
  for (auto _ : state) {
    state.PauseTiming();
    chsync::SpanDedupe dedupe;  // a fresh run: nothing sent yet
    dedupe.set_delivered(delivered);
    state.ResumeTiming();
    for (auto k : probe)
      if (!dedupe.admit(k, no_settled).send) ++hits;
  }
  benchmark::DoNotOptimize(hits);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(probe.size()));
}
BENCHMARK(BM_DedupeLookup)->Arg(0)->Arg(250000)->Arg(2500000);

// State commits: begin_request (committed) + finish_request (batched) for 512-span requests.
void BM_StateCommit(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / "chsync-bench-state";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  chsync::StateOpenOptions so;
  auto st = chsync::open_sqlite_state((dir / "state.db").string(), so);
  std::uint64_t next = 1;
  std::vector<std::uint64_t> keys(512);
  for (auto _ : state) {
    for (auto& k : keys) k = next++ * 0x9E3779B97F4A7C15ull;
    const auto req = st->begin_request("otlp", keys);
    st->finish_request("otlp", req, keys, true, false);
  }
  st->flush();
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(keys.size()));
  st.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_StateCommit)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
