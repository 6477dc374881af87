// Tests for the SQLite state store (stages/state): durability, crash ordering, lock, detection.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "stages/state/state_store.h"
#include "tests/support/state_store.h"
#include "tests/support/temp_dir.h"

namespace chsync {
namespace {

namespace fs = std::filesystem;
using chsync::test::sample_file;
using chsync::test::StateFile;
using chsync::test::TempDir;
using Code = StateError::Code;

Code open_error(const std::string& path, const StateOpenOptions& opts = {},
                std::string* message = nullptr) {
  try {
    auto s = open_sqlite_state(path, opts);
  } catch (const StateError& e) {
    if (message != nullptr) {
      *message = e.what();
    }
    return e.code();
  }
  ADD_FAILURE() << "open succeeded: " << path;
  return Code::kIo;
}

// Runs SQL on a raw connection (to build foreign / newer / corrupt files).
void raw_sql(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err != nullptr ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// Child process helpers: the child writes one byte to `ready` when its part is done.
struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (::pipe(fds) != 0) {
      std::abort();
    }
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    ::close(r);
    ::close(w);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void signal() const {
    const char c = 'x';
    [[maybe_unused]] auto n = ::write(w, &c, 1);
  }
  bool wait() const {
    char c = 0;
    return ::read(r, &c, 1) == 1 && c == 'x';
  }
};

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

// --------------------------------------------------------------------------------------------

TEST(StateTest, SettledLookupsMatchTheLoadedSet) {
  const StateFile st;
  auto s = st.open();
  EXPECT_TRUE(s->settled_fits("otlp", 0));  // unknown instance: nothing to load
  EXPECT_TRUE(s->settled_among("otlp", {1, 2}).empty());
  // Delivered keys on both sides of the signed rowid order, plus dead ones.
  const std::uint64_t big = 0x9000000000000001ull;  // negative as a rowid
  s->mark_delivered("otlp", {5, 7, big});
  const std::uint64_t req = s->begin_request("otlp", {11, 12});
  s->finish_request("otlp", req, {11, 12}, false, true);
  s->flush();
  EXPECT_TRUE(s->settled_fits("otlp", 5));
  EXPECT_FALSE(s->settled_fits("otlp", 4));  // 3 delivered + 2 dead
  EXPECT_FALSE(s->settled_fits("otlp", 2));
  const std::vector<std::uint64_t> asked = {1, 5, 6, 7, 11, 13, big, big + 1};
  EXPECT_EQ(s->settled_among("otlp", asked), (std::vector<std::uint64_t>{5, 7, 11, big}));
  std::vector<std::uint64_t> loaded = s->load_delivered("otlp");
  std::vector<std::uint64_t> expect;
  std::set_intersection(asked.begin(), asked.end(), loaded.begin(), loaded.end(),
                        std::back_inserter(expect));
  EXPECT_EQ(s->settled_among("otlp", asked), expect);
  EXPECT_TRUE(s->settled_among("other", asked).empty());
}

TEST(StateTest, CreateAndReopenKeepsData) {
  TempDir dir{"chsync-state"};
  const std::string db = dir.file("sub/dir/state.db");
  test::write_sample_rows(*open_sqlite_state(db, {}), "otlp");  // parent folders made
  EXPECT_TRUE(fs::exists(db));
  auto s = open_sqlite_state(db, {});
  test::expect_sample_rows(*s, "otlp");
  EXPECT_EQ(s->path(), db);
}

TEST(StateTest, FilesPutGetUpdateAndScope) {
  const StateFile st;
  auto s = st.open();
  FileState a = sample_file("lf", "dir/a.jsonl");
  FileState b = sample_file("lf", "dir/b.jsonl");
  FileState c = sample_file("otlp", "dir/a.jsonl");
  s->put_files({a, b, c});
  auto got = s->file("lf", "dir/a.jsonl");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->instance, "lf");
  EXPECT_EQ(got->key, "dir/a.jsonl");
  EXPECT_EQ(got->size, a.size);
  EXPECT_EQ(got->mtime_ms, a.mtime_ms);
  EXPECT_EQ(got->fingerprint, a.fingerprint);
  EXPECT_EQ(got->committed_offset, a.committed_offset);
  EXPECT_EQ(got->lines, a.lines);
  EXPECT_EQ(got->complete, a.complete);
  EXPECT_EQ(got->last_sync_ms, a.last_sync_ms);
  EXPECT_EQ(got->spans, a.spans);
  EXPECT_EQ(got->errors, a.errors);
  EXPECT_EQ(got->project, a.project);
  EXPECT_FALSE(s->file("lf", "nope").has_value());
  EXPECT_FALSE(s->file("nobody", "dir/a.jsonl").has_value());

