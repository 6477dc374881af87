// The SQLite state store's class and helpers (sqlite_state.cpp: open, detection, migrations,
// instances; sqlite_io.cpp: writes, the ack log, reads). Internal to stages/state: callers use
// open_sqlite_state (state_store.h), whose contract this implements; docs/state.md has the
// schema and the crash ordering.
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/core.h>
#include <pwd.h>
#include <unistd.h>

#include "stages/state/ack_buffer.h"
#include "stages/state/lock.h"
#include "stages/state/state_store.h"

namespace chsync::sqlite {

namespace fs = std::filesystem;
using Code = StateError::Code;

struct DbClose {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbClose>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

// Resets a statement when a use of it ends (also on throw), so no read stays open.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) noexcept : s_(s) {}
  ~StmtUse() { sqlite3_reset(s_); }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  sqlite3_stmt* get() const noexcept { return s_; }

 private:
  sqlite3_stmt* s_;
};

// Span keys are uint64; SQLite integers are int64. Stored bit-identical (two's complement).
constexpr std::int64_t to_db(std::uint64_t k) noexcept { return static_cast<std::int64_t>(k); }
constexpr std::uint64_t from_db(std::int64_t v) noexcept { return static_cast<std::uint64_t>(v); }

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string utc_stamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

inline std::string encode_keys(const std::vector<std::uint64_t>& keys) {
  std::string out(keys.size() * 8, '\0');
  for (std::size_t i = 0; i < keys.size(); ++i) {
    for (int b = 0; b < 8; ++b) {
      out[i * 8 + static_cast<std::size_t>(b)] = static_cast<char>((keys[i] >> (8 * b)) & 0xff);
    }
  }
  return out;
}

inline void decode_keys(const void* data, std::size_t bytes, std::vector<std::uint64_t>& out) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
    std::uint64_t k = 0;
    for (int b = 7; b >= 0; --b) {
      k = (k << 8) | p[i + static_cast<std::size_t>(b)];
    }
    out.push_back(k);
  }
}

// Smallest string greater than every string starting with prefix ("" when there is none).
inline std::string prefix_successor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xff) {
    s.pop_back();
  }
  if (!s.empty()) {
    s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  }
  return s;
}

// Checks the 16-byte SQLite header ourselves before SQLite opens the file: SQLite would delete or
// replay a -wal next to a non-database, and a garbage file must be left exactly as found.
inline bool has_foreign_header(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    return false;  // unreadable: SQLite reports it
  }
  char buf[16] = {};
  f.read(buf, sizeof buf);
  const auto got = f.gcount();
  if (got == 0) {
    return false;  // empty file: a fresh database
  }
  static constexpr char kMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f',
                                      'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
  return got != sizeof buf || std::memcmp(buf, kMagic, sizeof buf) != 0;
}

inline bool path_exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec)) && !ec;
}

inline StateError sqlite_error(sqlite3* db, int rc, std::string_view what,
                               const std::string& path) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if ((rc & 0xff) == SQLITE_FULL) {
    return {Code::kIo,
            fmt::format("state database {}: disk full during {} ({}); free space on that "
                        "filesystem and rerun (spans whose outcome could not be recorded "
                        "are resent and counted as repeats)",
                        path, what, msg)};
  }
  return {Code::kIo,
          fmt::format("state database {}: {} failed: {} (sqlite error {})", path, what, msg, rc)};
}

using Outcome = AckOutcome;

class SqliteState final : public AckBufferedStore {
 public:
  SqliteState(std::string path, StateOpenOptions opts);
  ~SqliteState() override;
  SqliteState(const SqliteState&) = delete;
  SqliteState& operator=(const SqliteState&) = delete;

