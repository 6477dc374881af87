// Lease units: the feeder's side of work sharing through a shared state (PostgreSQL; see
// stages/state/work_table.h and docs/scaleout.md).
//
// A unit is a plain bundle or a whole archive. It is complete once every bundle fed for it has
// been finalized by every instance that needs it; then it is marked done in the work table (or
// released, when a bundle failed: another worker or run retries it).
// Consumes: this run's bundles and which of them any instance needs; claims from the work table.
// Produces: calls of `feed` for each claimed unit (the feeder pushes its bundles), complete /
// release calls to the work table, and the counts the heartbeat and the report show.
// Owns: the unit table of this run and the count of bundles fed but not yet dispatched (which
// bounds how far ahead of the mappers it claims).
// Thread: claim_and_feed() on the feeder thread; on_push() there too; bundle_dispatched() on the
// dispatcher thread; bundle_finalized() wherever a ledger finalizes (dispatcher, sender threads).
// One mutex guards the table; the work table is called outside it.
// Stop: claim_and_feed() returns when `stop_requested()` turns true, when `feed` reports the
// work queue closed, when nothing is left for this run, or when the database stayed unreachable
// for options.outage_tolerance (then StateFailure says so).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/exporter.h"
#include "pipeline/bundle.h"
#include "pipeline/log.h"
#include "stages/state/work_table.h"

namespace chsync {

class StateFailure;

struct LeaseFeedOptions {
  std::size_t workers = 1;
  std::chrono::milliseconds lease{60000};
  bool verbose = false;
  // Claims failing in a row for longer than this end the run (--state-outage-tolerance).
  std::chrono::milliseconds outage_tolerance{10000};
};

class LeaseUnits {
 public:
  // Registers one unit per plain bundle and per archive with the work table (throws on a
  // database error: start-up). Work-table trouble, take-overs and waits are logged to `logger`.
  LeaseUnits(WorkTable& table, const std::vector<Bundle>& bundles,
             const std::vector<bool>& any_need, log::Logger logger);
  ~LeaseUnits() = default;
  LeaseUnits(const LeaseUnits&) = delete;
  LeaseUnits& operator=(const LeaseUnits&) = delete;

  struct Unit {
    std::string key;
    std::string archive;               // non-empty: archive unit
    std::vector<std::size_t> bundles;  // needed bundles, in order
    std::uint64_t left = 0;            // (bundle, instance) finalizations still due
    bool feeding = false;
    bool failed = false;
    bool finished = false;
    bool active = false;     // claimed in this run and not finished: never fed twice at once
    bool lost = false;       // a send was refused by the fence: another run holds it now
    std::int64_t fence = 0;  // token of this run's current claim
  };
  // Feeds one claimed unit; false once the work queue is closed.
  using FeedFn = std::function<bool(const Unit&)>;
  void claim_and_feed(const LeaseFeedOptions& options, const FeedFn& feed,
                      const std::function<bool()>& stop_requested, StateFailure& failure);

  // A bundle of a unit enters the work queue; `instances` instances will finalize it.
  void on_push(std::size_t bundle, std::uint64_t instances);
  void bundle_dispatched();
  // fenced: some of its spans were refused by the fence (the unit changed hands).
  void bundle_finalized(std::size_t seq, bool failed, bool fenced);
  // The units and fence tokens the refs' bundles were fed under (the fenced in-flight record).
  std::vector<UnitFence> fences_of(const std::vector<SpanRef>& refs) const;

  // While true the feeder waits for claims: the dispatcher flushes partial batches.
  bool feeder_idle() const noexcept { return feeder_idle_.load(); }
  struct Counts {
    std::uint64_t claimed = 0, done = 0, taken_over = 0, lost = 0;
  };
  Counts counts() const;

 private:
  void finish_if_done(std::size_t u, std::unique_lock<std::mutex>& lock);
  void log_wait(const LeaseFeedOptions& options, const char* why, const WorkCounts* c);
  bool start_unit(const ClaimedUnit& cu, const LeaseFeedOptions& options);

  WorkTable& table_;
  const log::Logger log_;
  std::vector<Unit> units_;
  std::vector<std::size_t> unit_of_;  // per bundle; npos when not in a unit
  std::unordered_map<std::string, std::size_t> unit_by_key_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t outstanding_ = 0;          // claimed here, not yet complete
  std::size_t bundles_in_pipeline_ = 0;  // fed, not yet dispatched (bounds what is claimed)
  Counts counts_;
  std::atomic<bool> feeder_idle_{false};
  std::chrono::steady_clock::time_point last_wait_log_ = std::chrono::steady_clock::now();
};

}  // namespace chsync