  a.committed_offset = 5000;
  a.complete = false;
  s->put_files({a});
  EXPECT_EQ(s->file("lf", "dir/a.jsonl")->committed_offset, 5000u);
  EXPECT_FALSE(s->file("lf", "dir/a.jsonl")->complete);
  EXPECT_EQ(s->files("lf").size(), 2u);
  EXPECT_EQ(s->files("otlp").size(), 1u);
  EXPECT_EQ(s->files("").size(), 3u);
  EXPECT_EQ(s->totals("").files, 3u);

  EXPECT_EQ(s->forget_files("lf", "dir/b"), 1u);
  EXPECT_EQ(s->files("lf").size(), 1u);
  EXPECT_EQ(s->files("otlp").size(), 1u);  // other instance untouched
  EXPECT_EQ(s->forget_files("lf", ""), 1u);
  EXPECT_TRUE(s->files("lf").empty());
}

TEST(StateTest, ForgetFilesPrefixWithHighBytes) {
  const StateFile st;
  auto s = st.open();
  s->put_files({sample_file("i",
                            "x\xff\xff"
                            "a"),
                sample_file("i", "x\xff"), sample_file("i", "y")});
  EXPECT_EQ(s->forget_files("i", "x\xff"), 2u);
  ASSERT_EQ(s->files("i").size(), 1u);
  EXPECT_EQ(s->files("i")[0].key, "y");
}

TEST(StateTest, BeginFinishMovesKeysToDeliveredAndClearsInFlight) {
  const StateFile st;
  {
    auto s = st.open();
    const std::uint64_t r1 = s->begin_request("otlp", {10, 11, 12});
    const std::uint64_t r2 = s->begin_request("otlp", {20, 21});
    const std::uint64_t r3 = s->begin_request("otlp", {30});
    EXPECT_NE(r1, r2);
    EXPECT_EQ(s->totals("otlp").spans_in_flight, 6u);
    s->finish_request("otlp", r1, {10, 11, 12}, /*delivered=*/true, /*dead=*/false);
    s->finish_request_dead("otlp", r2, {20, 21}, "dead-letters.jsonl:7");
    s->finish_request("otlp", r3, {30}, /*delivered=*/false, /*dead=*/false);  // failed
    const StatusTotals t = s->totals("otlp");
    EXPECT_EQ(t.spans_in_flight, 0u);
    EXPECT_EQ(t.spans_delivered, 3u);
    EXPECT_EQ(t.spans_dead, 2u);
    EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{10, 11, 12, 20, 21}));
    EXPECT_EQ(s->load_dead("otlp"), (std::vector<std::uint64_t>{20, 21}));
    // Replaying a dead span: delivered now, no longer dead.
    s->mark_delivered("otlp", {20});
    EXPECT_EQ(s->load_dead("otlp"), (std::vector<std::uint64_t>{21}));
    EXPECT_EQ(s->totals("otlp").spans_delivered, 4u);
    s->forget_spans("otlp", {10, 21});
    EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{11, 12, 20}));
  }
  auto s = st.open();
  EXPECT_TRUE(s->load_in_flight("otlp").empty());
  EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{11, 12, 20}));
}

