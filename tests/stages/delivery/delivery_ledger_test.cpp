// DeliveryLedger (stages/delivery): per-span outcomes become state records and finished
// bundles. Driven directly, as the dispatcher and an asynchronous exporter would, over a real
// SQLite state; what the state holds afterwards is read back through the StateStore interface.
#include "stages/delivery/delivery_ledger.h"

#include <gtest/gtest.h>

#include <tuple>
#include <vector>

#include "tests/support/temp_dir.h"

namespace chsync {
namespace {

constexpr const char* kInstance = "otlp";

class DeliveryLedgerTest : public ::testing::Test {
 protected:
  DeliveryLedgerTest() : outcomes_(1) {
    Bundle b;
    b.seq = 0;
    b.project = "proj";
    FileRef f;
    f.key = "/in/s.jsonl";
    f.size = 100;
    f.mtime_ms = 1000;
    b.files.push_back(f);
    bundles_.push_back(b);
    FileOutcome fo;
    fo.lines = 7;
    fo.end_offset = 100;
    outcomes_.files[0].push_back(fo);
    state_ = open_sqlite_state(tmp_.file("state.db"), {});
    DeliveryLedger::Wiring w;
    w.instance = kInstance;
    w.state = state_.get();
    w.bundles = &bundles_;
    w.outcomes = &outcomes_;
    w.dedupe = &dedupe_;
    w.failure = &failure_;
    w.dead_letter = [this](const Ack& a, const std::vector<std::uint64_t>& keys) {
      dead_letters_.emplace_back(a.reason, keys);
    };
    w.on_bundle_final = [this](std::size_t bundle, bool failed, bool fenced) {
      finals_.emplace_back(bundle, failed, fenced);
    };
    ledger_ = std::make_unique<DeliveryLedger>(std::move(w));
  }

  static std::vector<SpanRef> refs(const std::vector<std::uint64_t>& keys) {
    std::vector<SpanRef> r;
    r.reserve(keys.size());
    for (auto k : keys) r.push_back(SpanRef{k, 0});
    return r;
  }
  void ack(Ack::Outcome o, const std::vector<std::uint64_t>& keys, int status = 200,
           std::string reason = {}) {
    Ack a;
    a.outcome = o;
    a.spans = refs(keys);
    a.http_status = status;
    a.reason = std::move(reason);
    ledger_->on_ack(std::move(a));
  }

  test::TempDir tmp_{"delivery-ledger-test"};
  std::vector<Bundle> bundles_;
  BundleOutcomes outcomes_;
  SpanDedupe dedupe_;
  StateFailure failure_;
  std::unique_ptr<StateStore> state_;
  std::unique_ptr<DeliveryLedger> ledger_;
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> dead_letters_;
  std::vector<std::tuple<std::size_t, bool, bool>> finals_;
};

TEST_F(DeliveryLedgerTest, FileRowOnlyAfterEverySpanOfTheBundleHasAnOutcome) {
  ledger_->dispatched(0, 3);
  ASSERT_TRUE(ledger_->before_send(refs({11, 12, 13})));
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 3u);  // recorded before the request leaves

  ack(Ack::Outcome::kDelivered, {11, 12});
  ledger_->finalize_ready();
  state_->flush();
  EXPECT_FALSE(state_->file(kInstance, "/in/s.jsonl").has_value());
  EXPECT_TRUE(finals_.empty());

  ack(Ack::Outcome::kDelivered, {13});
  ledger_->finalize_ready();
  state_->flush();
  const auto row = state_->file(kInstance, "/in/s.jsonl");
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(row->complete);
  EXPECT_EQ(row->spans, 3u);
  EXPECT_EQ(row->lines, 7u);
  EXPECT_EQ(row->committed_offset, 100u);
  EXPECT_EQ(row->project, "proj");
  EXPECT_EQ(state_->load_delivered(kInstance), (std::vector<std::uint64_t>{11, 12, 13}));
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 0u);
  ASSERT_EQ(finals_.size(), 1u);
  EXPECT_EQ(finals_[0], std::make_tuple(std::size_t{0}, false, false));
  EXPECT_EQ(ledger_->counts().delivered, 3u);
  EXPECT_FALSE(failure_.failed());
}

