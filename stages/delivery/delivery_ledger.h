// Delivery ledger: per backend instance, turns per-span outcomes into state records and
// finished bundles.
//
// Consumes: the exporter's before-send calls and acks (Ack: delivered, dead or failed spans), and
// the dispatcher's notices (bundle dispatched with N spans, spans not sent, adopted records).
// Produces: state writes (in-flight records before a request leaves, delivered/dead keys, file
// rows of bundles whose every span has an outcome), dead letters, and a callback per finished
// (bundle, instance) pair (lease mode completes work units with it).
// Owns: the per-bundle pending counts, the span -> in-flight record map, the records of earlier
// runs recovered in this one, and the instance's delivery counters.
// Thread: before_send/on_ack on exporter threads; dispatched/mark_failed/finalize_ready on the
// dispatcher or the instance's sender thread. One mutex guards it all; state writes of an ack
// happen under it so that a record and the span -> record map never disagree.
// Errors: a state write that fails in an ack is never thrown into the exporter's thread: it is
// recorded in StateFailure (the run stops; the next run sends again what was not recorded).
// before_send rethrows, so the exporter keeps that request from leaving (backends/exporter.h).
// Stop: no thread of its own. stop(deadline), called once its exporter has stopped (every span
// has an outcome then: delivered, dead or failed), records what finished (finalize_ready) and
// returns true when no dispatched span is left without an outcome. The deadline is not needed
// (it does not wait); it is there so that every stage stops the same way.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "backends/exporter.h"
#include "pipeline/bundle.h"
#include "pipeline/runtime.h"
#include "stages/dedupe/dedupe.h"
#include "stages/map_worker/work.h"
#include "stages/state/state_store.h"

namespace chsync {

// The first state (or work table) failure of a run: it stops the run; the exit code says so
// (3 when the shared database stayed unreachable: StateError kUnavailable, else 1).
class StateFailure {
 public:
  void fail(std::string message);
  // prefix + e.what(); notes whether the state was unreachable.
  void fail(const char* prefix, const std::exception& e);
  bool failed() const noexcept { return failed_.load(); }
  bool unreachable() const noexcept { return unreachable_.load(); }
  std::string message() const;

 private:
  std::atomic<bool> failed_{false};
  std::atomic<bool> unreachable_{false};
  mutable std::mutex mu_;
  std::string message_;
};

// Per-bundle results the dispatcher records before it hands a bundle's spans to the instances
// (the ledger's mutex orders the write before any read); read when a bundle is finished.
struct BundleOutcomes {
  explicit BundleOutcomes(std::size_t bundles) : files(bundles), held_turns(bundles, 0) {}
  std::vector<std::vector<FileOutcome>> files;
  std::vector<std::uint64_t> held_turns;
};

struct DeliveryCounts {
  std::uint64_t delivered = 0, dead = 0, failed = 0, repeated = 0;
  std::uint64_t fenced = 0;  // lease mode: refused by the fence, never sent (not failed)
  std::string last_failure;  // reason of the last kFailed ack ("" when none)
};

class DeliveryLedger {
 public:
  using DeadLetterFn = std::function<void(const Ack&, const std::vector<std::uint64_t>& keys)>;
  // fenced: some spans were refused by the fence (the unit changed hands).
  using BundleFinalFn = std::function<void(std::size_t bundle, bool failed, bool fenced)>;
  // Lease mode: the units (and fence tokens) a request's spans were fed under.
  using FencesFn = std::function<std::vector<UnitFence>(const std::vector<SpanRef>&)>;
  struct Wiring {
    std::string instance;
    StateStore* state = nullptr;  // null: no state (or a dry run without one)
    bool dry_run = false;
    const std::vector<Bundle>* bundles = nullptr;
    const BundleOutcomes* outcomes = nullptr;
    const SpanDedupe* dedupe = nullptr;  // earlier runs' in-flight records
    StateFailure* failure = nullptr;
    DeadLetterFn dead_letter;       // may be empty
    BundleFinalFn on_bundle_final;  // may be empty
    FencesFn fences;                // lease mode: the in-flight record is fenced
  };
  explicit DeliveryLedger(Wiring wiring);
  ~DeliveryLedger() = default;
  DeliveryLedger(const DeliveryLedger&) = delete;
  DeliveryLedger& operator=(const DeliveryLedger&) = delete;