TEST(StateTest, InstancesAreIndependent) {
  const StateFile st;
  auto s = st.open();
  const auto r = s->begin_request("a", {1, 2});
  s->finish_request("a", r, {1, 2}, true, false);
  s->mark_delivered("b", {3});
  EXPECT_EQ(s->load_delivered("a"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(s->load_delivered("b"), (std::vector<std::uint64_t>{3}));
  EXPECT_EQ(s->totals("").spans_delivered, 3u);
  EXPECT_EQ(s->instances(), (std::vector<std::string>{"a", "b"}));
}

TEST(StateTest, TopBitKeysRoundTripInUnsignedOrder) {
  const StateFile st;
  const std::vector<std::uint64_t> keys = {0xffffffffffffffffull, 0x8000000000000000ull, 0, 1,
                                           0x7fffffffffffffffull, 0xdeadbeefcafef00dull};
  std::vector<std::uint64_t> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  {
    auto s = st.open();
    s->mark_delivered("i", keys);
    const auto r = s->begin_request("i", keys);
    (void)r;
    s->finish_request_dead("j", s->begin_request("j", keys), keys, "x");
  }
  auto s = st.open();
  EXPECT_EQ(s->load_delivered("i"), sorted);
  EXPECT_EQ(s->load_in_flight("i"), sorted);
  EXPECT_EQ(s->load_delivered("j"), sorted);
  EXPECT_EQ(s->load_dead("j"), sorted);
}

TEST(StateTest, InFlightOfEarlierRunsLoadedUnionAndCleared) {
  const StateFile st;
  {
    auto s = st.open();
    s->begin_request("i", {5, 3});
    s->begin_request("i", {3, 9});
    s->begin_request("other", {100});
  }
  auto s = st.open();
  EXPECT_EQ(s->load_in_flight("i"), (std::vector<std::uint64_t>{3, 5, 9}));
  // A request of this run is not "from an earlier run" and survives clear_in_flight.
  const auto mine = s->begin_request("i", {77});
  EXPECT_EQ(s->load_in_flight("i"), (std::vector<std::uint64_t>{3, 5, 9}));
  s->clear_in_flight("i");
  EXPECT_TRUE(s->load_in_flight("i").empty());
  EXPECT_EQ(s->load_in_flight("other"), (std::vector<std::uint64_t>{100}));
  EXPECT_EQ(s->totals("i").spans_in_flight, 1u);
  s->finish_request("i", mine, {77}, true, false);
  EXPECT_EQ(s->totals("i").spans_in_flight, 0u);
}

// begin_request must be durable when it returns: a kill -9 right after leaves the record.
TEST(StateTest, KilledAfterBeginLeavesInFlightVisible) {
  const StateFile st;
  Pipe ready;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = st.open();
    const auto r1 = s->begin_request("otlp", {1, 2, 3});
    s->finish_request("otlp", r1, {1, 2, 3}, true, false);
    s->flush();  // r1 is fully recorded
    s->begin_request("otlp", {4, 5});
    const auto r3 = s->begin_request("otlp", {6});
    s->finish_request("otlp", r3, {6}, true, false);
    ready.signal();
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(ready.wait());
  kill_and_reap(pid);
  auto s = st.open();
  const auto delivered = s->load_delivered("otlp");
  // 1,2,3 certainly delivered; 6 only if the 50 ms flusher ran before the kill.
  const std::vector<std::uint64_t> first = {1, 2, 3};
  EXPECT_TRUE(std::includes(delivered.begin(), delivered.end(), first.begin(), first.end()));
  const auto in_flight = s->load_in_flight("otlp");
  EXPECT_TRUE(std::binary_search(in_flight.begin(), in_flight.end(), 4u));
  EXPECT_TRUE(std::binary_search(in_flight.begin(), in_flight.end(), 5u));
  // Key 6 is either delivered (ack committed) or still in flight, never lost from both.
  const bool six_delivered = std::binary_search(delivered.begin(), delivered.end(), 6u);
  const bool six_in_flight = std::binary_search(in_flight.begin(), in_flight.end(), 6u);
  EXPECT_NE(six_delivered, six_in_flight);
}

// With a long flush interval the buffered ack is certainly lost at the kill: safe (repeat counted).
TEST(StateTest, KilledWithBufferedAckKeepsInFlightRecord) {
  const StateFile st;
  Pipe ready;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StateOpenOptions o;
    o.ack_flush_interval = std::chrono::hours(1);
    auto s = st.open(o);
    const auto r = s->begin_request("otlp", {7, 8});
    s->finish_request("otlp", r, {7, 8}, true, false);
    ready.signal();
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(ready.wait());
  kill_and_reap(pid);
  auto s = st.open();
  EXPECT_TRUE(s->load_delivered("otlp").empty());
  EXPECT_EQ(s->load_in_flight("otlp"), (std::vector<std::uint64_t>{7, 8}));
}

// Any later write commits the earlier buffered acks with it (a file row never gets ahead).
TEST(StateTest, PutFilesCommitsEarlierAcksFirst) {
  const StateFile st;
  Pipe ready;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StateOpenOptions o;
    o.ack_flush_interval = std::chrono::hours(1);
    auto s = st.open(o);
    const auto r = s->begin_request("otlp", {7, 8});
    s->finish_request("otlp", r, {7, 8}, true, false);
    s->put_files({sample_file("otlp", "f")});
    ready.signal();
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(ready.wait());
  kill_and_reap(pid);
  auto s = st.open();
  EXPECT_EQ(s->load_delivered("otlp"), (std::vector<std::uint64_t>{7, 8}));
  EXPECT_TRUE(s->load_in_flight("otlp").empty());
  EXPECT_TRUE(s->file("otlp", "f").has_value());
}

TEST(StateTest, LockHeldByLiveChildIsReported) {
  const StateFile st;
  const std::string& db = st.path();
  Pipe ready;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = st.open();
    ready.signal();
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(ready.wait());
  std::string msg;
  EXPECT_EQ(open_error(db, {}, &msg), Code::kLocked);
  EXPECT_NE(msg.find(std::to_string(pid)), std::string::npos) << msg;
  EXPECT_NE(msg.find("started 20"), std::string::npos) << msg;
  // Read-only (status) does not need the lock.
  StateOpenOptions ro;
  ro.read_only = true;
  EXPECT_NO_THROW(st.open(ro));
  // A SIGKILLed holder's lock is taken over: the kernel drops flock with the process.
  kill_and_reap(pid);
  EXPECT_NO_THROW(st.open());
}

TEST(StateTest, SecondStoreInSameProcessIsLocked) {
  const StateFile st;
  const std::string& db = st.path();
  auto s = st.open();
  EXPECT_EQ(open_error(db), Code::kLocked);
}

TEST(StateTest, GarbageFileIsCorrupt) {
  const StateFile st;
  const std::string& db = st.path();
  {
    std::ofstream f(db, std::ios::binary);
    for (int i = 0; i < 1000; ++i) {
      f << "this is not a database at all\n";
    }
  }
  std::string msg;
  EXPECT_EQ(open_error(db, {}, &msg), Code::kCorrupt);
  EXPECT_NE(msg.find(db), std::string::npos) << msg;
  EXPECT_NE(msg.find("--rebuild-state"), std::string::npos) << msg;
  StateOpenOptions ro;
  ro.read_only = true;
  EXPECT_EQ(open_error(db, ro), Code::kCorrupt);
  // The garbage was not modified.
  EXPECT_EQ(fs::file_size(db), 30000u);
}

TEST(StateTest, DamagedPagesAreCorrupt) {
  const StateFile st;
  const std::string& db = st.path();
  {
    auto s = st.open();
    std::vector<std::uint64_t> keys(20000);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      keys[i] = i * 7919u;
    }
    s->mark_delivered("i", keys);
  }
  // Overwrite the middle of the file (b-tree pages) with junk; keep the header intact.
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(db));
    f.seekp(size / 2);
    const std::string junk(8192, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  EXPECT_EQ(open_error(db), Code::kCorrupt);
}

TEST(StateTest, LargeStateChecksOnlyItsSmallTablesAtOpen) {
  // Past full_check_max_bytes the delivered table is not read at open; its damage surfaces as
  // an error on the first read, and the run stops there (StateError, never wrong answers).
  const StateFile st;
  const std::string& db = st.path();
  {
    auto s = st.open();
    std::vector<std::uint64_t> keys(20000);
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = i * 7919u;
    s->mark_delivered("i", keys);
    s->put_files({sample_file("i", "a.jsonl")});
  }
  StateOpenOptions small_check;
  small_check.full_check_max_bytes = 0;
  {
    auto s = st.open(small_check);  // healthy: opens, reads as before
    EXPECT_EQ(s->load_delivered("i").size(), 20000u);
    EXPECT_TRUE(s->file("i", "a.jsonl").has_value());
  }
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(db));
    f.seekp(size / 2);
    const std::string junk(8192, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  EXPECT_EQ(open_error(db), Code::kCorrupt);  // full check (small file): found at open
  auto s = st.open(small_check);
  EXPECT_THROW(s->load_delivered("i"), StateError);
}

TEST(StateTest, ForeignDatabaseIsForeign) {
  TempDir dir{"chsync-state"};
  const std::string a = dir.file("a.db");
  raw_sql(a, "CREATE TABLE stuff(x); INSERT INTO stuff VALUES(1);");
  std::string msg;
  EXPECT_EQ(open_error(a, {}, &msg), Code::kForeign);
  EXPECT_NE(msg.find("not a chsync state database"), std::string::npos) << msg;
  const std::string b = dir.file("b.db");
  raw_sql(b, "PRAGMA application_id=1234; CREATE TABLE t(x);");
  EXPECT_EQ(open_error(b), Code::kForeign);
  StateOpenOptions ro;
  ro.read_only = true;
  EXPECT_EQ(open_error(b, ro), Code::kForeign);
}

TEST(StateTest, NewerSchemaIsRefused) {
  const StateFile st;
  const std::string& db = st.path();
  { auto s = st.open(); }
  raw_sql(db, "PRAGMA user_version=999;");
  std::string msg;
  EXPECT_EQ(open_error(db, {}, &msg), Code::kNewerSchema);
  EXPECT_NE(msg.find("999"), std::string::npos) << msg;
}

TEST(StateTest, SchemaIdentifiesChsync) {
  const StateFile file;
  const std::string& db = file.path();
  { auto s = file.open(); }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  auto one = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(raw, sql, -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    std::string v(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    return v;
  };
  EXPECT_EQ(one("PRAGMA application_id"), std::to_string(kStateApplicationId));
  EXPECT_EQ(one("PRAGMA user_version"), std::to_string(kStateSchemaVersion));
  EXPECT_EQ(one("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(one("SELECT value FROM meta WHERE key='schema'"), "1");
  EXPECT_FALSE(one("SELECT value FROM meta WHERE key='created_at'").empty());
  sqlite3_close(raw);
}

TEST(StateTest, RebuildMovesOldFileAside) {
  const StateFile st;
  const std::string& db = st.path();
  {
    std::ofstream f(db, std::ios::binary);
    f << std::string(4096, '\x13');
  }
  {
    std::ofstream f(db + "-wal", std::ios::binary);
    f << "junk wal";
  }
  EXPECT_EQ(open_error(db), Code::kCorrupt);
  StateOpenOptions o;
  o.rebuild = true;
  auto s = st.open(o);
  const std::string aside = s->moved_aside_path();
  ASSERT_FALSE(aside.empty());
  EXPECT_EQ(aside.rfind(db + ".broken-", 0), 0u) << aside;
  EXPECT_TRUE(fs::exists(aside));
  EXPECT_TRUE(fs::exists(aside + "-wal"));
  EXPECT_EQ(fs::file_size(aside), 4096u);
  s->mark_delivered("i", {1});
  EXPECT_EQ(s->load_delivered("i"), (std::vector<std::uint64_t>{1}));
}

TEST(StateTest, ReadOnlyMissingAndReadOnlyNeverWrites) {
  TempDir dir{"chsync-state"};
  const std::string db = dir.file("nope/state.db");
  StateOpenOptions ro;
  ro.read_only = true;
  EXPECT_EQ(open_error(db, ro), Code::kReadOnlyMissing);
  EXPECT_FALSE(fs::exists(dir.file("nope")));
  const std::string good = dir.file("state.db");
  {
    auto s = open_sqlite_state(good, {});
    s->mark_delivered("i", {4, 5});
  }
  auto r = open_sqlite_state(good, ro);
  EXPECT_EQ(r->load_delivered("i"), (std::vector<std::uint64_t>{4, 5}));
  EXPECT_EQ(r->totals("").spans_delivered, 2u);
  try {
    r->mark_delivered("i", {6});
    ADD_FAILURE() << "write on a read-only store succeeded";
  } catch (const StateError& e) {
    EXPECT_EQ(e.code(), Code::kIo);
  }
  // An empty (0-byte) file read-only is an empty state, not an error.
  const std::string empty = dir.file("empty.db");
  { std::ofstream f(empty); }
  auto e = open_sqlite_state(empty, ro);
  EXPECT_TRUE(e->instances().empty());
  EXPECT_EQ(e->totals("").files, 0u);
}

TEST(StateTest, BackupOpensWithSameTotals) {
  const StateFile st;
  const std::string copy = st.file("copy.db");
  auto s = st.open();
  s->put_files({sample_file("i", "a"), sample_file("i", "b")});
  const auto r = s->begin_request("i", {1, 2, 3});
  s->finish_request("i", r, {1, 2, 3}, true, false);  // buffered: backup must include it
  s->begin_request("i", {9});
  s->finish_request_dead("i", s->begin_request("i", {8}), {8}, "dl:1");
  s->backup(copy);
  EXPECT_FALSE(fs::exists(copy + ".tmp"));
  auto c = open_sqlite_state(copy, {});
  const StatusTotals a = s->totals("");
  const StatusTotals b = c->totals("");
  EXPECT_EQ(a.files, b.files);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.spans_delivered, b.spans_delivered);
  EXPECT_EQ(a.spans_dead, b.spans_dead);
  EXPECT_EQ(a.spans_in_flight, b.spans_in_flight);
  EXPECT_EQ(b.spans_delivered, 3u);
  EXPECT_EQ(b.spans_in_flight, 1u);
  EXPECT_EQ(c->load_delivered("i"), (std::vector<std::uint64_t>{1, 2, 3, 8}));
}

TEST(StateTest, VacuumKeepsData) {
  const StateFile st;
  auto s = st.open();
  std::vector<std::uint64_t> keys(5000);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    keys[i] = i;
  }
  s->mark_delivered("i", keys);
  s->forget_spans("i", std::vector<std::uint64_t>(keys.begin(), keys.begin() + 4000));
  s->vacuum();
  EXPECT_EQ(s->load_delivered("i").size(), 1000u);
}

TEST(StateTest, ConcurrentBeginFinish) {
  const StateFile st;
  constexpr int kThreads = 4;
  constexpr int kRequests = 200;
  constexpr std::uint64_t kPerRequest = 16;
  {
    StateOpenOptions o;
    o.ack_flush_interval = std::chrono::milliseconds(5);
    o.ack_flush_keys = 100;
    auto s = st.open(o);
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    std::atomic<int> errors{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        try {
          const std::string inst = t % 2 == 0 ? "even" : "odd";
          for (int r = 0; r < kRequests; ++r) {
            std::vector<std::uint64_t> keys;
            for (std::uint64_t k = 0; k < kPerRequest; ++k) {
              keys.push_back((static_cast<std::uint64_t>(t) << 56) |
                             (static_cast<std::uint64_t>(r) << 8) | k);
            }
            const auto id = s->begin_request(inst, keys);
            s->finish_request(inst, id, keys, true, false);
            if (r % 50 == 0) {
              (void)s->totals(inst);
            }
          }
        } catch (const StateError&) {
          ++errors;
        }
      });
    }
    for (auto& th : threads) {
      th.join();
    }
    EXPECT_EQ(errors.load(), 0);
  }
  auto s = st.open();
  EXPECT_EQ(s->load_delivered("even").size(), std::size_t{2} * kRequests * kPerRequest);
  EXPECT_EQ(s->load_delivered("odd").size(), std::size_t{2} * kRequests * kPerRequest);
  EXPECT_TRUE(s->load_in_flight("even").empty());
  EXPECT_EQ(s->totals("").spans_in_flight, 0u);
}