  std::optional<FileState> file(std::string_view instance, std::string_view key) override;
  void put_files(const std::vector<FileState>& rows) override;
  std::vector<FileState> files(std::string_view instance) override;
  std::vector<std::uint64_t> load_delivered(std::string_view instance) override;
  bool settled_fits(std::string_view instance, std::uint64_t max_keys) override;
  std::vector<std::uint64_t> settled_among(std::string_view instance,
                                           const std::vector<std::uint64_t>& keys) override;
  std::vector<std::uint64_t> load_in_flight(std::string_view instance) override;
  std::vector<std::uint64_t> load_in_flight_records(std::string_view instance) override;
  std::vector<std::uint64_t> load_dead(std::string_view instance) override;
  std::uint64_t begin_request(std::string_view instance,
                              const std::vector<std::uint64_t>& span_keys) override;
  void clear_in_flight(std::string_view instance) override;
  void mark_delivered(std::string_view instance, const std::vector<std::uint64_t>& keys) override;
  void forget_spans(std::string_view instance, const std::vector<std::uint64_t>& keys) override;
  StatusTotals totals(std::string_view instance) override;
  std::vector<std::string> instances() override;
  void vacuum() override;
  void backup(const std::string& dest_path) override;
  std::uint64_t forget_files(std::string_view instance, std::string_view key_prefix) override;
  void flush() override;
  std::string path() const override { return path_; }
  std::string moved_aside_path() const override { return moved_aside_; }

 private:
  struct Instance {
    std::int64_t id = 0;
    std::string table;  // delivered_<id>
    bool has_dead = false;
    StmtPtr insert, erase, select_pos, select_neg, count;
    StmtPtr count_upto, lookup, lookup_dead;  // settled_fits / settled_among
  };

  // All below require mu_ held.
  [[noreturn]] void fail(int rc, std::string_view what) {
    last_rc_ = rc;
    throw sqlite_error(db_.get(), rc, what, path_);
  }
  void exec(const char* sql, std::string_view what);
  sqlite3_stmt* prepare(StmtPtr& slot, std::string_view sql);
  StmtPtr prepare_once(std::string_view sql);
  bool step(sqlite3_stmt* s, std::string_view what);  // true: row, false: done
  void bind_i64(sqlite3_stmt* s, int i, std::int64_t v);
  void bind_text(sqlite3_stmt* s, int i, std::string_view v);
  void bind_blob(sqlite3_stmt* s, int i, const std::string& v);
  std::int64_t query_i64(std::string_view sql, std::optional<std::int64_t> arg);

  void open_db(int flags);
  void detect();
  void migrate();
  void move_aside();

  Instance* find_instance(std::string_view name);
  Instance& intern_instance(std::string_view name);  // inside a write transaction
  void load_all_instances();
  void prepare_instance(Instance& in);

  // Runs body in one BEGIN IMMEDIATE..COMMIT. with_acks: apply the pending ack log first (all
  // writes except begin_request, whose record may safely get ahead of earlier acks).
  template <class F>
  void write_tx(std::string_view what, F&& body, bool with_acks = true);
  void apply_pending();
  void flush_locked();
  void rethrow_async_error() { acks_.rethrow_error(); }
  std::vector<std::uint64_t> load_dead_locked(std::string_view instance);
  void read_sorted_span_keys(sqlite3_stmt* pos, sqlite3_stmt* neg, std::vector<std::uint64_t>& out);
  void insert_delivered(Instance& in, const std::vector<std::uint64_t>& keys);
  void queue_ack(BufferedAck ack) override;

  std::string path_;
  StateOpenOptions opts_;
  std::string moved_aside_;
  std::unique_ptr<RunLock> lock_;  // released last, after the database is closed
  DbPtr db_;                       // statements below are finalized before it closes
  int last_rc_ = SQLITE_OK;        // code of the last failure (open-time classification)
  bool empty_ = false;             // read-only open of a database with no chsync schema yet
  std::int64_t max_request_at_open_ = 0;

  std::mutex mu_;
  AckBuffer acks_{mu_, opts_.ack_flush_interval, opts_.ack_flush_keys};  // keys sorted
  std::map<std::string, std::unique_ptr<Instance>, std::less<>> instances_;
  std::vector<std::string> new_instances_;  // interned in the open transaction
  StmtPtr begin_, commit_, rollback_;
  StmtPtr ins_in_flight_, del_in_flight_, ins_dead_, del_dead_, sel_instance_, ins_instance_;
  StmtPtr upsert_file_, sel_file_;
};

}  // namespace chsync::sqlite
