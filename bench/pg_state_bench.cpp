// What the PostgreSQL state sustains on this machine: lease claims, acknowledged-request writes,
// file-row writes and per-bundle checks, each from 1..8 threads sharing one store (as the
// threads of one chsync process do) — several processes behave alike, one connection each.
//
// Needs a running server: CHSYNC_BENCH_PG_URL=postgresql://... (bench/scaleout/run.sh starts a
// private one). Without it every benchmark is skipped with a message.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stages/state/state_store.h"

namespace {

const char* pg_url() {
  const char* u = std::getenv("CHSYNC_BENCH_PG_URL");
  return u && *u ? u : nullptr;
}

// One store per benchmark (shared by its threads), opened by thread 0 in setup. Globals because
// Google Benchmark's Setup/Teardown hooks are plain function pointers with no context argument.
std::unique_ptr<chsync::StateStore> g_store;  // NOLINT(*-avoid-non-const-global-variables)
std::atomic<std::uint64_t> g_next{1};         // NOLINT(*-avoid-non-const-global-variables)

std::string fresh_group(const char* what) {
  return fmt::format("bench-{}-{}", what,
                     std::chrono::steady_clock::now().time_since_epoch().count());
}

void open_store(const char* group, std::size_t units) {
  chsync::StateOpenOptions so;
  so.register_worker = true;
  so.work_group = fresh_group(group);
  so.lease = std::chrono::minutes(10);
  so.pool_connections = 16;
  g_store = chsync::open_pg_state(pg_url(), so);
  if (units > 0) {
    std::vector<chsync::WorkUnitSpec> specs;
    specs.reserve(units);
    for (std::size_t i = 0; i < units; ++i)
      specs.push_back({fmt::format("/data/projects/p{:03}/{:08}.jsonl", i % 97, i), "sig", i});
    g_store->work()->register_units(specs);
  }
}

void setup_claims(const benchmark::State& /*unused*/) {
  if (pg_url()) open_store("claims", 400000);
}
void setup_plain(const benchmark::State& /*unused*/) {
  if (pg_url()) open_store("writes", 0);
}
void teardown(const benchmark::State& /*unused*/) { g_store.reset(); }

// Claim one unit and complete it: the per-unit lease traffic of a worker (two round trips).
void BM_PgClaimComplete(benchmark::State& state) {
  if (!g_store) {
    state.SkipWithError("set CHSYNC_BENCH_PG_URL to a PostgreSQL server");
    return;
  }
  chsync::WorkTable* w = g_store->work();
  const auto batch = static_cast<std::size_t>(state.range(0));
  std::int64_t n = 0;
  for (auto _ : state) {
    auto got = w->claim(batch, {});
    for (const auto& u : got) w->complete(chsync::UnitFence{u.key, u.fence});
    n += static_cast<std::int64_t>(got.size());
  }
  state.SetItemsProcessed(n);
}
BENCHMARK(BM_PgClaimComplete)
    ->Arg(1)
    ->Arg(4)
    ->Setup(setup_claims)
    ->Teardown(teardown)
    ->ThreadRange(1, 8)
    ->UseRealTime()
    ->MinTime(2.0);

// One 512-span request: begin_request (committed before the send) + finish_request (batched).
void BM_PgAckRequest(benchmark::State& state) {
  if (!g_store) {
    state.SkipWithError("set CHSYNC_BENCH_PG_URL to a PostgreSQL server");
    return;
  }
  std::vector<std::uint64_t> keys(512);
  for (auto _ : state) {
    const std::uint64_t base = g_next.fetch_add(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = (base + i) * 0x9E3779B97F4A7C15ull;
    const auto req = g_store->begin_request("otlp", keys);
    g_store->finish_request("otlp", req, keys, true, false);
  }
  g_store->flush();
  state.SetItemsProcessed(state.iterations() * 512);
}
BENCHMARK(BM_PgAckRequest)
    ->Setup(setup_plain)
    ->Teardown(teardown)
    ->ThreadRange(1, 8)
    ->UseRealTime()
    ->MinTime(2.0);

// File rows of one finished bundle (main file + 3 subagent files), committed with its acks.
void BM_PgPutFiles(benchmark::State& state) {
  if (!g_store) {
    state.SkipWithError("set CHSYNC_BENCH_PG_URL to a PostgreSQL server");
    return;
  }
  std::vector<chsync::FileState> rows(4);
  for (auto _ : state) {
    const std::uint64_t b = g_next.fetch_add(1);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      rows[i].instance = "otlp";
      rows[i].key = fmt::format("/data/projects/p{:03}/{:08}/agent-{}.jsonl", b % 97, b, i);
      rows[i].size = 100000 + b;
      rows[i].complete = true;
      rows[i].project = "p";
    }
    g_store->put_files(rows);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PgPutFiles)
    ->Setup(setup_plain)
    ->Teardown(teardown)
    ->ThreadRange(1, 8)
    ->UseRealTime()
    ->MinTime(2.0);

// The per-bundle dedupe query of a worker: 100 span keys, none delivered.
void BM_PgCheckBundle(benchmark::State& state) {
  if (!g_store) {
    state.SkipWithError("set CHSYNC_BENCH_PG_URL to a PostgreSQL server");
    return;
  }
  std::vector<std::uint64_t> keys(100);
  for (auto _ : state) {
    const std::uint64_t base = g_next.fetch_add(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = (base + i) * 0x9E3779B97F4A7C15ull;
    std::sort(keys.begin(), keys.end());
    benchmark::DoNotOptimize(g_store->check_bundle("otlp", keys));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PgCheckBundle)
    ->Setup(setup_plain)
    ->Teardown(teardown)
    ->ThreadRange(1, 8)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
