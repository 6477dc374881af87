// The StateStore contract (stages/state/state_store.h), run over every store: SQLite always,
// PostgreSQL when CHSYNC_TEST_PG_URL names a server (tests/stages/state/with_pg.py starts a private
// one and runs this binary with it; CHSYNC_REQUIRE_PG=1 makes a missing PostgreSQL a failure
// there). Each test gets a fresh store: a new SQLite file, or a new PostgreSQL database.
// Store-specific behaviour (SQLite's run lock and file detection, PostgreSQL's work table)
// stays in state_test.cpp and tests/scaleout.
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "stages/state/state_store.h"
#include "tests/support/state_store.h"

namespace chsync {
namespace {

const char* pg_base_url() {
  const char* u = std::getenv("CHSYNC_TEST_PG_URL");
  return u && *u ? u : nullptr;
}

// postgresql://host:port/db -> the same server, database `name`.
std::string with_database(const std::string& url, const std::string& name) {
  const auto scheme = url.find("://");
  const auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const auto query = url.find('?');
  std::string base = slash == std::string::npos ? url.substr(0, query) : url.substr(0, slash);
  return base + "/" + name + (query == std::string::npos ? "" : url.substr(query));
}

void pg_admin(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  const std::string err = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  ASSERT_TRUE(ok) << sql << ": " << err;
}

class StateContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      static std::atomic<int> n{0};
      db_name_ = "chsync_contract_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
      pg_admin(pg_base_url(), "CREATE DATABASE " + db_name_);
      url_ = with_database(pg_base_url(), db_name_);
    } else {
      sqlite_ = std::make_unique<test::StateFile>("chsync-contract");
    }
  }
  void TearDown() override {
    if (!db_name_.empty()) pg_admin(pg_base_url(), "DROP DATABASE IF EXISTS " + db_name_);
    sqlite_.reset();
  }
  std::unique_ptr<StateStore> open(const StateOpenOptions& o = {}) {
    if (!url_.empty()) return open_pg_state(url_, o);
    return sqlite_->open(o);
  }

  std::string db_name_, url_;
  std::unique_ptr<test::StateFile> sqlite_;  // SQLite only
};

TEST_P(StateContract, ReopenKeepsSpansAndFiles) {
  test::write_sample_rows(*open(), "otlp");
  test::expect_sample_rows(*open(), "otlp");
}

TEST_P(StateContract, FileRowsRoundTripAndForgetByPrefix) {
  auto s = open();
  FileState a = test::sample_file("lf", "dir/a.jsonl");
  s->put_files(
      {a, test::sample_file("lf", "dir/b.jsonl"), test::sample_file("otlp", "dir/a.jsonl")});
  auto got = s->file("lf", "dir/a.jsonl");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->size, a.size);
  EXPECT_EQ(got->mtime_ms, a.mtime_ms);
  EXPECT_EQ(got->fingerprint, a.fingerprint);
  EXPECT_EQ(got->committed_offset, a.committed_offset);
  EXPECT_EQ(got->lines, a.lines);
  EXPECT_TRUE(got->complete);
  EXPECT_EQ(got->project, a.project);
  EXPECT_FALSE(s->file("lf", "nope").has_value());
  a.committed_offset = 5000;
  a.complete = false;
  s->put_files({a});
  EXPECT_EQ(s->file("lf", "dir/a.jsonl")->committed_offset, 5000u);
  EXPECT_FALSE(s->file("lf", "dir/a.jsonl")->complete);
  EXPECT_EQ(s->files("lf").size(), 2u);
  EXPECT_EQ(s->files("").size(), 3u);
  EXPECT_EQ(s->forget_files("lf", "dir/b"), 1u);
  EXPECT_EQ(s->files("lf").size(), 1u);
  EXPECT_EQ(s->files("otlp").size(), 1u);  // another instance is untouched
}

