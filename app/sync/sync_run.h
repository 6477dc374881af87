// SyncRun: one `chsync sync`, wired from the stages and run to its exit code. run_sync() is a
// thin wrapper; tests and benchmarks may build a SyncRun directly.
//
// Start-up (constructor; throws ConfigError / StateError before any work: exit 2 or 4): the
// state is opened, backend instances built, inputs discovered (and sharded), and per instance
// the bundles it needs and its dedupe snapshot are loaded.
// run(): starts the threads (stages/*.h say what each consumes, produces and owns)
//
//   feeder ──► work queue ──► map workers ×N ──► result queue ──► dispatcher ──► exporters
//                                                                  (dedupe,       │ acks
//   watcher: signals, state failure, heartbeat, progress            order, route) ▼
//                                                                          delivery ledgers ─►
//                                                                          state
//
// waits for them, drains the exporters (by one deadline), finishes the state, writes the report
// and returns the exit code (design Contracts).
// Owns: everything above. Lifetimes do not depend on member order: the destructor stops and
// joins every thread, and stops the exporters, before any member is destroyed.
// Stop: a signal or a state failure (seen by the watcher), or a fatal exporter (seen by the
// dispatcher), requests a stop: the watcher asks the stages (ask_stages_to_stop: the feeder and
// the map workers close their output queues), nothing new is sent. The run has one drain
// deadline (drain_), now + --drain-timeout taken when the run begins to end: at the stop
// request, else at the joins. No exporter's drain ends after it (a sender's drain that started
// earlier ends earlier); once the threads returned, stop_stages() stops every stage by it:
// in-flight requests drain, the ledgers record what finished, the watcher ends
// (docs/architecture.md).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/dead_letters/dead_letters.h"
#include "app/metrics/metrics.h"
#include "app/sync/sync.h"
#include "app/sync/watcher.h"
#include "pipeline/bounded_queue.h"
#include "pipeline/memory_budget.h"
#include "pipeline/runtime.h"
#include "stages/dedupe/dedupe.h"
#include "stages/delivery/delivery_ledger.h"
#include "stages/dispatcher/dispatcher.h"
#include "stages/feeder/feeder.h"
#include "stages/feeder/lease_units.h"
#include "stages/map_worker/input_problems.h"
#include "stages/map_worker/map_worker.h"
#include "stages/redact/redact.h"
#include "stages/state/state_store.h"

namespace chsync {

class SyncRun {
 public:
  SyncRun(const SyncOptions& options, const ExporterFactory& factory);
  ~SyncRun();
  SyncRun(const SyncRun&) = delete;
  SyncRun& operator=(const SyncRun&) = delete;

  int run();

 private:
  // One backend instance: its exporter, what it still needs, its dedupe and its ledger.
  struct Instance {
    BackendSpec spec;
    std::unique_ptr<Exporter> exporter;
    bool synchronous = false;  // console/file/null: acked inside send()
    std::vector<bool> needs;   // per bundle
    // Per bundle: needed and without delivery history (no file has a state row), so its spans
    // are encoded ahead by the map workers when the exporter allows it (make_encoder).
    std::vector<bool> encode_ahead;
    // The delivered set is over its share of --max-memory: each bundle's keys are looked up in
    // the state by the map worker instead (StateStore::settled_among, into BundleResult::checks).
    bool lookup_settled = false;
    // Of the earlier in-flight keys, those delivered or dead in the state (sorted).
    std::vector<std::uint64_t> settled_in_flight;
    SpanDedupe dedupe;
    std::unique_ptr<DeliveryLedger> ledger;
    // The exporter goes first: its threads may still call the ledger until it is destroyed.
    ~Instance() { exporter.reset(); }
    Instance() = default;
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;
  };
  // What the report and the summary line say, summed over the instances.
  struct Totals {
    std::uint64_t spans_synced = 0, dead = 0, repeated = 0, failed = 0, requests = 0, rejected = 0;
    std::uint64_t fenced = 0;  // lease mode: not sent because the unit changed hands
    std::map<std::string, std::uint64_t> retries;
    std::uint64_t bytes_wire = 0, bytes_raw = 0, bytes_read = 0;
    std::map<std::string, std::uint64_t> bad_lines;
    std::uint64_t bad_total = 0;
    std::vector<std::string> file_errors;
    std::vector<std::string> backend_errors;  // per backend with spans_failed > 0
    MapStats map;
  };

  // Start-up (sync_setup.cpp).
  void open_state();
  void build_instances(const ExporterFactory& factory);
  void notice_values_not_applied() const;
  void discover_inputs();
  void plan_needs();
  void load_snapshots();
  // Wiring and running (sync_run.cpp).
  void wire_stages();
  void start_metrics();
  void start_threads();
  void ask_stages_to_stop() noexcept;
  void stop_stages(Deadline drain_deadline) noexcept;
  void finish_state(bool any_fatal);
  std::vector<BundleCheck> check_bundle(std::size_t bundle, const std::vector<std::uint64_t>& keys);
  ProgressSnapshot progress_snapshot() const;
  WorkerProgress worker_progress() const;
  void sample_metrics(std::vector<MetricSample>& out) const;
  // End of run (sync_report.cpp).
  Totals totals() const;
  int exit_code(const Totals& t, bool any_fatal) const;
  void write_report(const Totals& t, int code, double secs) const;
  void write_metrics_file(int code, double secs) const;
  void carry_over_in_flight();
  void print_summary(const Totals& t, double secs) const;
  void shutdown() noexcept;

  const SyncOptions& opt_;
  DrainDeadline drain_{opt_.drain_timeout};  // the run's one drain deadline
  const std::chrono::steady_clock::time_point t_start_;
  const double run_start_s_;
  std::unique_ptr<Redactor> redactor_;  // shared read-only by the map workers; counts are atomic
  std::unique_ptr<StateStore> state_;
  WorkTable* work_table_ = nullptr;  // lease mode: the shared state's work table
  std::vector<std::unique_ptr<Instance>> instances_;
  bool ordered_output_ = false;
  DiscoverResult disc_;
  std::uint64_t bundles_other_shards_ = 0, files_other_shards_ = 0;
  std::uint64_t files_skipped_ = 0, files_updated_ = 0;
  std::uint64_t files_to_read_ = 0, disk_bytes_to_read_ = 0;
  std::vector<bool> any_need_;
  std::unique_ptr<DeadLetterWriter> dead_letters_;
  StateFailure state_failure_;
  std::optional<MemoryBudget> budget_;
  std::unique_ptr<InputProblems> problems_;
  std::unique_ptr<BundleOutcomes> outcomes_;
  std::unique_ptr<BoundedQueue<WorkItem>> work_;
  std::unique_ptr<BoundedQueue<BundleResult>> results_;
  std::unique_ptr<LeaseUnits> lease_;
  std::unique_ptr<Feeder> feeder_;
  std::unique_ptr<MapWorkers> workers_;
  std::unique_ptr<Dispatcher> dispatcher_;
  MetricsRegistry metrics_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::atomic<bool> run_finished_{false};  // after the joins: synchronous exporters' stats are safe
  StageRunner runner_;
  std::unique_ptr<Watcher> watcher_;
};

}  // namespace chsync