// Disk full: a tiny tmpfs when we may mount one, else PRAGMA max_page_count. After the failure
// and freeing space, the database opens, and every span of a request whose begin_request returned
// is delivered or still in flight (its outcome is resent and counted), never lost.
void expect_disk_full(const std::string& db, const StateOpenOptions& opts,
                      const std::function<void()>& free_space) {
  std::vector<std::vector<std::uint64_t>> begun;
  std::string msg;
  {
    auto s = open_sqlite_state(db, opts);
    s->mark_delivered("i", {1, 2, 3});
    std::mt19937_64 rng(7);
    try {
      for (int i = 0; i < 100000; ++i) {
        std::vector<std::uint64_t> keys(256);
        for (auto& k : keys) {
          k = rng();
        }
        const auto id = s->begin_request("i", keys);
        begun.push_back(keys);
        s->finish_request("i", id, keys, true, false);
        if (i % 3 == 0) {
          s->flush();
        }
      }
      ADD_FAILURE() << "never ran out of space";
    } catch (const StateError& e) {
      EXPECT_EQ(e.code(), Code::kIo);
      msg = e.what();
    }
  }  // destruction retries the flush and swallows the error
  EXPECT_NE(msg.find("disk full"), std::string::npos) << msg;
  EXPECT_NE(msg.find(db), std::string::npos) << msg;
  EXPECT_GT(begun.size(), 0u);
  free_space();
  auto s = open_sqlite_state(db, {});
  const auto d = s->load_delivered("i");
  const auto f = s->load_in_flight("i");
  EXPECT_TRUE(std::binary_search(d.begin(), d.end(), 2u));
  std::size_t lost = 0;
  for (const auto& keys : begun) {
    for (const auto k : keys) {
      if (!std::binary_search(d.begin(), d.end(), k) &&
          !std::binary_search(f.begin(), f.end(), k)) {
        ++lost;
      }
    }
  }
  EXPECT_EQ(lost, 0u);
  std::printf("[   INFO   ] %zu requests begun before disk full; %zu keys in flight after\n",
              begun.size(), f.size());
}

