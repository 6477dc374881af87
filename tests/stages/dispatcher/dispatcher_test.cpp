// Dispatcher (stages/dispatcher): ordering, dedupe and routing of mapped bundles, driven through
// its result queue with a recording exporter that acknowledges every span as it is sent.
#include "stages/dispatcher/dispatcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace chsync {
namespace {

constexpr std::size_t kBundles = 4;

// Synchronous exporter: send() records (bundle, key) and acknowledges at once. fail_at: the
// send() call (0-based) that reports the exporter fatal.
class RecordingExporter final : public Exporter {
 public:
  std::string_view instance() const noexcept override { return "rec"; }
  bool send(std::vector<Span>&& spans) override {
    if (calls_++ == fail_at) {
      fatal_ = true;
      return false;
    }
    Ack a;
    for (const Span& s : spans) {
      sent.emplace_back(s.bundle_seq, s.span_key());
      a.spans.push_back(SpanRef{s.span_key(), s.bundle_seq});
    }
    if (ack_) ack_(std::move(a));
    return true;
  }
  bool stop(std::chrono::milliseconds drain) noexcept override {
    stops.push_back(drain);
    return true;
  }
  bool fatal() const noexcept override { return fatal_; }
  std::string fatal_reason() const override { return fatal_ ? "test" : ""; }
  ExporterStats stats() const override { return {}; }

  std::vector<std::pair<std::uint64_t, std::uint64_t>> sent;  // (bundle, span key)
  std::vector<std::chrono::milliseconds> stops;               // stop() calls, with their drain
  int fail_at = -1;

 private:
  int calls_ = 0;
  bool fatal_ = false;
};

// Bundle b's spans: keys 100*b + 1 .. 100*b + n.
BundleResult result(std::size_t b, int n) {
  BundleResult r;
  r.bundle_index = b;
  for (int i = 1; i <= n; ++i) {
    Span s;
    s.span_id = span_id_from_key(100 * b + static_cast<std::uint64_t>(i));
    s.bundle_seq = b;
    r.spans.push_back(std::move(s));
  }
  return r;
}

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : bundles_(kBundles), outcomes_(kBundles), needs_(kBundles, true) {
    for (std::size_t b = 0; b < kBundles; ++b) bundles_[b].seq = b;
    DeliveryLedger::Wiring lw;
    lw.instance = "rec";
    lw.bundles = &bundles_;
    lw.outcomes = &outcomes_;
    lw.dedupe = &dedupe_;
    lw.failure = &failure_;
    lw.on_bundle_final = [this](std::size_t b, bool failed, bool) {
      finals_.emplace_back(b, failed);
    };
    ledger_ = std::make_unique<DeliveryLedger>(std::move(lw));
    ledger_->attach(exporter_, /*synchronous=*/true);
  }