  // Sends of unknown outcome by an earlier run (killed before it could report) whose spans a later
  // run delivered: possible repeats, counted now. `settled`: of the earlier in-flight keys, those
  // delivered or dead in the state (sorted). Call once, before the threads start.
  void count_recovered_at_start(const std::vector<std::uint64_t>& settled);
  // Installs before_send (async exporters with a writable state) and the ack function.
  void attach(Exporter& exporter, bool synchronous);

  // Records the request in flight; false (lease mode) when a unit of it changed hands: the
  // request must not leave (docs/scaleout.md "Fencing").
  bool before_send(const std::vector<SpanRef>& refs);
  // Keys refused by the fence since the last call: the dedupe forgets them (a later claim of
  // their unit sends them). Dispatcher thread.
  std::vector<std::uint64_t> take_unsent();
  void on_ack(Ack&& ack) noexcept;

  // The dispatcher handed `spans` spans of `bundle` over (0: nothing left to send for it).
  void dispatched(std::uint64_t bundle, std::uint64_t spans);
  // Spans of `bundle` were not sent (stop or fatal exporter): the bundle is not complete.
  void mark_failed(std::uint64_t bundle);
  // Lease mode: the bundle owns an in-flight record adopted from a gone run.
  void adopt_request(std::uint64_t bundle, std::uint64_t request);
  void add_repeats(std::uint64_t n);
  // Records bundles whose every span has an outcome (rows, adopted records, unit callbacks).
  // Never throws: a failing write goes to StateFailure.
  void finalize_ready() noexcept;
  // End of run, after the exporter stopped (see Stop above).
  bool stop(Deadline deadline) noexcept;

  // End of run: keys of earlier in-flight records neither delivered before nor recovered in this
  // run, each repeated once per record (they carry over to the next run).
  std::vector<std::uint64_t> carry_over() const;
  DeliveryCounts counts() const;
  const std::string& instance() const noexcept { return w_.instance; }

 private:
  struct Pending {
    std::uint64_t outstanding = 0;
    bool dispatched = false;
    bool failed = false;
    bool fenced = false;
    std::uint64_t delivered = 0;
  };
  // Per in-flight state record: spans still without an outcome, and spans whose request failed
  // (outcome unknown: they may have reached the backend, so their record must survive).
  struct ReqInfo {
    std::uint64_t left = 0;
    std::vector<std::uint64_t> uncertain;
  };
  void record_outcome_locked(const Ack& ack, std::uint64_t req,
                             const std::vector<std::uint64_t>& ks, bool delivered, bool dead);
  void file_rows_locked(std::uint64_t seq, const Pending& p, std::vector<FileState>& rows) const;

  Wiring w_;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, Pending> pending_;  // by bundle seq
  std::vector<std::uint64_t> ready_;                    // bundles whose every span has an outcome
  std::unordered_map<std::uint64_t, std::uint64_t> request_of_;  // span key -> state request id
  std::unordered_map<std::uint64_t, ReqInfo> reqs_;
  // Lease mode: per bundle, the in-flight record adopted from a gone run (removed once the
  // bundle is delivered).
  std::unordered_map<std::uint64_t, std::uint64_t> adopted_request_;
  std::unordered_set<std::uint64_t> recovered_;  // earlier in-flight keys delivered/dead now
  std::unordered_set<std::uint64_t> fenced_;     // refused by the fence, until their ack
  std::vector<std::uint64_t> unsent_;            // refused keys for take_unsent()
  DeliveryCounts counts_;
};

}  // namespace chsync
