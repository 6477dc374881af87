// Feeder stage: turns this run's bundles into work items for the map workers.
//
// Consumes: the discovered bundles and which of them any backend instance needs; archives
// (read member by member through ArchiveReader); in lease mode, the units claimed by LeaseUnits.
// Produces: WorkItems on the work queue (bounded by bytes). Plain bundles go first (the workers
// read them), then archives member by member: members of a bundle may be scattered in any order,
// so a bundle is released when its last member has been read. A member waits in memory while the
// bytes held for incomplete bundles stay under the budget's archive_pending share; beyond that,
// or when it is large on its own, it is spooled to a private temp folder and the worker streams
// it back (measured against two passes in docs/inputs.md). Spool files on disk are capped by
// --max-spool: a member that cannot fit is left out (WorkItem::member_error, reported by its
// worker, exit 1); one that fits once the workers have read what was released waits for them.
// Owns: the spool folder (removed with its files when the Feeder is destroyed, which is after
// every map worker has been joined: the run owns both and joins first).
// Thread: run() on the feeder thread (start() spawns it).
// Stop: run() returns, closing the work queue, when everything is fed, when a stop was asked
// (stop(), or `stop_requested()` of the run; checked between bundles and archive members, and
// while waiting for spool room) or when the queue is closed under it. stop(deadline) asks and
// closes the work queue (a push blocked on a full queue returns; the workers drain what is
// queued without mapping it), then waits for run() to return; what is not fed is not read this
// run (its files are not marked complete: the next run reads them).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/bounded_queue.h"
#include "pipeline/bundle.h"
#include "pipeline/memory_budget.h"
#include "pipeline/runtime.h"
#include "stages/discover/discover.h"
#include "stages/feeder/lease_units.h"
#include "stages/map_worker/input_problems.h"
#include "stages/map_worker/work.h"
#include "stages/reader/spool.h"

namespace chsync {

class Feeder {
 public:
  struct Wiring {
    const std::vector<Bundle>* bundles = nullptr;
    const std::vector<bool>* any_need = nullptr;
    const std::vector<DiscoverError>* discover_errors = nullptr;  // damage already reported
    BoundedQueue<WorkItem>* work = nullptr;
    const MemoryBudget* budget = nullptr;
    InputProblems* problems = nullptr;
    std::function<bool()> stop_requested;
    // Lease mode only: the units, how they are claimed, and how many instances need a bundle.
    LeaseUnits* lease = nullptr;
    LeaseFeedOptions lease_options;
    std::function<std::uint64_t(std::size_t bundle)> instances_needing;
    StateFailure* failure = nullptr;
    // --max-spool: bytes of spool files on disk at once (0: no cap); a member that cannot fit
    // is left out with an error (see SpoolDir).
    std::uint64_t max_spool_bytes = 0;
    // Largest zstd decoder window of a .tar.zst (ArchiveReader; 0: libzstd's 128 MiB).
    std::uint64_t zstd_window_bytes = 0;
  };
  explicit Feeder(Wiring wiring) : w_(std::move(wiring)), spool_(w_.max_spool_bytes) {}
  ~Feeder() = default;
  Feeder(const Feeder&) = delete;
  Feeder& operator=(const Feeder&) = delete;

  // Starts run() on a thread of `runner`.
  void start(StageRunner& runner);
  void run();
  // Asks the feeder to stop and waits for run() to return (see Stop above).
  bool stop(Deadline deadline) noexcept;
  // The map workers remove the spool files they read through this (refunding --max-spool).
  SpoolDir& spool() noexcept { return spool_; }

 private:
  bool stopping() const { return stop_.load() || (w_.stop_requested && w_.stop_requested()); }
  bool push(WorkItem&& item, std::uint64_t bytes);
  void feed_all();
  // Reads one archive front to back and releases its bundles (list: needed ones, in order).
  // Returns false once the work queue is closed (stop).
  bool feed_archive(const std::string& path, const std::vector<std::size_t>& list);

  Wiring w_;
  SpoolDir spool_;
  std::atomic<bool> stop_{false};
  StageThreads threads_;
};

}  // namespace chsync
