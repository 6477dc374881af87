#include "app/sync/sync.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <simdjson.h>
#include <numeric>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "backends/console/json_writer.h"
#include "app/dead_letters/dead_letters.h"
#include "app/metrics/metrics.h"
#include "pipeline/log.h"
#include "app/sync/progress.h"
#include "pipeline/bounded_queue.h"
#include "pipeline/flat_u64_set.h"
#include "pipeline/runtime.h"
#include "stages/reader/spool.h"
#include "stages/redact/redact.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A bundle ready for mapping; archive members carry their bytes (read by the feeder).
struct WorkItem {
  std::size_t bundle_index = 0;
  std::vector<std::string> member_data;   // parallel to bundle.files for archive members
  std::vector<std::string> member_spool;  // non-empty: that member was spooled to this file
};

struct FileOutcome {
  std::uint64_t lines = 0;
  std::uint64_t end_offset = 0;
  std::uint64_t bad = 0;
  std::uint64_t bytes = 0;       // decompressed bytes read
  bool truncated_tail = false;  // unparseable last line without '\n'
  std::string error;            // unreadable / corrupt stream
};

struct BundleResult {
  std::size_t bundle_index = 0;
  std::vector<Span> spans;
  MapStats stats;
  std::vector<FileOutcome> files;
  std::uint64_t bytes = 0;
  std::vector<BundleCheck> checks;  // lease mode: per instance, the shared state's view
};

struct BadLineCounts {
  std::mutex mu;
  std::map<std::string, std::uint64_t> by_kind;
  std::uint64_t printed = 0;
};

// Per-instance delivery bookkeeping.
struct Instance {
  BackendSpec spec;
  std::unique_ptr<Exporter> exporter;
  bool synchronous = false;             // console/file/null: acked inside send()
  std::vector<std::uint64_t> delivered;  // sorted, from the state (when it fits its share)
  // The delivered set is over its share of --max-memory: each bundle's keys are looked up in the
  // state by the map worker instead (StateStore::settled_among, into BundleResult::checks).
  bool lookup_settled = false;
  std::vector<std::uint64_t> in_flight_before;  // sorted: possible repeats from a crashed run
  // Sorted, one entry per earlier in-flight record holding the key (= sends of unknown outcome).
  std::vector<std::uint64_t> in_flight_records;
  std::unordered_set<std::uint64_t> recovered;  // keys of in_flight_before delivered/dead now
  FlatU64Set sent_this_run;  // span keys handed to this exporter in this run
  std::vector<bool> needs;  // per bundle
  // Ack accounting.
  std::mutex mu;
  struct Pending {
    std::uint64_t outstanding = 0;
    bool dispatched = false;
    bool failed = false;
    std::uint64_t delivered = 0;
  };
  std::unordered_map<std::uint64_t, Pending> pending;  // by bundle seq
  std::vector<std::uint64_t> ready;  // bundles whose every span has an outcome
  std::unordered_map<std::uint64_t, std::uint64_t> request_of;  // span key -> state request id
  // Per in-flight state record: spans still without an outcome, and spans whose request failed
  // (outcome unknown: they may have reached the backend, so their record must survive).
  struct ReqInfo {
    std::uint64_t left = 0;
    std::vector<std::uint64_t> uncertain;
  };
  std::unordered_map<std::uint64_t, ReqInfo> reqs;
  // Lease mode: per bundle, the in-flight record adopted from a gone run (removed once the
  // bundle is delivered).
  std::unordered_map<std::uint64_t, std::uint64_t> adopted_request;
  std::uint64_t sends_before(std::uint64_t k) const {
    auto [a, b] = std::equal_range(in_flight_records.begin(), in_flight_records.end(), k);
    return static_cast<std::uint64_t>(b - a);
  }
  std::uint64_t spans_delivered = 0;
  std::uint64_t spans_dead = 0;
  std::uint64_t spans_failed = 0;
  std::uint64_t spans_repeated = 0;
  std::uint64_t spans_deduped = 0;
};

bool contains_sorted(const std::vector<std::uint64_t>& v, std::uint64_t k) {
  return std::binary_search(v.begin(), v.end(), k);
}

std::uint64_t peak_rss_kb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss);
}

double cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// FNV-1a over s, continuing from h (start: kFnvBasis); stable across builds and hosts.
constexpr std::uint64_t kFnvBasis = 0xcbf29ce484222325ull;
std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// Stable across hosts and mount points: the bundle's project and session, not its paths.
std::uint32_t shard_of(const Bundle& b, std::uint32_t shards) {
  // FNV-1a, then a splitmix64 finish to spread the bits before the modulo.
  std::uint64_t h = fnv1a(kFnvBasis, b.project);
  h = fnv1a(h, std::string_view("\0", 1));
  h = fnv1a(h, b.session_id);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return static_cast<std::uint32_t>(h % shards);
}

}  // namespace