TEST_P(StateContract, OutcomesMoveKeysOutOfFlight) {
  auto s = open();
  const std::uint64_t r1 = s->begin_request("otlp", {10, 11, 12});
  const std::uint64_t r2 = s->begin_request("otlp", {20, 21});
  const std::uint64_t r3 = s->begin_request("otlp", {30});
  EXPECT_NE(r1, r2);
  EXPECT_NE(r2, r3);
  EXPECT_EQ(s->totals("otlp").spans_in_flight, 6u);
  s->finish_request("otlp", r1, {10, 11, 12}, /*delivered=*/true, /*dead=*/false);
  s->finish_request_dead("otlp", r2, {20, 21}, "dead-letters.jsonl:7");
  s->finish_request("otlp", r3, {30}, /*delivered=*/false, /*dead=*/false);  // failed
  const StatusTotals t = s->totals("otlp");  // totals commits the buffered acks first
  EXPECT_EQ(t.spans_in_flight, 0u);
  EXPECT_EQ(t.spans_delivered, 3u);
  EXPECT_EQ(t.spans_dead, 2u);
  EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{10, 11, 12, 20, 21}));
  EXPECT_EQ(s->load_dead("otlp"), (std::vector<std::uint64_t>{20, 21}));
  s->mark_delivered("otlp", {20});  // a replayed dead span is delivered, no longer dead
  EXPECT_EQ(s->load_dead("otlp"), (std::vector<std::uint64_t>{21}));
  s->forget_spans("otlp", {10, 21});
  EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{11, 12, 20}));
}

TEST_P(StateContract, BufferedAcksSurviveAClose) {
  StateOpenOptions slow;
  slow.ack_flush_interval = std::chrono::hours(1);  // only close or a later write commits them
  {
    auto s = open(slow);
    const auto r = s->begin_request("otlp", {7, 8});
    s->finish_request("otlp", r, {7, 8}, true, false);
  }
  auto s = open();
  EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{7, 8}));
  EXPECT_EQ(s->totals("otlp").spans_in_flight, 0u);
}

TEST_P(StateContract, FileRowsCommitWithTheAcksBeforeThem) {
  StateOpenOptions slow;
  slow.ack_flush_interval = std::chrono::hours(1);
  auto s = open(slow);
  const auto r = s->begin_request("otlp", {7, 8});
  s->finish_request("otlp", r, {7, 8}, true, false);
  s->put_files({test::sample_file("otlp", "f")});
  s->flush();
  StateOpenOptions reader;  // a second, read-only view (no run lock): after flush(), both
  reader.read_only = true;
  reader.take_lock = false;
  auto other = open(reader);
  EXPECT_EQ(other->load_delivered("otlp"), (std::vector<std::uint64_t>{7, 8}));
  EXPECT_TRUE(other->file("otlp", "f").has_value());
}

TEST_P(StateContract, TopBitKeysRoundTripInUnsignedOrder) {
  const std::vector<std::uint64_t> keys = {0xffffffffffffffffull, 0x8000000000000000ull, 0, 1,
                                           0x7fffffffffffffffull, 0xdeadbeefcafef00dull};
  std::vector<std::uint64_t> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  auto s = open();
  s->mark_delivered("i", keys);
  s->finish_request_dead("j", s->begin_request("j", keys), keys, "x");
  EXPECT_EQ(s->load_delivered("i"), sorted);
  EXPECT_EQ(s->load_delivered("j"), sorted);
  EXPECT_EQ(s->load_dead("j"), sorted);
}

TEST_P(StateContract, InstancesAreIndependent) {
  auto s = open();
  const auto r = s->begin_request("a", {1, 2});
  s->finish_request("a", r, {1, 2}, true, false);
  s->mark_delivered("b", {3});
  EXPECT_EQ(s->load_delivered("a"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(s->load_delivered("b"), (std::vector<std::uint64_t>{3}));
  EXPECT_EQ(s->totals("").spans_delivered, 3u);
  EXPECT_EQ(s->instances(), (std::vector<std::string>{"a", "b"}));
}

std::vector<std::string> stores() {
  std::vector<std::string> v = {"sqlite"};
  if (pg_base_url()) v.emplace_back("postgresql");
  return v;
}

INSTANTIATE_TEST_SUITE_P(Stores, StateContract, ::testing::ValuesIn(stores()),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace chsync