  Dispatcher::Wiring wiring(bool ordered) {
    Dispatcher::Wiring w;
    w.bundles = &bundles_;
    w.any_need = &needs_;
    w.routes = {Dispatcher::Route{"rec", &exporter_, &dedupe_, ledger_.get(), &needs_}};
    w.results = &results_;
    w.outcomes = &outcomes_;
    w.budget = &budget_;
    w.ordered = ordered;
    w.drain = &drain_;
    w.stop_requested = [this] { return stop_.load(); };
    w.request_stop = [this] { stop_ = true; };
    return w;
  }
  void run(bool ordered, const std::vector<BundleResult>& in) {
    Dispatcher d(wiring(ordered));
    for (const auto& r : in) ASSERT_TRUE(results_.push(r, result_bytes(r)));
    results_.close();
    d.run();
    EXPECT_TRUE(d.stop(std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
  std::vector<std::uint64_t> bundle_order() const {
    std::vector<std::uint64_t> order;
    for (auto [b, k] : exporter_.sent)
      if (order.empty() || order.back() != b) order.push_back(b);
    return order;
  }

  std::vector<Bundle> bundles_;
  BundleOutcomes outcomes_;
  std::vector<bool> needs_;
  SpanDedupe dedupe_;
  StateFailure failure_;
  RecordingExporter exporter_;
  std::unique_ptr<DeliveryLedger> ledger_;
  MemoryBudget budget_{64u << 20, true, 1};
  BoundedQueue<BundleResult> results_{64u << 20};
  std::atomic<bool> stop_{false};
  DrainDeadline drain_{std::chrono::seconds(30)};
  std::vector<std::pair<std::size_t, bool>> finals_;
};

TEST_F(DispatcherTest, OrderedOutputFollowsBundleOrderWhateverTheArrival) {
  run(/*ordered=*/true, {result(2, 1), result(0, 2), result(3, 1), result(1, 3)});
  EXPECT_EQ(bundle_order(), (std::vector<std::uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(exporter_.sent.size(), 7u);
  EXPECT_EQ(finals_.size(), kBundles);
  for (auto [b, failed] : finals_) EXPECT_FALSE(failed) << b;
}

TEST_F(DispatcherTest, UnorderedOutputGoesAsBundlesArrive) {
  run(/*ordered=*/false, {result(2, 1), result(0, 1), result(3, 1), result(1, 1)});
  EXPECT_EQ(bundle_order(), (std::vector<std::uint64_t>{2, 0, 3, 1}));
}

TEST_F(DispatcherTest, SpansDeliveredBeforeOrRepeatedAreNotSent) {
  dedupe_.set_delivered({102});  // delivered by an earlier run
  BundleResult twice = result(2, 1);
  twice.spans.push_back(twice.spans.front());  // the same span id twice in one run
  run(/*ordered=*/false, {result(1, 3), twice});
  std::vector<std::uint64_t> keys;
  for (auto [b, k] : exporter_.sent) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::uint64_t>{101, 103, 201}));
  EXPECT_EQ(dedupe_.deduped(), 2u);
}

TEST_F(DispatcherTest, BundlesTheInstanceDoesNotNeedAreSkipped) {
  needs_[1] = false;
  run(/*ordered=*/false, {result(0, 1), result(1, 2), result(2, 1)});
  EXPECT_EQ(bundle_order(), (std::vector<std::uint64_t>{0, 2}));
}

// A fatal exporter stops the run: nothing more is sent, and no bundle it did not take is ever
// reported complete (their files are read again by the next run).
TEST_F(DispatcherTest, FatalExporterRequestsTheStopAndSendsNothingMore) {
  exporter_.fail_at = 1;
  run(/*ordered=*/false, {result(0, 1), result(1, 1), result(2, 1)});
  EXPECT_TRUE(stop_.load());
  EXPECT_EQ(bundle_order(), (std::vector<std::uint64_t>{0}));
  ASSERT_EQ(finals_.size(), 1u);
  EXPECT_EQ(finals_[0], std::make_pair(std::size_t{0}, false));
  EXPECT_EQ(ledger_->counts().delivered, 1u);
}

// stop(deadline) while the dispatcher thread runs only asks: the exporter is not stopped under
// a thread that may still send to it, and nothing new is sent. Once the thread has returned, the
// same call stops the exporter with the time left and records what finished.
TEST_F(DispatcherTest, StopWaitsForItsThreadBeforeStoppingTheExporter) {
  Dispatcher d(wiring(/*ordered=*/false));
  StageRunner runner;
  d.start(runner);
  const auto now = std::chrono::steady_clock::now;
  EXPECT_FALSE(d.stop(now() - std::chrono::seconds(1)));  // still running: only asked
  EXPECT_FALSE(d.stop(now() + std::chrono::milliseconds(50)));
  EXPECT_TRUE(exporter_.stops.empty());
  const BundleResult late = result(0, 2);
  ASSERT_TRUE(results_.push(late, result_bytes(late)));
  results_.close();
  EXPECT_TRUE(d.stop(now() + std::chrono::seconds(30)));
  runner.join_all();
  EXPECT_EQ(runner.first_error(), "");
  ASSERT_EQ(exporter_.stops.size(), 1u);
  EXPECT_GT(exporter_.stops[0], std::chrono::seconds(20));  // the time left, not zero
  EXPECT_TRUE(exporter_.sent.empty());  // asked to stop: the late bundle was not sent
  EXPECT_TRUE(finals_.empty());         // ... so it is never recorded complete
  EXPECT_FALSE(ledger_->stop(now()));   // its spans have no outcome
}

// Several backends: each route has its own sender thread, and every sender's drain ends at the
// run's one deadline (DrainDeadline), not --drain-timeout counted from its own queue's end.
class SlowExporter final : public Exporter {
 public:
  explicit SlowExporter(std::chrono::milliseconds send_delay) : send_delay_(send_delay) {}
  std::string_view instance() const noexcept override { return "slow"; }
  bool send(std::vector<Span>&& spans) override {
    sending = true;
    std::this_thread::sleep_for(send_delay_);  // a backend that holds each request a while
    Ack a;
    for (const Span& s : spans) a.spans.push_back(SpanRef{s.span_key(), s.bundle_seq});
    if (ack_) ack_(std::move(a));
    return true;
  }
  bool stop(std::chrono::milliseconds drain) noexcept override {
    std::lock_guard lock(mu_);
    // When this drain would end at the latest (a backend that never answers takes all of it).
    called_at = std::chrono::steady_clock::now();
    drain_given = drain;
    drain_end = called_at + drain;
    ++stops;
    return true;
  }
  bool fatal() const noexcept override { return false; }
  std::string fatal_reason() const override { return ""; }
  ExporterStats stats() const override { return {}; }

  std::atomic<bool> sending{false};
  std::mutex mu_;
  std::chrono::steady_clock::time_point called_at, drain_end;
  std::chrono::milliseconds drain_given{-1};
  int stops = 0;

 private:
  std::chrono::milliseconds send_delay_;
};

class DispatcherSendersTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kRoutes = 2;
  DispatcherSendersTest() : bundles_(kBundles), outcomes_(kBundles), needs_(kBundles, true) {
    for (std::size_t b = 0; b < kBundles; ++b) bundles_[b].seq = b;
    for (std::size_t i = 0; i < kRoutes; ++i) {
      DeliveryLedger::Wiring lw;
      lw.instance = "r" + std::to_string(i);
      lw.bundles = &bundles_;
      lw.outcomes = &outcomes_;
      lw.dedupe = &dedupe_[i];
      lw.failure = &failure_;
      ledgers_[i] = std::make_unique<DeliveryLedger>(std::move(lw));
      ledgers_[i]->attach(*exporters_[i], /*synchronous=*/true);
    }
  }
  Dispatcher::Wiring wiring() {
    Dispatcher::Wiring w;
    w.bundles = &bundles_;
    w.any_need = &needs_;
    for (std::size_t i = 0; i < kRoutes; ++i)
      w.routes.push_back(Dispatcher::Route{"r" + std::to_string(i), exporters_[i].get(),
                                           &dedupe_[i], ledgers_[i].get(), &needs_});
    w.results = &results_;
    w.outcomes = &outcomes_;
    w.budget = &budget_;
    w.drain = &drain_;
    w.stop_requested = [this] { return stop_.load(); };
    w.request_stop = [this] { stop_ = true; };
    return w;
  }
  void push(std::size_t b) {
    const BundleResult r = result(b, 1);
    ASSERT_TRUE(results_.push(r, result_bytes(r)));
  }

  static constexpr auto kDrain = std::chrono::milliseconds(2000);
  std::vector<Bundle> bundles_;
  BundleOutcomes outcomes_;
  std::vector<bool> needs_;
  SpanDedupe dedupe_[kRoutes];
  StateFailure failure_;
  // Route 0 answers at once; route 1 holds every request 400 ms.
  std::unique_ptr<SlowExporter> exporters_[kRoutes] = {
      std::make_unique<SlowExporter>(std::chrono::milliseconds(0)),
      std::make_unique<SlowExporter>(std::chrono::milliseconds(400))};
  std::unique_ptr<DeliveryLedger> ledgers_[kRoutes];
  MemoryBudget budget_{64u << 20, false, kRoutes};
  BoundedQueue<BundleResult> results_{64u << 20};
  std::atomic<bool> stop_{false};
  DrainDeadline drain_{kDrain};
};

// A stop is asked while the slow backend's sender is inside a send() (4 s) that outlasts the
// drain timeout (2 s). Before: that sender then drained a whole --drain-timeout from its own
// queue's end, 4 s after the run's deadline. Now its drain ends at that deadline.
TEST_F(DispatcherSendersTest, AStopEndsEverySendersDrainAtTheRunsDeadline) {
  exporters_[1] = std::make_unique<SlowExporter>(std::chrono::milliseconds(4000));
  ledgers_[1]->attach(*exporters_[1], /*synchronous=*/true);
  Dispatcher d(wiring());
  StageRunner runner;
  d.start(runner);
  push(0);
  push(1);
  while (!exporters_[1]->sending.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop_ = true;
  const Deadline deadline = drain_.arm();  // what the run does at its stop request
  results_.close();
  runner.join_all();
  EXPECT_EQ(runner.first_error(), "");
  EXPECT_TRUE(d.stop(drain_.get()));
  EXPECT_EQ(drain_.get(), deadline);  // armed once
  {  // the fast route was done before the deadline: it drains until then
    std::lock_guard lock(exporters_[0]->mu_);
    ASSERT_EQ(exporters_[0]->stops, 1);
    EXPECT_LT(exporters_[0]->called_at, deadline);
    EXPECT_LE(exporters_[0]->drain_end, deadline + std::chrono::milliseconds(50));
  }
  {  // the slow one came out of its send() after the deadline: no drain time is left
    std::lock_guard lock(exporters_[1]->mu_);
    ASSERT_EQ(exporters_[1]->stops, 1);
    EXPECT_GE(exporters_[1]->called_at, deadline);
    EXPECT_EQ(exporters_[1]->drain_given, std::chrono::milliseconds(0));
  }
}

// Input exhausted without a stop: each sender drains as soon as its own queue is done (the fast
// route does not wait for the slow one: its partial batch goes out at once), and no drain ends
// after the run's deadline, which the run fixes at the joins.
TEST_F(DispatcherSendersTest, AtTheEndOfInputEachSenderDrainsAtOnceWithinTheRunsDeadline) {
  Dispatcher d(wiring());
  StageRunner runner;
  d.start(runner);
  for (std::size_t b = 0; b < 3; ++b) push(b);
  results_.close();
  const auto t0 = std::chrono::steady_clock::now();
  runner.join_all();
  EXPECT_EQ(runner.first_error(), "");
  EXPECT_FALSE(drain_.armed());            // nothing asked for a stop
  const Deadline deadline = drain_.arm();  // what the run does after the joins
  EXPECT_GE(deadline, t0 + std::chrono::milliseconds(1200) + kDrain);  // after 3 slow sends
  {
    std::lock_guard lock(exporters_[0]->mu_);
    ASSERT_EQ(exporters_[0]->stops, 1);
    EXPECT_LT(exporters_[0]->called_at, t0 + std::chrono::milliseconds(1200));
  }
  for (const auto& e : exporters_) {
    std::lock_guard lock(e->mu_);
    ASSERT_EQ(e->stops, 1);
    EXPECT_LE(e->drain_end, deadline);
  }
  EXPECT_TRUE(d.stop(deadline));
  EXPECT_EQ(ledgers_[0]->counts().delivered, 3u);
  EXPECT_EQ(ledgers_[1]->counts().delivered, 3u);
}

}  // namespace
}  // namespace chsync
