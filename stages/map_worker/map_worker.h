// Map worker stage: reads, parses and maps one bundle at a time.
//
// Consumes: WorkItems from the work queue (a bundle index; archive members' bytes or spool files).
// Produces: one BundleResult per bundle on the result queue: the bundle's spans in emission
// order, per-file read outcomes (lines, end offset, truncated tail, read error), map counts, and
// where the state is asked per bundle (lease mode, or a delivered set over its memory share) the
// state's per-instance view of the spans (BundleCheck), and the spans encoded ahead for each
// exporter that allows it (Exporter::make_encoder): encoding scales with --workers instead of
// running on the dispatcher thread.
// Owns: each bundle's BundleMapper while it maps; a per-thread simdjson parser for last lines.
// Thread: run() on each of --workers threads (start() spawns them); every worker shares the
// queues.
// Stop: once a stop was asked (stop(), or `stop_requested()` of the run) a worker drains the
// work queue without mapping (spool files left unread are removed with the feeder's SpoolDir);
// run() returns when the work queue is closed (by the feeder) and empty, or the result queue is
// closed. The last worker to return closes the result queue. stop(deadline) asks, closes the
// result queue (a push blocked on a full queue returns; the dispatcher drains what is queued),
// and waits for every worker to return. A bundle mapped but not queued is dropped: its files
// are not marked complete, so the next run reads them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "pipeline/bounded_queue.h"
#include "pipeline/bundle.h"
#include "pipeline/runtime.h"
#include "stages/map_worker/input_problems.h"
#include "stages/map_worker/work.h"
#include "stages/mapper/mapper.h"
#include "stages/reader/reader.h"
#include "stages/reader/spool.h"

namespace chsync {

class MapWorkers {
 public:
  // Asks the state about a bundle's span keys (sorted, unique): lease mode, or a delivered set
  // too large to load whole. Returns one BundleCheck per instance (empty when not asked).
  using CheckFn = std::function<std::vector<BundleCheck>(std::size_t bundle,
                                                         const std::vector<std::uint64_t>& keys)>;
  struct Wiring {
    const std::vector<Bundle>* bundles = nullptr;
    MapOptions map;
    ReaderOptions reader;
    bool quiet = false;
    BoundedQueue<WorkItem>* work = nullptr;
    BoundedQueue<BundleResult>* results = nullptr;
    InputProblems* problems = nullptr;
    std::function<bool()> stop_requested;
    CheckFn check;              // empty: no shared state to ask
    SpoolDir* spool = nullptr;  // the feeder's: spool files read here are removed through it
    std::size_t workers = 1;
    // Encoding ahead, one entry per backend instance in the dispatcher's route order: the
    // exporter whose make_encoder() each worker uses, and the bundles to encode for it (those
    // with no delivery history: a bundle whose spans are mostly delivered would be encoded for
    // nothing, so the dispatcher encodes the few it sends). Null exporter: none.
    struct EncodeAhead {
      const Exporter* exporter = nullptr;
      const std::vector<bool>* bundles = nullptr;
    };
    std::vector<EncodeAhead> encode;
  };
  explicit MapWorkers(Wiring wiring) : w_(std::move(wiring)), left_(w_.workers) {}
  ~MapWorkers() = default;
  MapWorkers(const MapWorkers&) = delete;
  MapWorkers& operator=(const MapWorkers&) = delete;

  // Starts `workers` threads on `runner`, each running run().
  void start(StageRunner& runner);
  // The body of one worker thread (call it from `workers` threads).
  void run();
  // Asks the workers to stop and waits for them (see Stop above).
  bool stop(Deadline deadline) noexcept;
  // Maps one bundle (public for tests and benchmarks: no queues involved).
  BundleResult map_bundle(WorkItem& item);

  std::uint64_t bytes_read() const noexcept { return bytes_read_.load(std::memory_order_relaxed); }

 private:
  ReadResult read_file(WorkItem& item, std::size_t fi, const LineFn& on_line,
                       const TooLongFn& on_too_long);
  // Fills res.encoded with this worker's encoders (one per instance, made on first use).
  void encode_ahead(BundleResult& res, std::vector<std::unique_ptr<SpanBytesEncoder>>& encoders);

  bool stopping() const { return stop_.load() || (w_.stop_requested && w_.stop_requested()); }

  Wiring w_;
  std::atomic<std::size_t> left_;
  std::atomic<std::uint64_t> bytes_read_{0};
  std::atomic<bool> stop_{false};
  StageThreads threads_;
};

}  // namespace chsync