TEST(StateTest, DiskFullGivesClearErrorAndLosesNothing) {
  TempDir dir{"chsync-state"};
  const std::string mnt = dir.file("tiny");
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") == 0) {
    struct Unmount {  // also on a failed assertion/exception, so no mount is left behind
      std::string dir;
      explicit Unmount(std::string d) : dir(std::move(d)) {}
      ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
      Unmount(const Unmount&) = delete;  // one unmount per mount
      Unmount& operator=(const Unmount&) = delete;
    } unmount{mnt};
    SCOPED_TRACE("tmpfs 256k");
    const std::string filler = mnt + "/filler";
    {
      std::ofstream f(filler, std::ios::binary);
      f << std::string(std::size_t{64} * 1024, 'f');
    }
    expect_disk_full(mnt + "/state.db", {}, [&] { fs::remove(filler); });
  } else {
    std::printf("[   INFO   ] tmpfs mount not permitted; using max_page_count only\n");
  }
  StateOpenOptions o;
  o.max_page_count = 64;
  SCOPED_TRACE("max_page_count");
  expect_disk_full(dir.file("capped.db"), o, [] {});
}

double cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Perf numbers for docs/state.md. Opt-in, never skipped: DISABLED_ keeps it out of a plain run of
// the binary and tests/stages/state/CMakeLists.txt registers it only under the "perf" label
// (ctest -L perf). CHSYNC_STATE_PERF=N runs N spans instead of a million.
// Prints wall and process CPU time: the build box is shared, so rows per CPU-second is the
// number that does not depend on the neighbours.
TEST(StatePerf, DISABLED_InsertAndLoadMillionSpans) {
  std::size_t n = 1000000;
  if (const char* env = std::getenv("CHSYNC_STATE_PERF"); env != nullptr) {
    if (const long v = std::atol(env); v > 1) {
      n = static_cast<std::size_t>(v);
    }
  }
  const char* perf_dir = std::getenv("CHSYNC_STATE_PERF_DIR");
  TempDir dir{"chsync-state"};
  const std::string db =
      perf_dir != nullptr ? std::string(perf_dir) + "/perf.db" : dir.file("p.db");
  std::error_code ec;
  for (const char* suf : {"", "-wal", "-shm", ".lock"}) {
    fs::remove(db + suf, ec);
  }
  std::mt19937_64 rng(42);
  std::vector<std::uint64_t> keys(n);
  for (auto& k : keys) {
    k = rng();
  }
  using Clock = std::chrono::steady_clock;
  {
    StateOpenOptions o;  // default ack buffering (50 ms / 16384 keys)
    auto s = open_sqlite_state(db, o);
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    for (std::size_t i = 0; i < n; i += 512) {
      std::vector<std::uint64_t> batch(
          keys.begin() + static_cast<std::ptrdiff_t>(i),
          keys.begin() + static_cast<std::ptrdiff_t>(std::min(n, i + 512)));
      const auto id = s->begin_request("perf", batch);
      s->finish_request("perf", id, batch, true, false);
    }
    s->flush();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = cpu_seconds() - c0;
    std::printf(
        "[   PERF   ] begin+finish %zu spans, requests of 512, acks buffered (default): "
        "%.2f s = %.0f rows/s wall, %.2f s CPU = %.0f rows/CPU-s\n",
        n, secs, static_cast<double>(n) / secs, cpu, static_cast<double>(n) / cpu);

    std::mt19937_64 rng2(43);
    const auto t1 = Clock::now();
    const double c1 = cpu_seconds();
    for (std::size_t i = 0; i < n; i += 512) {
      std::vector<std::uint64_t> batch(512);
      for (auto& k : batch) {
        k = rng2();
      }
      s->mark_delivered("perf2", batch);
    }
    s->flush();
    const double secs2 = std::chrono::duration<double>(Clock::now() - t1).count();
    const double cpu2 = cpu_seconds() - c1;
    std::printf(
        "[   PERF   ] mark_delivered %zu spans in batches of 512 (1 commit/batch): "
        "%.2f s = %.0f rows/s wall, %.2f s CPU = %.0f rows/CPU-s\n",
        n, secs2, static_cast<double>(n) / secs2, cpu2, static_cast<double>(n) / cpu2);
  }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(raw,
                         "SELECT name, sum(pgsize), sum(payload), sum(unused) FROM dbstat "
                         "WHERE name LIKE 'delivered_%' GROUP BY name",
                         -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      const auto pages = static_cast<double>(sqlite3_column_int64(st, 1));
      std::printf(
          "[   PERF   ] %s: %.0f bytes of pages = %.2f bytes/span = %.1f MB per million "
          "spans (payload %lld, unused %lld)\n",
          reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), pages,
          pages / static_cast<double>(n), pages / static_cast<double>(n),
          static_cast<long long>(sqlite3_column_int64(st, 2)),
          static_cast<long long>(sqlite3_column_int64(st, 3)));
    }
  } else {
    std::printf("[   PERF   ] dbstat unavailable: %s\n", sqlite3_errmsg(raw));
  }
  sqlite3_finalize(st);
  sqlite3_close(raw);
  std::printf("[   PERF   ] file size %ju bytes for %zu spans in 2 instances\n",
              static_cast<std::uintmax_t>(fs::file_size(db)), 2 * n);
  {
    const auto t0 = Clock::now();
    StateOpenOptions o;
    auto s = open_sqlite_state(db, o);
    const double open_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const auto t1 = Clock::now();
    const double c1 = cpu_seconds();
    const auto got = s->load_delivered("perf");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
    const double cpu_ms = (cpu_seconds() - c1) * 1e3;
    std::printf(
        "[   PERF   ] open incl. quick_check: %.1f ms; load_delivered %zu keys: %.1f ms "
        "wall, %.1f ms CPU\n",
        open_ms, got.size(), ms, cpu_ms);
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    EXPECT_EQ(got, keys);
    const auto t2 = Clock::now();
    s->vacuum();
    std::printf("[   PERF   ] vacuum: %.0f ms, file size after %ju\n",
                std::chrono::duration<double, std::milli>(Clock::now() - t2).count(),
                static_cast<std::uintmax_t>(fs::file_size(db)));
  }
}

}  // namespace
}  // namespace chsync
