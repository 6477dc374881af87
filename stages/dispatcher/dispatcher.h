// Dispatcher stage: takes mapped bundles, orders them where a backend needs it, filters what each
// backend instance already has (SpanDedupe), and routes the rest to the instances' exporters.
//
// Consumes: BundleResults from the result queue. Produces: Exporter::send() calls per instance
// (spans in order), DeliveryLedger notices (bundle dispatched with N spans, adopted records),
// per-bundle outcomes for the ledgers, run totals (MapStats) and progress counters.
// Ordering: console and file output are ordered by bundle so the bytes are the same for any
// --workers. The reorder buffer is bounded by the budget's `reorder` share: past it the smallest
// waiting bundle goes out even though an earlier one is still being mapped. With leases this
// process sees only the bundles it claims, so output is never reordered then.
// Spans a map worker encoded ahead go to Exporter::send_encoded with the bytes of the admitted
// ones (the rest are dropped unsent); others to send(), which encodes.
// Routing: one instance is called directly on the dispatcher thread. Several instances each get
// a bounded queue (their part of the `send_queues` share) and a sender thread, so a slow or
// failing backend holds back only its own queue.
// Owns: the reorder buffer, the send queues, the per-bundle outcome table; not the exporters.
// Thread: run() on the dispatcher thread; one sender thread per instance when there are several
// (start() spawns them all).
// Stop: after a stop (stop(), or `stop_requested()` of the run) or a fatal exporter nothing new
// is sent (spans count as not sent, their bundles stay incomplete); run() returns when the result
// queue is closed (by the map workers, at their end or their stop) and drained, then closes the
// send queues. No drain ends past the run's one deadline (DrainDeadline, pipeline/runtime.h): a
// sender whose queue is empty stops its exporter at once (its partial batch goes out, its
// requests drain without waiting for slower backends) by --drain-timeout from then, or by the
// run's deadline when a stop has fixed it and it is earlier. stop(deadline) asks, waits for the
// dispatcher and sender threads, then stops the exporters that have no sender of their own
// (in-flight requests get until the deadline; spans without an outcome come back as failed) and
// stops the routes' ledgers (which record what finished). True when every thread returned and
// every exporter drained in time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/exporter.h"
#include "pipeline/bounded_queue.h"
#include "pipeline/bundle.h"
#include "pipeline/memory_budget.h"
#include "pipeline/runtime.h"
#include "stages/dedupe/dedupe.h"
#include "stages/delivery/delivery_ledger.h"
#include "stages/feeder/lease_units.h"
#include "stages/map_worker/work.h"

namespace chsync {

class Dispatcher {
 public:
  // One backend instance as the dispatcher sees it (owned by the run).
  struct Route {
    std::string name;
    Exporter* exporter = nullptr;
    SpanDedupe* dedupe = nullptr;
    DeliveryLedger* ledger = nullptr;
    const std::vector<bool>* needs = nullptr;  // per bundle
  };
  struct Wiring {
    const std::vector<Bundle>* bundles = nullptr;
    const std::vector<bool>* any_need = nullptr;
    std::vector<Route> routes;
    BoundedQueue<BundleResult>* results = nullptr;
    BundleOutcomes* outcomes = nullptr;
    const MemoryBudget* budget = nullptr;
    bool ordered = false;         // reorder by bundle (console/file output)
    LeaseUnits* lease = nullptr;  // lease mode
    // The run's one drain deadline (required with several routes: the senders' drains end by
    // it).
    DrainDeadline* drain = nullptr;
    std::function<bool()> stop_requested;
    std::function<void()> request_stop;
  };
  explicit Dispatcher(Wiring wiring);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts the dispatcher thread, and one sender thread per route when there are several.
  void start(StageRunner& runner);
  // Several routes: starts one sender thread each on `runner` (call before run(); start() does).
  void start_senders(StageRunner& runner);
  void run();
  // Asks the dispatcher to stop and, once its threads returned, stops the exporters and the
  // ledgers by `deadline` (see Stop above). A deadline already passed only asks.
  bool stop(Deadline deadline) noexcept;

  MapStats totals() const;  // after the threads were joined
  std::uint64_t files_done() const noexcept { return files_done_.load(); }
  std::uint64_t disk_bytes_done() const noexcept { return disk_bytes_done_.load(); }

 private:
  struct SendItem {
    std::size_t bundle = 0;
    std::vector<Span> spans;
    std::uint64_t repeats = 0;
    bool flush = false;  // input paused: send the partial batch, record finished bundles
    // Encoded ahead: one view per span into `hold` (empty: the exporter encodes).
    std::shared_ptr<const EncodedSpans> hold;
    std::vector<std::string_view> encoded;
  };
  void record(BundleResult& r);
  void dispatch(BundleResult& r);
  void send_to(const Route& route, std::size_t bundle, std::vector<Span>&& out,
               const std::vector<std::string_view>& encoded, std::uint64_t repeats);
  void run_sender(std::size_t ii);
  void idle_flush();
  void run_ordered();
  bool stopping() const { return stop_.load() || (w_.stop_requested && w_.stop_requested()); }

  Wiring w_;
  std::atomic<bool> stop_{false};
  StageThreads threads_;
  std::vector<std::unique_ptr<BoundedQueue<SendItem>>> send_queues_;
  // Per sender: -1 not stopped yet, else the result of its exporter's stop().
  std::vector<int> sender_stopped_;  // written by each sender, read after the joins
  std::atomic<bool> exporter_fatal_{false};
  MapStats totals_;
  std::atomic<std::uint64_t> files_done_{0}, disk_bytes_done_{0};
};

}  // namespace chsync