int run_sync(const SyncOptions& opt, const ExporterFactory& factory) {
  const auto t_start = Clock::now();
  install_signal_handlers();
  reset_signal_state();
  if (opt.backends.empty()) throw ConfigError("no backend configured (use --backend)");
  std::unique_ptr<Redactor> redactor;  // shared read-only by the mapper threads; counts are atomic
  if (opt.redact && !opt.no_content) {
    try {
      redactor = std::make_unique<Redactor>(RedactOptions{opt.redact_patterns});
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
  }

  // ---- state ----
  std::unique_ptr<StateStore> state;
  const bool pg = is_pg_url(opt.db_path);
  if (!opt.db_path.empty()) {
    StateOpenOptions so;
    so.rebuild = opt.rebuild_state;
    so.work_group = opt.work_group;
    so.worker_id = opt.worker_id;
    so.lease = opt.lease;
    so.pool_connections = std::max<std::size_t>(opt.workers, 1) + 3;
    // A database restart or failover shorter than this is ridden out (the feeder gives up on
    // claims after the same time).
    so.outage_tolerance = std::max<std::chrono::milliseconds>(opt.lease, std::chrono::seconds(10));
    if (opt.dry_run) {
      so.read_only = true;
      so.take_lock = false;
      if (pg) {
        try {
          state = open_pg_state(opt.db_path, so);
        } catch (const StateError& e) {
          if (e.code() != StateError::Code::kReadOnlyMissing) throw;
        }
      } else if (std::filesystem::exists(opt.db_path)) {
        state = open_sqlite_state(opt.db_path, so);
      }
    } else if (pg) {
      so.register_worker = true;
      state = open_pg_state(opt.db_path, so);
    } else {
      if (opt.rebuild_state && !opt.quiet)
        std::fprintf(stderr,
                     "chsync: --rebuild-state: starting with a fresh state; every span will be "
                     "sent again\n");
      state = open_sqlite_state(opt.db_path, so);
    }
  }

  // ---- exporters ----
  std::vector<std::unique_ptr<Instance>> instances;
  std::set<std::string> names;
  for (const auto& spec : opt.backends) {
    auto inst = std::make_unique<Instance>();
    inst->spec = spec;
    if (inst->spec.instance.empty()) inst->spec.instance = spec.type;
    if (!names.insert(inst->spec.instance).second)
      throw ConfigError("backend instance '" + inst->spec.instance +
                        "' given twice (name instances in the config file)");
    if (spec.type == "console") {
      inst->exporter = make_console_exporter(inst->spec.instance, opt.format, 1);
      inst->synchronous = true;
    } else if (spec.type == "null") {
      inst->exporter = make_null_exporter(inst->spec.instance);
      inst->synchronous = true;
    } else if (spec.type == "file") {
      auto it = spec.settings.find("path");
      if (it == spec.settings.end() || it->second.empty())
        throw ConfigError("--backend file needs --output PATH");
      if (!opt.dry_run) inst->exporter = make_file_exporter(inst->spec.instance, it->second);
      else inst->exporter = make_null_exporter(inst->spec.instance);
      inst->synchronous = true;
    } else {
      if (!factory) throw ConfigError("backend '" + spec.type + "' is not available");
      if (opt.dry_run)
        inst->exporter = make_null_exporter(inst->spec.instance);
      else
        inst->exporter = factory(inst->spec);
      if (!inst->exporter) throw ConfigError("unknown backend '" + spec.type + "'");
    }
    instances.push_back(std::move(inst));
  }
  const bool ordered_output = std::any_of(instances.begin(), instances.end(), [](auto& i) {
    return i->spec.type == "console" || i->spec.type == "file";
  });

  // ---- discover ----
  DiscoverResult disc = discover(opt.inputs, opt.discover);
  for (const auto& e : disc.errors)
    if (!opt.quiet) std::fprintf(stderr, "chsync: %s: %s: %s\n", e.path.c_str(), e.kind.c_str(),
                                 e.message.c_str());
  // Static sharding: this process keeps its share of the bundles (renumbered in order, since a
  // bundle's seq is its index below).
  std::uint64_t bundles_other_shards = 0, files_other_shards = 0;
  if (opt.shard_count > 1) {
    std::vector<Bundle> mine;
    for (auto& b : disc.bundles) {
      if (shard_of(b, opt.shard_count) != opt.shard_index) {
        ++bundles_other_shards;
        files_other_shards += b.files.size();
        continue;
      }
      b.seq = mine.size();
      mine.push_back(std::move(b));
    }
    disc.bundles = std::move(mine);
  }
  const auto& bundles = disc.bundles;
  // Work sharing: a shared state (PostgreSQL) hands out units of work by lease.
  WorkTable* const work_table = state && !opt.dry_run ? state->work() : nullptr;
  const bool lease_mode = work_table != nullptr;

  // Which bundles each instance needs: skip files unchanged since a complete delivery.
  std::uint64_t files_skipped = 0, files_updated = 0;
  std::vector<bool> any_need(bundles.size(), false);
  for (auto& inst : instances) {
    inst->needs.assign(bundles.size(), true);
    if (!state || opt.resend) continue;
    // A shared store answers in one query rather than one round trip per file.
    std::unordered_map<std::string, FileState> rows;
    if (state->shared())
      for (auto& fs : state->files(inst->spec.instance)) rows.emplace(fs.key, std::move(fs));
    auto lookup = [&](const std::string& key) -> std::optional<FileState> {
      if (!state->shared()) return state->file(inst->spec.instance, key);
      auto it = rows.find(key);
      if (it == rows.end()) return std::nullopt;
      return it->second;
    };
    for (std::size_t b = 0; b < bundles.size(); ++b) {
      bool all_same = true;
      for (const auto& f : bundles[b].files) {
        if (f.kind == SourceKind::kStdin) {
          all_same = false;
          break;
        }
        auto row = lookup(f.key);
        if (!row || !row->complete || row->size != f.size || row->mtime_ms != f.mtime_ms) {
          all_same = false;
          break;
        }
      }
      inst->needs[b] = !all_same;
    }
  }
  for (std::size_t b = 0; b < bundles.size(); ++b) {
    for (auto& inst : instances) any_need[b] = any_need[b] || inst->needs[b];
    if (any_need[b])
      files_updated += bundles[b].files.size();
    else
      files_skipped += bundles[b].files.size();
  }
  const bool any_work = std::any_of(any_need.begin(), any_need.end(), [](bool v) { return v; });
  // A shared store is asked per bundle instead (check_bundle), except by a dry run, which only
  // reads and so takes one snapshot like the local store.
  if (state && (!state->shared() || opt.dry_run)) {
    for (auto& inst : instances) {
      inst->in_flight_records = state->load_in_flight_records(inst->spec.instance);
      inst->in_flight_before = inst->in_flight_records;
      inst->in_flight_before.erase(
          std::unique(inst->in_flight_before.begin(), inst->in_flight_before.end()),
          inst->in_flight_before.end());
      if (!opt.resend && (any_work || !inst->in_flight_before.empty())) {
        // Loaded whole (8 bytes a key) while it fits a sixteenth of --max-memory (2 M keys at the
        // default); a larger state is asked per bundle, so memory does not grow with the state.
        const std::uint64_t max_keys = opt.max_memory_bytes / 16 / sizeof(std::uint64_t);
        if (state->settled_fits(inst->spec.instance, max_keys))
          inst->delivered = state->load_delivered(inst->spec.instance);
        else
          inst->lookup_settled = true;
        if (inst->lookup_settled && opt.verbose)
          log::info(fmt::format("{}: delivered set over {} keys: looked up per bundle",
                                inst->spec.instance, max_keys));
      }
      const std::vector<std::uint64_t> settled_before =
          inst->lookup_settled ? state->settled_among(inst->spec.instance, inst->in_flight_before)
                               : std::vector<std::uint64_t>{};
      const auto& known = inst->lookup_settled ? settled_before : inst->delivered;
      // A send of unknown outcome (in flight at a kill) whose spans a later run (itself killed
      // before it could report) delivered again: a possible repeat at the backend, counted now.
      for (auto k : inst->in_flight_before) {
        if (contains_sorted(known, k)) {
          inst->spans_repeated += inst->sends_before(k);
          inst->recovered.insert(k);
        }
      }
    }
  }

  // ---- dead letters ----
  std::unique_ptr<DeadLetterWriter> dead_letters;
  if (state && !opt.dry_run)
    dead_letters = std::make_unique<DeadLetterWriter>(dead_letter_path(opt.db_path));

  // ---- wiring: acks ----
  struct StateFailure {
    std::atomic<bool> failed{false};
    std::mutex mu;
    std::string message;
    void fail(std::string m) {
      std::lock_guard lock(mu);
      if (!failed.exchange(true)) message = std::move(m);
    }
  };
  auto state_failure = std::make_shared<StateFailure>();
  for (auto& instp : instances) {
    Instance* inst = instp.get();
    const std::string iname = inst->spec.instance;
    if (state && !opt.dry_run && !inst->synchronous) {
      inst->exporter->set_before_send([inst, st = state.get(), iname, sf = state_failure](
                                          const std::vector<SpanRef>& refs) {
        std::vector<std::uint64_t> keys;
        keys.reserve(refs.size());
        for (const auto& r : refs) keys.push_back(r.span_key);
        std::uint64_t req = 0;
        try {
          req = st->begin_request(iname, keys);
        } catch (const std::exception& e) {
          // The state cannot record the send (disk full, database gone): the run stops, and the
          // exporter keeps this request from leaving (backends/exporter.h), since a send
          // without its record could repeat uncounted.
          sf->fail(std::string("state: ") + e.what());
          throw;
        }
        std::lock_guard lock(inst->mu);
        for (auto k : keys) inst->request_of[k] = req;
        inst->reqs[req].left = keys.size();
      });
    }
    inst->exporter->set_ack_fn([inst, st = state.get(), iname, dry = opt.dry_run, &bundles,
                                dl = dead_letters.get(), sf = state_failure](Ack&& ack) {
     // Acks arrive on exporter threads: a state write that fails here (disk full, I/O error)
     // must not escape the thread. It stops the run; what was not recorded is sent again by the
     // next run (and counted as repeats through the in-flight records).
     try {
      std::vector<std::uint64_t> keys;
      keys.reserve(ack.spans.size());
      for (const auto& r : ack.spans) keys.push_back(r.span_key);
      const bool delivered = ack.outcome == Ack::Outcome::kDelivered;
      const bool dead = ack.outcome == Ack::Outcome::kDead;
      if (dead && dl) dl->write(iname, ack, keys);
      std::map<std::uint64_t, std::vector<std::uint64_t>> by_request;
      {
        std::lock_guard lock(inst->mu);
        for (const auto& r : ack.spans) {
          auto it = inst->request_of.find(r.span_key);
          std::uint64_t req = 0;
          if (it != inst->request_of.end()) {
            req = it->second;
            inst->request_of.erase(it);
          }
          by_request[req].push_back(r.span_key);
          if ((delivered || dead) && !inst->in_flight_before.empty() &&
              contains_sorted(inst->in_flight_before, r.span_key))
            inst->recovered.insert(r.span_key);
          auto& p = inst->pending[r.bundle_seq];
          if (p.outstanding > 0) --p.outstanding;
          if (!delivered && !dead) p.failed = true;
          if (delivered) ++p.delivered;
          if (p.outstanding == 0 && p.dispatched) inst->ready.push_back(r.bundle_seq);
        }
        if (delivered) inst->spans_delivered += keys.size();
        else if (dead) inst->spans_dead += keys.size();
        else inst->spans_failed += keys.size();
        // State, under inst->mu so that a request's record and request_of stay consistent.
        if (st && !dry) {
          for (auto& [req, ks] : by_request) {
            if (req == 0) {  // synchronous exporters: no in-flight record
              if (delivered || dead) st->finish_request(iname, 0, ks, delivered, dead);
              continue;
            }
            Instance::ReqInfo info;
            if (auto rit = inst->reqs.find(req); rit != inst->reqs.end()) {
              info = std::move(rit->second);
              inst->reqs.erase(rit);
            }
            info.left = info.left > ks.size() ? info.left - ks.size() : 0;
            if (!delivered && !dead && ack.http_status != 0 && info.left == 0 &&
                info.uncertain.empty()) {
              // The backend answered no (401/403/404, or a final 429/5xx): not delivered.
              st->finish_request(iname, req, ks, false, false);
              continue;
            }
            if (!delivered && !dead) {
              // Transport error, timeout or stopped: the request may have reached the backend,
              // so its record stays and the next run counts these spans as possible repeats.
              info.uncertain.insert(info.uncertain.end(), ks.begin(), ks.end());
              if (info.left > 0) inst->reqs.emplace(req, std::move(info));
              continue;
            }
            if (info.left == 0 && info.uncertain.empty()) {
              st->finish_request(iname, req, ks, delivered, dead);
              continue;
            }
            // Part of a request (413 halves, or after a failed part): finishing it removes the
            // whole record, so the rest is recorded again first (committed before the removal).
            std::vector<std::uint64_t> outstanding;
            if (info.left > 0)
              for (const auto& [k, q] : inst->request_of)
                if (q == req) outstanding.push_back(k);
            std::vector<std::uint64_t> rest = info.uncertain;
            rest.insert(rest.end(), outstanding.begin(), outstanding.end());
            const std::uint64_t nreq = st->begin_request(iname, rest);
            st->finish_request(iname, req, ks, delivered, dead);
            for (auto k : outstanding) inst->request_of[k] = nreq;
            if (info.left > 0) inst->reqs.emplace(nreq, std::move(info));
          }
        }
      }
      (void)bundles;
     } catch (const std::exception& e) {
      sf->fail(std::string("state: ") + e.what());
     }
    });
  }

  // ---- threads ----
  StageRunner runner;
  const std::uint64_t work_cap = std::max<std::uint64_t>(opt.max_memory_bytes / 4, 8u << 20);
  BoundedQueue<WorkItem> work(work_cap);
  BoundedQueue<BundleResult> results(std::max<std::uint64_t>(opt.max_memory_bytes / 4, 8u << 20));
  BadLineCounts bad;
  std::atomic<std::uint64_t> bytes_read{0}, bundles_done{0}, files_done{0}, disk_bytes_done{0};
  std::mutex err_mu;
  std::vector<std::string> file_errors;

  // ---- metrics: sampled on scrape from the counters above (docs/operations.md) ----
  MetricsRegistry metrics;
  const double run_start_s = static_cast<double>(now_ms()) / 1000.0;
  std::atomic<bool> run_finished{false};  // after the joins: synchronous exporters' stats are safe
  metrics.set_sampler([&](std::vector<MetricSample>& out) {
    auto add = [&](const char* n, std::string l, double v) { out.push_back({n, std::move(l), v}); };
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    add("chsync_run_start_timestamp_seconds", "", run_start_s);
    add("chsync_files_total", "", d(files_updated));
    add("chsync_files_done", "", d(files_done.load()));
    add("chsync_bytes_read_total", "", d(bytes_read.load()));
    {
      std::lock_guard lock(bad.mu);
      for (auto& [k, v] : bad.by_kind) add("chsync_bad_lines_total", metric_label("kind", k), d(v));
    }
    if (redactor)
      for (auto& [k, v] : redactor->counts())
        add("chsync_redactions_total", metric_label("kind", k), d(v));
    add("chsync_queue_bytes", metric_label("queue", "work"), d(work.queued_bytes()));
    add("chsync_queue_bytes", metric_label("queue", "result"), d(results.queued_bytes()));
    add("chsync_stage_blocked_seconds_total", metric_label("stage", "feeder"),
        d(work.counters().push_blocked_ns.load()) / 1e9);
    add("chsync_stage_blocked_seconds_total", metric_label("stage", "mapper"),
        d(results.counters().push_blocked_ns.load()) / 1e9);
    for (auto& inst : instances) {
      const std::string b = metric_label("backend", inst->spec.instance);
      {
        std::lock_guard lock(inst->mu);
        add("chsync_spans_sent_total", b, d(inst->spans_delivered));
        add("chsync_dead_letters_total", b, d(inst->spans_dead));
      }
      if (inst->synchronous && !run_finished.load()) continue;  // their stats: dispatcher only
      const ExporterStats st = inst->exporter->stats();
      add("chsync_bytes_sent_total", b, d(st.bytes_wire));
      add("chsync_in_flight_requests", b, d(st.in_flight));
      for (auto& [code, n] : st.status_counts)
        add("chsync_requests_total", b + "," + metric_label("status", std::to_string(code)), d(n));
      for (auto& [cause, n] : st.retries)
        add("chsync_retries_total", b + "," + metric_label("cause", cause), d(n));
      add("chsync_stage_blocked_seconds_total", metric_label("stage", "sender." + inst->spec.instance),
          d(st.time_blocked_ms) / 1e3);
    }
  });
  std::unique_ptr<MetricsServer> metrics_server;  // declared after what it samples: stops first
  if (!opt.metrics_listen.empty()) {
    try {
      metrics_server = std::make_unique<MetricsServer>(metrics, opt.metrics_listen);
    } catch (const std::runtime_error& e) {
      throw ConfigError(e.what());
    }
    if (!opt.quiet)
      std::fprintf(stderr, "chsync: metrics at http://127.0.0.1:%u/metrics\n",
                   static_cast<unsigned>(metrics_server->port()));
  }

  auto report_bad = [&](const BadLine& bl) {
    std::lock_guard lock(bad.mu);
    bad.by_kind[bl.kind]++;
    if (!opt.quiet && bad.printed < opt.max_bad_line_messages) {
      std::fprintf(stderr, "chsync: %s:%llu: bad line (%s): %s\n", bl.file.c_str(),
                   static_cast<unsigned long long>(bl.line), bl.kind.c_str(), bl.message.c_str());
      if (++bad.printed == opt.max_bad_line_messages)
        std::fprintf(stderr, "chsync: further bad lines are counted but not printed\n");
    }
  };

  // Feeder: plain bundles first (workers read them), then archives member by member.
  // Members of a bundle may be scattered in any order, so a bundle is released when its last
  // member has been read. A member waits in memory while the bytes held for incomplete bundles
  // stay under pending_cap; beyond that, or when it is large on its own, it is spooled to a
  // private temp folder and the worker streams it back (measured against two passes in
  // docs/inputs.md). `spool` outlives the workers and removes the folder at the end.
  SpoolDir spool;
  const std::uint64_t pending_cap = std::max<std::uint64_t>(opt.max_memory_bytes / 4, 8u << 20);
  const std::uint64_t member_mem_cap = pending_cap / 4;
  // ---- work units (lease mode; stages/state/work_table.h) ----
  // A unit is a plain bundle or a whole archive. It is complete once every bundle pushed for it
  // has been finalized by every instance that needs it; then it is marked done in the work
  // table (or released, when a bundle failed: another worker or run retries it).
  struct Unit {
    std::string key;
    std::string archive;               // non-empty: archive unit
    std::vector<std::size_t> bundles;  // needed bundles, in order
    std::uint64_t left = 0;            // (bundle, instance) finalizations still due
    bool feeding = false;
    bool failed = false;
    bool finished = false;
    bool active = false;  // claimed in this run and not finished: never fed twice at once
  };
  std::vector<Unit> units;
  std::vector<std::size_t> unit_of(bundles.size(), static_cast<std::size_t>(-1));
  std::unordered_map<std::string, std::size_t> unit_by_key;
  std::mutex unit_mu;
  std::condition_variable unit_cv;
  std::size_t units_outstanding = 0;     // claimed here, not yet complete
  std::size_t bundles_in_pipeline = 0;   // fed, not yet dispatched (bounds what is claimed)
  std::uint64_t units_claimed = 0, units_done = 0, units_taken_over = 0;
  if (lease_mode) {
    for (std::size_t b = 0; b < bundles.size(); ++b) {
      if (!any_need[b] || bundles[b].files.empty()) continue;
      const FileRef& f0 = bundles[b].files[0];
      const bool member = f0.kind == SourceKind::kArchiveMember;
      const std::string key = member ? f0.path : f0.key;
      auto [it, fresh] = unit_by_key.emplace(key, units.size());
      if (fresh) {
        Unit u;
        u.key = key;
        if (member) u.archive = f0.path;
        units.push_back(std::move(u));
      }
      units[it->second].bundles.push_back(b);
      unit_of[b] = it->second;
    }
    std::vector<WorkUnitSpec> specs;
    specs.reserve(units.size());
    for (const auto& u : units) {
      std::uint64_t h = kFnvBasis;
      for (auto b : u.bundles)
        for (const auto& f : bundles[b].files)
          h = fnv1a(h, fmt::format("{}\n{}\n{}\n", f.key, f.size, f.mtime_ms));
      specs.push_back(WorkUnitSpec{u.key, fmt::format("{:016x}", h), u.bundles.front()});
    }
    work_table->register_units(specs);
  }
  // A (bundle, instance) pair reached its outcome: completes the unit once nothing is due.
  auto unit_finish_if_done = [&](std::size_t u, std::unique_lock<std::mutex>& lock) {
    Unit& unit = units[u];
    if (unit.left > 0 || unit.feeding || unit.finished) return;
    unit.finished = true;
    unit.active = false;
    --units_outstanding;
    const bool failed = unit.failed;
    if (!failed) ++units_done;
    const std::string key = unit.key;
    lock.unlock();
    unit_cv.notify_all();
    try {
      if (failed) work_table->release(key);
      else work_table->complete(key);
    } catch (const std::exception& e) {
      // The lease then simply expires and another worker redoes the unit (deduped by span).
      log::warn(std::string("work table: ") + e.what());
    }
    lock.lock();
  };
  auto bundle_finalized = [&](std::size_t seq, bool failed) {
    if (!lease_mode || seq >= unit_of.size() || unit_of[seq] == static_cast<std::size_t>(-1))
      return;
    std::unique_lock lock(unit_mu);
    Unit& unit = units[unit_of[seq]];
    if (failed) unit.failed = true;
    if (unit.left > 0) --unit.left;
    unit_finish_if_done(unit_of[seq], lock);
  };
  auto push_item = [&](WorkItem&& item, std::uint64_t bytes) {
    if (lease_mode) {
      std::uint64_t n = 0;
      for (auto& inst : instances) n += inst->needs[item.bundle_index] ? 1 : 0;
      std::lock_guard lock(unit_mu);
      units[unit_of[item.bundle_index]].left += n;
      ++bundles_in_pipeline;
    }
    return work.push(std::move(item), bytes);
  };
  auto bundle_dispatched = [&] {
    if (!lease_mode) return;
    {
      std::lock_guard lock(unit_mu);
      if (bundles_in_pipeline > 0) --bundles_in_pipeline;
    }
    unit_cv.notify_all();
  };
  std::atomic<bool> feeder_idle{false};  // lease mode: waiting for claims (flush partial batches)
  // Lease mode feeder: claim units a few at a time, only while few bundles wait to be mapped
  // (units waiting for acks do not count: the exporters' in-flight limit bounds those), feed
  // them, and keep asking until no unit is pending, claimed by a live worker, or held by an
  // expired lease (a crashed worker's units are taken over here). Claiming just ahead of the
  // mappers keeps the units spread over the workers.
  auto feed_leased = [&](const auto& feed_archive) {
    const std::size_t max_queued = 4 * std::max<std::size_t>(opt.workers, 1) + 4;
    const auto idle_wait = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500),
                                                               opt.lease / 4);
    std::vector<std::string> foreign;  // claimed but unknown here (not in this run's inputs)
    // The database unreachable for this long (claims failing in a row) ends the run like any
    // other state failure: what was sent is recorded by the next run that can reach it.
    const auto give_up_after = std::max<std::chrono::milliseconds>(opt.lease, std::chrono::seconds(10));
    std::optional<Clock::time_point> failing_since;
    auto db_trouble = [&](const std::exception& e) {
      if (!failing_since) failing_since = Clock::now();
      if (Clock::now() - *failing_since > give_up_after) {
        state_failure->fail(std::string("work table: ") + e.what());
        return true;
      }
      log::warn(std::string("work table: ") + e.what() + " (retrying)");
      std::this_thread::sleep_for(idle_wait);
      return false;
    };
    auto last_wait_log = Clock::now();
    // --verbose: why this worker is still waiting (an operator's first question at the end).
    auto log_wait = [&](const char* why, const WorkCounts* c) {
      if (!opt.verbose || Clock::now() - last_wait_log < std::chrono::seconds(5)) return;
      last_wait_log = Clock::now();
      std::size_t mine = 0, queued = 0;
      {
        std::lock_guard lock(unit_mu);
        mine = units_outstanding;
        queued = bundles_in_pipeline;
      }
      log::info(fmt::format("work sharing: waiting ({}): {} units in progress here, {} bundles "
                            "queued{}",
                            why, mine, queued,
                            c ? fmt::format("; group: {} pending, {} claimed ({} here), {} "
                                            "expired, {} done",
                                            c->pending, c->claimed, c->claimed_by_me,
                                            c->expired, c->done)
                              : std::string()));
    };
    while (!runner.stop_requested()) {
      std::size_t room = 0;
      {
        std::unique_lock lock(unit_mu);
        if (bundles_in_pipeline >= max_queued) {
          lock.unlock();
          log_wait("mappers busy", nullptr);
          lock.lock();
          unit_cv.wait_for(lock, std::chrono::milliseconds(100));
          continue;
        }
        room = std::min<std::size_t>(max_queued - bundles_in_pipeline, 8);
      }
      std::vector<ClaimedUnit> got;
      try {
        got = work_table->claim(room, foreign);
        failing_since.reset();
      } catch (const std::exception& e) {
        feeder_idle = true;
        if (db_trouble(e)) return;
        continue;
      }
      if (got.empty()) {
        feeder_idle = true;
        std::size_t mine = 0;
        {
          std::lock_guard lock(unit_mu);
          mine = units_outstanding;
        }
        if (mine == 0) {
          WorkCounts c;
          try {
            c = work_table->counts();
            failing_since.reset();
          } catch (const std::exception& e) {
            if (db_trouble(e)) return;
            continue;
          }
          // Nothing left that this process could ever take: done. Units only other inputs know
          // (foreign) are left to their own workers; units still claimed by this run are
          // finished here (their completion is on its way to the database).
          if (c.claimed == c.claimed_by_me && c.pending + c.expired <= foreign.size()) break;
          log_wait("units held by other workers", &c);
        } else {
          log_wait("own units awaiting acknowledgement", nullptr);
        }
        std::unique_lock lock(unit_mu);
        unit_cv.wait_for(lock, idle_wait);
        continue;
      }
      feeder_idle = false;
      for (const auto& cu : got) {
        auto it = unit_by_key.find(cu.key);
        if (it == unit_by_key.end()) {
          foreign.push_back(cu.key);
          try {
            work_table->release(cu.key);
          } catch (const std::exception& e) {
            log::warn(std::string("work table: ") + e.what());
          }
          continue;
        }
        const std::size_t u = it->second;
        {
          std::lock_guard lock(unit_mu);
          // Still in this pipeline (the claim query skips this run's own expired leases; this
          // guards the invariant that a bundle's bookkeeping is fed once at a time).
          if (units[u].active) continue;
          units[u].active = true;
          ++units_outstanding;
          ++units_claimed;
          if (cu.attempts > 1) ++units_taken_over;
          units[u].feeding = true;
          units[u].finished = false;
          units[u].failed = false;
        }
        if (cu.attempts > 1 && opt.verbose)
          log::info(fmt::format("taking over {} (attempt {}, last holder {})", cu.key,
                                cu.attempts, cu.prev_owner.empty() ? "none" : cu.prev_owner));
        bool open = true;
        if (!units[u].archive.empty()) {
          open = feed_archive(units[u].archive, units[u].bundles);
        } else {
          open = push_item(WorkItem{units[u].bundles.front(), {}, {}}, 1);
        }
        {
          std::unique_lock lock(unit_mu);
          units[u].feeding = false;
          unit_finish_if_done(u, lock);
        }
        if (!open) return;
      }
    }
  };
  runner.spawn("feeder", [&] {
    auto feed_error = [&](const std::string& msg) {
      std::lock_guard lock(err_mu);
      file_errors.push_back(msg);
      if (!opt.quiet) std::fprintf(stderr, "chsync: %s\n", msg.c_str());
    };
    std::vector<char> buf(1 << 16);
    // Reads one archive front to back and releases its bundles (list: needed ones, in order).
    // Returns false once the work queue is closed (stop).
    auto feed_archive = [&](const std::string& apath, const std::vector<std::size_t>& list) {
      // Discover already named this archive's damage (it lists the same headers): say it once.
      const bool damage_known = std::any_of(disc.errors.begin(), disc.errors.end(), [&](auto& e) {
        return e.path == apath && e.kind == "corrupt_archive";
      });
      std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> where;
      std::map<std::size_t, WorkItem> partial;  // ordered: released in bundle order at the end
      std::unordered_map<std::size_t, std::size_t> missing;
      std::unordered_map<std::size_t, std::uint64_t> held;  // in-memory bytes per bundle
      std::uint64_t pending_bytes = 0;
      for (auto b : list) {
        for (std::size_t i = 0; i < bundles[b].files.size(); ++i)
          where[bundles[b].files[i].member] = {b, i};
        const std::size_t n = bundles[b].files.size();
        partial[b] = WorkItem{b, std::vector<std::string>(n), std::vector<std::string>(n)};
        missing[b] = n;
      }
      struct archive* ar = archive_read_new();
      archive_read_support_filter_all(ar);
      archive_read_support_format_all(ar);
      if (archive_read_open_filename(ar, apath.c_str(), 1 << 20) != ARCHIVE_OK) {
        feed_error(apath + ": cannot open archive: " +
                   (archive_error_string(ar) ? archive_error_string(ar) : "unknown error"));
        archive_read_free(ar);
        return true;
      }
      archive_entry* e = nullptr;
      bool stopped = false;
      for (;;) {
        if (runner.stop_requested()) break;
        int rc = archive_read_next_header(ar, &e);
        if (rc == ARCHIVE_EOF) break;
        if (rc < ARCHIVE_WARN) {
          if (!damage_known)
            feed_error(apath + ": truncated or corrupt archive: " +
                       (archive_error_string(ar) ? archive_error_string(ar) : "bad header"));
          break;
        }
        std::string m = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
        while (m.rfind("./", 0) == 0) m.erase(0, 2);
        auto it = where.find(m);
        if (it == where.end() || partial.find(it->second.first) == partial.end()) {
          archive_read_data_skip(ar);
          continue;
        }
        auto [b, i] = it->second;
        const std::uint64_t declared =
            archive_entry_size_is_set(e) ? static_cast<std::uint64_t>(archive_entry_size(e)) : 0;
        std::string data, spath, werr;
        int fd = -1;
        auto to_disk = [&] {
          spath = spool.create_file(fd, werr);
          if (spath.empty()) return false;
          if (!data.empty() && !write_all(fd, data.data(), data.size(), werr)) return false;
          std::string().swap(data);
          return true;
        };
        bool ok = true;
        if (declared > member_mem_cap || pending_bytes + declared > pending_cap) ok = to_disk();
        std::string damage;
        while (ok) {
          la_ssize_t n = archive_read_data(ar, buf.data(), buf.size());
          if (n < 0) {
            damage = archive_error_string(ar) ? archive_error_string(ar) : "corrupt member";
            break;
          }
          if (n == 0) break;
          if (fd >= 0) {
            ok = write_all(fd, buf.data(), static_cast<std::size_t>(n), werr);
          } else {
            data.append(buf.data(), static_cast<std::size_t>(n));
            // Sizes can be unknown (zip streams) or wrong: check as the data grows.
            if (data.size() > member_mem_cap || pending_bytes + data.size() > pending_cap)
              ok = to_disk();
          }
        }
        if (fd >= 0) ::close(fd);
        if (!ok) {
          // Spooling failed (disk full?): the member is reported and left out, the rest goes on.
          feed_error(apath + "!" + m + ": cannot spool member: " + werr);
          if (!spath.empty()) ::unlink(spath.c_str());
          spath.clear();
          std::string().swap(data);
          archive_read_data_skip(ar);
        }
        // Lines before the damage are kept: the reader passes the cut tail as a bad line.
        if (!damage.empty() && !damage_known)
          feed_error(apath + "!" + m + ": truncated or corrupt archive member: " + damage);
        held[b] += data.size();
        pending_bytes += data.size();
        WorkItem& item = partial[b];
        item.member_data[i] = std::move(data);
        item.member_spool[i] = std::move(spath);
        if (--missing[b] == 0) {
          const std::uint64_t sz = 1 + held[b];
          pending_bytes -= held[b];
          held.erase(b);
          WorkItem ready = std::move(item);
          partial.erase(b);
          if (!push_item(std::move(ready), sz)) {
            stopped = true;
            break;
          }
        }
        if (!damage.empty()) break;
      }
      // Bundles cut short by damage: map what arrived (the rest stays unread and counted).
      for (auto& [b, item] : partial) {
        if (stopped) break;
        if (!push_item(std::move(item), 1 + held[b])) break;
      }
      archive_read_free(ar);
      return !stopped;
    };
    if (lease_mode) {
      feed_leased(feed_archive);
      work.close();
      return;
    }
    std::map<std::string, std::vector<std::size_t>> by_archive;
    for (std::size_t b = 0; b < bundles.size(); ++b) {
      if (!any_need[b]) continue;
      if (runner.stop_requested()) break;
      if (!bundles[b].files.empty() && bundles[b].files[0].kind == SourceKind::kArchiveMember) {
        by_archive[bundles[b].files[0].path].push_back(b);
        continue;
      }
      if (!work.push(WorkItem{b, {}, {}}, 1)) break;
    }
    for (auto& [apath, list] : by_archive) {
      if (runner.stop_requested()) break;
      if (!feed_archive(apath, list)) break;
    }
    work.close();
  });

  MapOptions map_opts = opt.map;
  map_opts.redactor = redactor.get();
  map_opts.no_content = opt.no_content;
  if (map_opts.now_ms == 0) map_opts.now_ms = now_ms();
  std::atomic<std::size_t> workers_left{std::max<std::size_t>(opt.workers, 1)};
  for (std::size_t w = 0; w < std::max<std::size_t>(opt.workers, 1); ++w) {
    runner.spawn("worker-" + std::to_string(w), [&] {
      simdjson::dom::parser tail_parser;
      while (auto item = work.pop()) {
        if (runner.stop_requested()) continue;  // drain without work
        const Bundle& bundle = bundles[item->bundle_index];
        BundleResult res;
        res.bundle_index = item->bundle_index;
        res.files.resize(bundle.files.size());
        BundleMapper mapper(map_opts, bundle, report_bad);
        for (std::size_t fi = 0; fi < bundle.files.size(); ++fi) {
          const FileRef& f = bundle.files[fi];
          FileOutcome& fo = res.files[fi];
          auto on_line = [&](std::string_view line, std::size_t cap, std::uint64_t ln,
                             std::uint64_t off, bool no_newline) {
            if (line.empty()) return true;
            if (no_newline) {
              // A last line without '\n': complete only if it parses (else: still being written,
              // or cut off in an archive).
              simdjson::padded_string ps(line);
              if (tail_parser.parse(ps).error() != simdjson::SUCCESS) {
                fo.truncated_tail = true;
                if (!f.settles || f.kind == SourceKind::kArchiveMember)
                  report_bad(BadLine{f.display, ln, "truncated_tail",
                                     "last line has no newline and does not parse"});
                return true;
              }
            }
            mapper.add_line(fi, line, cap, ln, off);
            return true;
          };
          auto on_too_long = [&](std::uint64_t ln, std::uint64_t n) {
            ++fo.bad;
            report_bad(BadLine{f.display, ln, "too_long",
                               fmt::format("line of {} bytes exceeds --max-line-bytes", n)});
          };
          if (f.size == 0 && f.kind != SourceKind::kStdin && !opt.quiet)
            std::fprintf(stderr, "chsync: %s: empty file (nothing to export)\n",
                         f.display.c_str());
          ReadResult rr;
          if (f.kind == SourceKind::kArchiveMember) {
            const std::string spooled =
                fi < item->member_spool.size() ? item->member_spool[fi] : std::string();
            if (!spooled.empty()) {
              FileRef sf;
              sf.kind = SourceKind::kPlain;
              sf.path = spooled;
              rr = read_lines(sf, opt.reader, on_line, on_too_long);
              ::unlink(spooled.c_str());
            } else if (fi < item->member_data.size()) {
              rr = read_memory_lines(item->member_data[fi], opt.reader, on_line, on_too_long);
              std::string().swap(item->member_data[fi]);  // release as the bundle is read
            }
          } else {
            rr = read_lines(f, opt.reader, on_line, on_too_long);
          }
          fo.lines = rr.end_line;
          fo.end_offset = rr.end_offset;
          fo.bytes = rr.bytes;
          fo.error = rr.error;
          res.bytes += rr.bytes;
          bytes_read.fetch_add(rr.bytes, std::memory_order_relaxed);
          if (!rr.error.empty()) {
            std::lock_guard lock(err_mu);
            file_errors.push_back(f.display + ": " + rr.error);
            if (!opt.quiet) std::fprintf(stderr, "chsync: %s: %s\n", f.display.c_str(), rr.error.c_str());
          }
        }
        mapper.finish(res.spans);
        res.stats = mapper.stats();
        const bool ask_state =
            !opt.resend && !res.spans.empty() &&
            (lease_mode || std::any_of(instances.begin(), instances.end(), [&](auto& i) {
               return i->lookup_settled && i->needs[item->bundle_index];
             }));
        if (ask_state) {
          // Lease mode: another worker may have delivered some of these since this run started
          // (a resume copy in another bundle, or a crashed worker's unit): ask the shared state
          // now. A local state too large to load whole is asked the same way (lookup_settled).
          std::vector<std::uint64_t> keys;
          keys.reserve(res.spans.size());
          for (const auto& sp : res.spans) keys.push_back(sp.span_key());
          std::sort(keys.begin(), keys.end());
          keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
          res.checks.resize(instances.size());
          for (std::size_t ii = 0; ii < instances.size(); ++ii) {
            if (!instances[ii]->needs[item->bundle_index]) continue;
            try {
              if (lease_mode)
                res.checks[ii] = state->check_bundle(instances[ii]->spec.instance, keys);
              else if (instances[ii]->lookup_settled)
                res.checks[ii].settled = state->settled_among(instances[ii]->spec.instance, keys);
            } catch (const std::exception& e) {
              state_failure->fail(std::string("state: ") + e.what());
            }
          }
        }
        std::uint64_t sz = 64;
        for (const auto& s : res.spans) sz += approx_bytes(s);
        if (!results.push(std::move(res), sz)) break;
      }
      if (workers_left.fetch_sub(1) == 1) results.close();
    });
  }

  // Dispatcher: dedupe, order (console/file), send; counts.
  MapStats total_stats;
  std::mutex stats_mu;
  std::atomic<bool> exporter_fatal{false};
  std::uint64_t bundles_with_held = 0;
  std::vector<std::vector<FileOutcome>> outcomes(bundles.size());
  std::vector<bool> mapped(bundles.size(), false);
  std::vector<std::uint64_t> held_by_bundle(bundles.size(), 0);

  auto finalize_ready_bundles = [&](Instance& inst) {
    // The bookkeeping runs in a dry run too (so `pending` does not grow); only rows are skipped.
    const bool write_rows = state && !opt.dry_run;
    std::vector<FileState> rows;
    std::vector<std::uint64_t> done;
    std::vector<std::pair<std::uint64_t, bool>> outcomes_of;  // (bundle, failed)
    std::vector<std::uint64_t> adopted_done;  // adopted in-flight records now settled
    {
      std::lock_guard lock(inst.mu);
      std::vector<std::uint64_t> ready;
      ready.swap(inst.ready);
      std::sort(ready.begin(), ready.end());
      ready.erase(std::unique(ready.begin(), ready.end()), ready.end());
      for (auto seq : ready) {
        auto pit = inst.pending.find(seq);
        if (pit == inst.pending.end()) continue;
        auto& p = pit->second;
        if (!p.dispatched || p.outstanding > 0) continue;
        done.push_back(seq);
        outcomes_of.emplace_back(seq, p.failed);
        if (auto ait = inst.adopted_request.find(seq); ait != inst.adopted_request.end()) {
          if (!p.failed) adopted_done.push_back(ait->second);
          inst.adopted_request.erase(ait);
        }
        if (p.failed || !write_rows) continue;
        const Bundle& b = bundles[seq];
        const auto& fos = outcomes[seq];
        for (std::size_t i = 0; i < b.files.size(); ++i) {
          const FileRef& f = b.files[i];
          if (f.kind == SourceKind::kStdin) continue;
          FileState fs;
          fs.instance = inst.spec.instance;
          fs.key = f.key;
          fs.size = f.size;
          fs.mtime_ms = f.mtime_ms;
          fs.committed_offset = i < fos.size() ? fos[i].end_offset : 0;
          fs.lines = i < fos.size() ? fos[i].lines : 0;
          fs.errors = i < fos.size() ? fos[i].bad : 0;
          const bool tail_pending = i < fos.size() && fos[i].truncated_tail && f.settles;
          const bool read_error = i < fos.size() && !fos[i].error.empty();
          // An archive member cut short by damage (fewer bytes than its header says) stays
          // incomplete, so a repaired archive is read again even if size and mtime match.
          const bool member_short = f.kind == SourceKind::kArchiveMember && i < fos.size() &&
                                    fos[i].bytes < f.size;
          fs.complete = held_by_bundle[seq] == 0 && !tail_pending && !read_error && !member_short;
          fs.last_sync_ms = now_ms();
          fs.spans = i == 0 ? p.delivered : 0;
          fs.project = b.project;
          rows.push_back(std::move(fs));
        }
      }
      for (auto s : done) inst.pending.erase(s);
    }
    if (write_rows && !rows.empty() && !state_failure->failed.load()) {
      try {
        state->put_files(rows);
        for (auto req : adopted_done) state->finish_request(inst.spec.instance, req, {}, false, false);
      } catch (const std::exception& e) {
        state_failure->fail(std::string("state: ") + e.what());
      }
    }
    // The unit is done only if its rows were written (else it is released for a retry).
    const bool rows_failed = write_rows && state_failure->failed.load();
    for (auto [seq, failed] : outcomes_of) bundle_finalized(seq, failed || rows_failed);
  };

  // Sends one bundle's spans to one instance, then records finished bundles. Runs on the
  // dispatcher thread (one backend) or on the instance's sender thread (several backends).
  auto send_to = [&](Instance& inst, std::size_t bi, std::vector<Span>&& out, std::uint64_t repeats) {
    // After a signal (or a fatal error) nothing new goes out: only in-flight requests drain.
    if (!out.empty() && !exporter_fatal.load() && !runner.stop_requested()) {
      inst.spans_repeated += repeats;  // one thread per instance; read after join
      if (!inst.exporter->send(std::move(out))) {
        exporter_fatal = true;
        runner.request_stop();
      }
    } else if (!out.empty()) {
      std::lock_guard lock(inst.mu);
      inst.pending[bi].failed = true;
    }
    finalize_ready_bundles(inst);
  };
  // Several backends: each gets a bounded queue and a sender thread, so a slow or failing backend
  // (send() blocked on its in-flight slots while it retries) holds back only its own queue; the
  // dispatcher (and so every other backend) blocks only once that queue holds its share of the
  // memory cap. One backend keeps the direct call (no extra copy, no extra thread).
  struct SendItem {
    std::size_t bundle = 0;
    std::vector<Span> spans;
    std::uint64_t repeats = 0;
    bool flush = false;  // input paused: send the partial batch, record finished bundles
  };
  std::vector<std::unique_ptr<BoundedQueue<SendItem>>> send_queues;
  // Per sender: -1 not stopped yet, else the result of its exporter's stop().
  std::vector<int> sender_stopped(instances.size() > 1 ? instances.size() : 0, -1);
  if (instances.size() > 1) {
    const std::uint64_t per_queue =
        std::max<std::uint64_t>(opt.max_memory_bytes / 4 / instances.size(), 4u << 20);
    for (std::size_t ii = 0; ii < instances.size(); ++ii) {
      send_queues.push_back(std::make_unique<BoundedQueue<SendItem>>(per_queue));
      runner.spawn("sender-" + instances[ii]->spec.instance, [&, ii] {
        while (auto item = send_queues[ii]->pop()) {
          if (item->flush) {
            instances[ii]->exporter->flush();
            finalize_ready_bundles(*instances[ii]);
            continue;
          }
          send_to(*instances[ii], item->bundle, std::move(item->spans), item->repeats);
        }
        // Input is exhausted: flush this backend's partial batch and drain it now, without
        // waiting for the slower backends' senders.
        sender_stopped[ii] = instances[ii]->exporter->stop(opt.drain_timeout) ? 1 : 0;
      });
    }
  }

  auto dispatch = [&](BundleResult& r) {
    const std::size_t bi = r.bundle_index;
    {
      std::lock_guard lock(stats_mu);
      total_stats.lines += r.stats.lines;
      total_stats.bad_lines_json += r.stats.bad_lines_json;
      total_stats.bad_lines_utf8 += r.stats.bad_lines_utf8;
      total_stats.bad_lines_schema += r.stats.bad_lines_schema;
      total_stats.turns += r.stats.turns;
      total_stats.turns_held += r.stats.turns_held;
      total_stats.spans += r.stats.spans;
      total_stats.generations += r.stats.generations;
      total_stats.tool_spans += r.stats.tool_spans;
      total_stats.agents += r.stats.agents;
      total_stats.agents_unlinked += r.stats.agents_unlinked;
      total_stats.events += r.stats.events;
    }
    if (r.stats.turns_held > 0) ++bundles_with_held;
    held_by_bundle[bi] = r.stats.turns_held;
    bundle_dispatched();
    outcomes[bi] = std::move(r.files);
    mapped[bi] = true;
    bundles_done.fetch_add(1, std::memory_order_relaxed);
    files_done.fetch_add(bundles[bi].files.size(), std::memory_order_relaxed);
    disk_bytes_done.fetch_add(bundles[bi].total_bytes(), std::memory_order_relaxed);
    for (std::size_t ii = 0; ii < instances.size(); ++ii) {
      Instance& inst = *instances[ii];
      if (!inst.needs[bi]) continue;
      std::vector<Span> out;
      out.reserve(r.spans.size());
      std::uint64_t repeats = 0;
      static const BundleCheck kNoCheck;
      const BundleCheck& chk = ii < r.checks.size() ? r.checks[ii] : kNoCheck;
      // Sends of unknown outcome by a gone run, now this run's: each a possible repeat.
      repeats += chk.adopted.size();
      if (chk.adopted_request != 0) {
        std::lock_guard lock(inst.mu);
        inst.adopted_request[bi] = chk.adopted_request;
      }
      for (auto& s : r.spans) {
        const std::uint64_t k = s.span_key();
        if (contains_sorted(inst.delivered, k) || contains_sorted(chk.settled, k) ||
            !inst.sent_this_run.insert(k)) {
          ++inst.spans_deduped;
          continue;
        }
        if (!inst.in_flight_before.empty() && contains_sorted(inst.in_flight_before, k))
          repeats += inst.sends_before(k);
        if (ii + 1 == instances.size())
          out.push_back(std::move(s));
        else
          out.push_back(s);
      }
      {
        std::lock_guard lock(inst.mu);
        auto& p = inst.pending[bi];
        p.outstanding += out.size();
        p.dispatched = true;
        if (p.outstanding == 0) inst.ready.push_back(bi);
      }
      if (!send_queues.empty()) {
        const std::uint64_t bytes = std::accumulate(
            out.begin(), out.end(), std::uint64_t{64},
            [](std::uint64_t n, const Span& sp) { return n + approx_bytes(sp); });
        if (send_queues[ii]->push(SendItem{bi, std::move(out), repeats}, bytes)) continue;
        out.clear();  // closed: cannot happen while the dispatcher runs; account as not sent
      }
      send_to(inst, bi, std::move(out), repeats);
    }
  };

  runner.spawn("dispatcher", [&] {
    // Console/file output is ordered by bundle so it is the same for any --workers. The buffer is
    // bounded: past a quarter of --max-memory the smallest waiting bundle goes out even though an
    // earlier one is still being mapped (that one then follows as soon as it arrives).
    std::map<std::size_t, BundleResult> reorder;  // bundle seq -> result
    std::map<std::size_t, std::uint64_t> reorder_size;
    std::uint64_t reorder_bytes = 0;
    const std::uint64_t reorder_cap = std::max<std::uint64_t>(opt.max_memory_bytes / 4, 8u << 20);
    std::size_t next = 0;
    auto advance = [&] {
      while (next < bundles.size() && !any_need[next]) ++next;
    };
    advance();
    // Lease mode: while the feeder waits for claims, partial batches go out and finished bundles
    // are recorded, so that units complete (and the feeder may claim more) without more input.
    auto idle_flush = [&] {
      if (send_queues.empty()) {
        for (auto& inst : instances) {
          inst->exporter->flush();
          finalize_ready_bundles(*inst);
        }
        return;
      }
      for (auto& q : send_queues) {
        SendItem f;
        f.flush = true;
        q->try_push(f, 64);
      }
    };
    for (;;) {
      bool timed_out = false;
      auto r = lease_mode ? results.pop_for(std::chrono::milliseconds(50), timed_out)
                          : results.pop();
      if (!r) {
        if (timed_out) {
          if (feeder_idle.load()) idle_flush();
          continue;
        }
        break;
      }
      // With leases this process sees only the bundles it claims, in claim order: waiting for
      // "the next" bundle could wait for one another worker holds, so output is not reordered.
      if (!ordered_output || lease_mode) {
        dispatch(*r);
        continue;
      }
      std::uint64_t sz = 64;
      for (const auto& sp : r->spans) sz += approx_bytes(sp);
      reorder_bytes += sz;
      reorder_size[r->bundle_index] = sz;
      reorder.emplace(r->bundle_index, std::move(*r));
      while (!reorder.empty() && (reorder.begin()->first <= next || reorder_bytes > reorder_cap)) {
        const std::size_t k = reorder.begin()->first;
        dispatch(reorder.begin()->second);
        reorder.erase(reorder.begin());
        reorder_bytes -= reorder_size[k];
        reorder_size.erase(k);
        if (k >= next) {
          next = k + 1;
          advance();
        }
      }
    }
    for (auto& [k, r] : reorder) dispatch(r);  // after a stop: whatever arrived
    for (auto& q : send_queues) q->close();  // senders drain what is queued, then exit
  });

  // Signal watcher: a SIGINT/SIGTERM stops reading; in-flight work drains.
  std::atomic<bool> all_done{false};
  // A live line only when stderr is a terminal and stdout does not share it (console output).
  const bool progress_tty = ::isatty(2) && !(::isatty(1) && ordered_output);
  bool progress_drawn = false;
  std::uint64_t files_to_read = 0, disk_bytes_to_read = 0;
  for (std::size_t b = 0; b < bundles.size(); ++b)
    if (any_need[b]) {
      files_to_read += bundles[b].files.size();
      disk_bytes_to_read += bundles[b].total_bytes();
    }
  auto worker_progress = [&] {
    WorkerProgress p;
    {
      std::lock_guard lock(unit_mu);
      p.units_done = units_done;
    }
    for (auto& inst : instances) {
      std::lock_guard lock(inst->mu);
      p.spans_sent += inst->spans_delivered;
    }
    p.bytes_read = bytes_read.load();
    return p;
  };
  std::string lease_note;  // watcher thread only: " | units ... workers ..." from the heartbeat
  std::thread watcher([&] {
    auto last_progress = Clock::now();
    auto last_heartbeat = Clock::now();
    bool heartbeat_failed = false;
    while (!all_done.load()) {
      // After a failed heartbeat (database away) try again every 500 ms rather than every
      // lease/3: the leases must be renewed as soon as the database is back, before they run
      // out and other workers take units this run is still sending.
      const auto beat = heartbeat_failed
                            ? std::min<std::chrono::milliseconds>(opt.lease / 3,
                                                                  std::chrono::milliseconds(500))
                            : std::chrono::milliseconds(opt.lease / 3);
      if (lease_mode && Clock::now() - last_heartbeat >= beat) {
        // Renew this run's leases; a failure is only logged: at worst the leases expire and
        // other workers redo those units (deduped by span ID, repeats counted).
        last_heartbeat = Clock::now();
        try {
          work_table->heartbeat(worker_progress());
          heartbeat_failed = false;
          if (!opt.quiet) {
            const WorkCounts c = work_table->counts();
            std::size_t live = 0;
            for (const auto& w : work_table->workers()) live += w.live ? 1 : 0;
            lease_note = fmt::format("  units {}/{} done, {} claimed, {} live workers", c.done,
                                     c.done + c.pending + c.claimed + c.expired, c.claimed, live);
          }
        } catch (const std::exception& e) {
          if (!heartbeat_failed) log::warn(std::string("work table heartbeat: ") + e.what());
          heartbeat_failed = true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (received_signal() != 0 && !runner.stop_requested()) {
        if (!opt.quiet)
          std::fprintf(stderr, "chsync: signal %d: stopping, draining in-flight requests\n",
                       received_signal());
        runner.request_stop();
        work.close();
      }
      if (state_failure->failed.load() && !runner.stop_requested()) {
        log::error("the state cannot be written; stopping (nothing more is sent)");
        runner.request_stop();
      }
      if (runner.stop_requested()) {
        // Nothing new is sent after a stop: closing both queues also frees workers blocked on
        // a full result queue when the dispatcher itself ended early (an internal error).
        work.close();
        results.close();
      }
      const bool tty = progress_tty;
      const auto every = tty ? std::chrono::milliseconds(250) : opt.progress_interval;
      if (!opt.quiet && every.count() > 0 && Clock::now() - last_progress >= every) {
        last_progress = Clock::now();
        ProgressSnapshot ps;
        ps.files_total = files_to_read;
        ps.bytes_total = disk_bytes_to_read;
        ps.files_done = files_done.load();
        ps.bytes_done = disk_bytes_done.load();
        ps.bytes_read = bytes_read.load();
        for (auto& inst : instances) {
          auto st = inst->exporter->stats();
          ps.spans_sent += st.spans_delivered;
          ps.dead += st.spans_dead;
          for (auto& [k, v] : st.retries) ps.retries += v;
        }
        ps.elapsed_s = std::chrono::duration<double>(Clock::now() - t_start).count();
        if (tty) {
          std::string line = "\r\x1b[K" + render_progress(ps) + lease_note;
          std::fwrite(line.data(), 1, line.size(), stderr);
          std::fflush(stderr);
          progress_drawn = true;
        } else {
          log::info("progress: " + render_progress(ps) + lease_note);
        }
      }
    }
  });

  runner.join_all();
  bool drained = true;
  for (std::size_t ii = 0; ii < instances.size(); ++ii) {
    const bool ok = ii < sender_stopped.size() && sender_stopped[ii] >= 0
                        ? sender_stopped[ii] == 1
                        : instances[ii]->exporter->stop(opt.drain_timeout);
    drained = ok && drained;
  }
  for (auto& inst : instances) finalize_ready_bundles(*inst);  // never throws (see above)
  all_done = true;
  watcher.join();
  if (progress_drawn) std::fputs("\r\x1b[K", stderr);

  // Crash repeats from an earlier run are accounted for once everything it held was resent.
  bool any_fatal = false;
  for (auto& inst : instances) {
    if (inst->exporter->fatal()) any_fatal = true;
  }
  if (state && !opt.dry_run && !state_failure->failed.load()) {
    try {
      state->flush();
    } catch (const std::exception& e) {
      state_failure->fail(std::string("state: ") + e.what());
    }
  }
  if (lease_mode) {
    // Units still claimed here go back to pending; the worker row says how the run ended.
    const bool ok = !any_fatal && !state_failure->failed.load() && received_signal() == 0 &&
                    runner.first_error().empty();
    try {
      work_table->finish(worker_progress(), ok);
    } catch (const std::exception& e) {
      log::warn(std::string("work table: ") + e.what() +
                " (this run's leases expire by themselves)");
    }
  }

  // ---- report ----
  const double secs = std::chrono::duration<double>(Clock::now() - t_start).count();
  std::uint64_t spans_synced = 0, dead = 0, repeated = 0, failed = 0, requests = 0, rejected = 0;
  std::map<std::string, std::uint64_t> retries;
  std::uint64_t bytes_wire = 0, bytes_raw = 0;
  for (auto& inst : instances) {
    auto st = inst->exporter->stats();
    spans_synced += inst->spans_delivered;
    dead += inst->spans_dead;
    repeated += inst->spans_repeated;
    failed += inst->spans_failed;
    requests += st.requests;
    rejected += st.spans_partial_rejected;
    // Retries after an unknown outcome (a reset or timeout once the request was written) may
    // have reached the backend: they are possible repeats, counted like those of a crash.
    repeated += st.spans_maybe_repeated;
    bytes_wire += st.bytes_wire;
    bytes_raw += st.bytes_raw;
    for (auto& [k, v] : st.retries) retries[k] += v;
  }
  std::uint64_t bad_total = 0;
  for (auto& [k, v] : bad.by_kind) bad_total += v;
  const std::uint64_t file_error_count = file_errors.size() + disc.errors.size();

  int code = kExitOk;
  if (bad_total > 0 || dead > 0 || file_error_count > 0 || rejected > 0) code = kExitPartial;
  if (rejected > 0)
    log::warn(fmt::format("the backend accepted requests but reported {} spans rejected "
                          "(OTLP partialSuccess); they are not resent", rejected));
  if (state_failure->failed.load()) {
    std::lock_guard lock(state_failure->mu);
    log::error(state_failure->message +
               " — spans whose outcome was not recorded are sent again by the next run");
    code = kExitPartial;
  }
  if (any_fatal) code = kExitBackend;
  const int sig = received_signal();
  if (sig == SIGINT) code = kExitSigint;
  if (sig == SIGTERM) code = kExitSigterm;
  const std::string first_error = runner.first_error();
  if (!first_error.empty()) {
    std::fprintf(stderr, "chsync: internal error: %s\n", first_error.c_str());
    if (code == kExitOk) code = kExitPartial;
  }

  if (!opt.report_path.empty()) {
    std::string j = "{\"schema\":\"chsync.report/1\"";
    auto kv = [&](const char* k, std::uint64_t v) { j += fmt::format(",\"{}\":{}", k, v); };
    kv("files_scanned", disc.files);
    kv("files_updated", files_updated);
    kv("files_skipped", files_skipped);
    if (opt.shard_count > 1) {
      j += fmt::format(",\"shard\":\"{}/{}\"", opt.shard_index, opt.shard_count);
      kv("bundles_other_shards", bundles_other_shards);
      kv("files_other_shards", files_other_shards);
    }
    if (lease_mode) {
      const std::string& rid = work_table->run_id();
      j += ",\"worker_id\":";
      append_json_string(j, rid.substr(0, rid.rfind('#')));
      j += ",\"run_id\":";
      append_json_string(j, rid);
      kv("units_claimed", units_claimed);
      kv("units_done", units_done);
      kv("units_taken_over", units_taken_over);
    }
    kv("spans_synced", spans_synced);
    kv("spans_repeated", repeated);
    kv("spans_failed", failed);
    kv("spans_rejected", rejected);
    kv("turns_held", total_stats.turns_held);
    kv("requests", requests);
    j += ",\"retries\":{";
    bool first = true;
    std::uint64_t rsum = 0;
    for (auto& [k, v] : retries) {
      j += fmt::format("{}\"{}\":{}", first ? "" : ",", k, v);
      first = false;
      rsum += v;
    }
    j += fmt::format("{}\"total\":{}}}", first ? "" : ",", rsum);
    kv("dead_letters", dead);
    if (redactor) {
      j += ",\"redactions\":{";
      for (auto& [k, v] : redactor->counts()) j += fmt::format("\"{}\":{},", k, v);
      j += fmt::format("\"total\":{}}}", redactor->total());
    }
    j += ",\"bad_lines\":{";
    first = true;
    for (auto& [k, v] : bad.by_kind) {
      j += fmt::format("{}\"{}\":{}", first ? "" : ",", k, v);
      first = false;
    }
    j += fmt::format("{}\"total\":{}}}", first ? "" : ",", bad_total);
    j += ",\"errors\":[";
    first = true;
    for (const auto& e : disc.errors) {
      if (!first) j += ",";
      first = false;
      std::string s = e.path + ": " + e.kind + ": " + e.message;
      append_json_string(j, s);
    }
    for (const auto& e : file_errors) {
      if (!first) j += ",";
      first = false;
      append_json_string(j, e);
    }
    j += "]";
    kv("bytes_read", bytes_read.load());
    kv("bytes_sent", bytes_wire);
    kv("bytes_encoded", bytes_raw);
    kv("duration_ms", static_cast<std::uint64_t>(secs * 1000));
    j += fmt::format(",\"spans_mapped\":{},\"generations\":{},\"tool_spans\":{},\"agents\":{},"
                     "\"agents_unlinked\":{},\"events\":{},\"turns\":{}",
                     total_stats.spans, total_stats.generations, total_stats.tool_spans,
                     total_stats.agents, total_stats.agents_unlinked, total_stats.events,
                     total_stats.turns);
    j += fmt::format(",\"stages\":{{\"work_queue\":{{\"items\":{},\"bytes\":{},\"blocked_ms\":{}}},"
                     "\"result_queue\":{{\"items\":{},\"bytes\":{},\"blocked_ms\":{}}}",
                     work.counters().pushed_items.load(), work.counters().pushed_bytes.load(),
                     work.counters().push_blocked_ns.load() / 1000000,
                     results.counters().pushed_items.load(), results.counters().pushed_bytes.load(),
                     results.counters().push_blocked_ns.load() / 1000000);
    for (auto& inst : instances) {
      auto st = inst->exporter->stats();
      j += fmt::format(",\"sender.{}\":{{\"items\":{},\"bytes\":{},\"blocked_ms\":{}}}",
                       inst->spec.instance, inst->spans_delivered, st.bytes_wire,
                       st.time_blocked_ms);
    }
    j += "}";
    j += fmt::format(",\"throughput\":{{\"mb_per_s\":{:.2f},\"spans_per_s\":{:.1f}}}",
                     static_cast<double>(bytes_read.load()) / 1e6 / std::max(secs, 1e-6),
                     static_cast<double>(spans_synced) / std::max(secs, 1e-6));
    j += fmt::format(",\"peak_rss_kb\":{},\"cpu_seconds\":{:.3f},\"exit_code\":{},\"dry_run\":{}}}\n",
                     peak_rss_kb(), cpu_seconds(), code, opt.dry_run ? "true" : "false");
    // Whole or not at all (temp + rename) for regular files; /dev/stdout and the like directly.
    std::error_code ec;
    if (std::filesystem::exists(opt.report_path, ec) &&
        !std::filesystem::is_regular_file(opt.report_path, ec)) {
      std::ofstream(opt.report_path) << j;
    } else {
      const std::string tmp = opt.report_path + ".tmp";
      { std::ofstream(tmp) << j; }
      if (std::rename(tmp.c_str(), opt.report_path.c_str()) != 0) std::remove(tmp.c_str());
    }
  }

  run_finished = true;
  if (!opt.metrics_file.empty()) {
    const std::vector<MetricSample> last = {
        {"chsync_last_run_exit_code", "", static_cast<double>(code)},
        {"chsync_last_run_timestamp_seconds", "", static_cast<double>(now_ms()) / 1000.0},
        {"chsync_last_run_duration_seconds", "", secs}};
    std::string err;
    if (!write_metrics_textfile(opt.metrics_file, metrics.render(last), err))
      std::fprintf(stderr, "chsync: --metrics-file: %s\n", err.c_str());
  }

  // Only after the report is on disk: a kill before this point leaves the records, and the
  // next run counts those repeats again (over-counting is safe, losing a count is not).
  if (state && !opt.dry_run) {
    for (auto& inst : instances) {
      if (inst->in_flight_before.empty()) continue;
      // Earlier records are accounted for (counted in spans_repeated) once their spans were
      // delivered; the others carry over to the next run in one record (written before the
      // old ones are removed, so a kill in between only over-counts).
      std::vector<std::uint64_t> carry;
      {
        std::lock_guard lock(inst->mu);
        for (auto k : inst->in_flight_before)
          if (!contains_sorted(inst->delivered, k) && !inst->recovered.count(k))
            carry.insert(carry.end(), inst->sends_before(k), k);
      }
      try {
        if (!carry.empty()) state->begin_request(inst->spec.instance, carry);
        state->clear_in_flight(inst->spec.instance);
      } catch (const std::exception& e) {
        log::error(std::string("state: ") + e.what());
      }
    }
    try {
      state->flush();
    } catch (const std::exception& e) {
      log::error(std::string("state: ") + e.what());
    }
  }

  if (!opt.quiet) {
    std::fprintf(stderr,
                 "chsync: %s%llu files scanned (%llu updated, %llu skipped), %llu spans %s, %llu "
                 "deduped, %llu held turns, %llu dead, %llu bad lines, %.1f MB in %.2f s "
                 "(%.1f MB/s)\n",
                 opt.dry_run ? "dry run: " : "", static_cast<unsigned long long>(disc.files),
                 static_cast<unsigned long long>(files_updated),
                 static_cast<unsigned long long>(files_skipped),
                 static_cast<unsigned long long>(spans_synced),
                 opt.dry_run ? "would be sent" : "sent",
                 static_cast<unsigned long long>(instances.empty() ? 0 : instances[0]->spans_deduped),
                 static_cast<unsigned long long>(total_stats.turns_held),
                 static_cast<unsigned long long>(dead), static_cast<unsigned long long>(bad_total),
                 static_cast<double>(bytes_read.load()) / 1e6, secs,
                 static_cast<double>(bytes_read.load()) / 1e6 / std::max(secs, 1e-6));
    for (auto& inst : instances)
      if (inst->exporter->fatal())
        std::fprintf(stderr, "chsync: backend %s failed: %s\n", inst->spec.instance.c_str(),
                     inst->exporter->fatal_reason().c_str());
  }
  (void)drained;
  return code;
}

}  // namespace chsync