// A transport failure (no HTTP status): the request may have reached the backend, so its
// in-flight record stays (the next run counts a resend as a possible repeat) and the bundle is
// not complete: no file row, and the bundle is reported failed.
TEST_F(DeliveryLedgerTest, TransportFailureKeepsTheRecordAndWritesNoRow) {
  ledger_->dispatched(0, 2);
  ASSERT_TRUE(ledger_->before_send(refs({21, 22})));
  ack(Ack::Outcome::kFailed, {21, 22}, /*status=*/0, "connection reset");
  ledger_->finalize_ready();
  state_->flush();
  EXPECT_FALSE(state_->file(kInstance, "/in/s.jsonl").has_value());
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 2u);
  EXPECT_TRUE(state_->load_delivered(kInstance).empty());
  ASSERT_EQ(finals_.size(), 1u);
  EXPECT_EQ(finals_[0], std::make_tuple(std::size_t{0}, true, false));
  EXPECT_EQ(ledger_->counts().failed, 2u);
  EXPECT_EQ(ledger_->counts().last_failure, "connection reset");
}

// The backend said no to the whole request (here 403): nothing reached it, so the record goes.
TEST_F(DeliveryLedgerTest, AnsweredFailureRemovesTheRecord) {
  ledger_->dispatched(0, 1);
  ASSERT_TRUE(ledger_->before_send(refs({31})));
  ack(Ack::Outcome::kFailed, {31}, /*status=*/403, "forbidden");
  ledger_->finalize_ready();
  state_->flush();
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 0u);
  EXPECT_TRUE(state_->load_delivered(kInstance).empty());
  EXPECT_EQ(ledger_->counts().failed, 1u);
}

TEST_F(DeliveryLedgerTest, DeadSpansAreRecordedDeadWithTheirDeadLetter) {
  ledger_->dispatched(0, 2);
  ASSERT_TRUE(ledger_->before_send(refs({41, 42})));
  ack(Ack::Outcome::kDead, {41, 42}, 400, "bad request");
  ledger_->finalize_ready();
  state_->flush();
  ASSERT_EQ(dead_letters_.size(), 1u);
  EXPECT_EQ(dead_letters_[0].first, "bad request");
  EXPECT_EQ(dead_letters_[0].second, (std::vector<std::uint64_t>{41, 42}));
  EXPECT_EQ(state_->load_dead(kInstance), (std::vector<std::uint64_t>{41, 42}));
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 0u);
  // A dead span has its outcome: the bundle is finished and its file row written.
  EXPECT_TRUE(state_->file(kInstance, "/in/s.jsonl").has_value());
  EXPECT_EQ(ledger_->counts().dead, 2u);
}

// Part of a request acknowledged (a 413 split it): the rest keeps a record of its own, so a
// kill now still counts the unacknowledged spans as possible repeats.
TEST_F(DeliveryLedgerTest, PartialAckKeepsTheRestInFlight) {
  ledger_->dispatched(0, 4);
  ASSERT_TRUE(ledger_->before_send(refs({51, 52, 53, 54})));
  ack(Ack::Outcome::kDelivered, {51, 52});
  state_->flush();
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 2u);
  ack(Ack::Outcome::kDelivered, {53, 54});
  ledger_->finalize_ready();
  state_->flush();
  EXPECT_EQ(state_->totals(kInstance).spans_in_flight, 0u);
  EXPECT_EQ(state_->load_delivered(kInstance), (std::vector<std::uint64_t>{51, 52, 53, 54}));
}

TEST_F(DeliveryLedgerTest, SpansNotSentLeaveTheBundleIncomplete) {
  ledger_->dispatched(0, 0);  // nothing left to send (all deduped)...
  ledger_->mark_failed(0);    // ...but some spans were dropped at a stop
  ledger_->finalize_ready();
  state_->flush();
  EXPECT_FALSE(state_->file(kInstance, "/in/s.jsonl").has_value());
  ASSERT_EQ(finals_.size(), 1u);
  EXPECT_EQ(finals_[0], std::make_tuple(std::size_t{0}, true, false));
}

}  // namespace
}  // namespace chsync
