// SQLite implementation of StateStore. Schema, migrations and crash ordering: docs/state.md.
//
// One connection, guarded by mu_ (reads and writes). finish_request calls are appended to an
// ordered ack log (pending_) and committed by whichever comes first: the flusher thread after
// ack_flush_interval, ack_flush_keys keys, or any other write / read / flush() / destruction.
// Every write transaction first applies the whole pending log, so durable state is always a
// prefix of the calls made.
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

#include "stages/state/lock.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {

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

struct Migration {
  int version;
  const char* sql;
};

// Each step runs in its own transaction together with `PRAGMA user_version = version`.
// Per-instance delivered tables (delivered_<instance id>) are created when an instance is interned.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE instances(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE files(
  instance INTEGER NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, mtime_ms INTEGER NOT NULL,
  fingerprint TEXT NOT NULL, committed_offset INTEGER NOT NULL, lines INTEGER NOT NULL,
  complete INTEGER NOT NULL, last_sync_ms INTEGER NOT NULL, spans INTEGER NOT NULL,
  errors INTEGER NOT NULL, project TEXT NOT NULL,
  PRIMARY KEY(instance, key)) WITHOUT ROWID;
CREATE TABLE dead_spans(instance INTEGER NOT NULL, span INTEGER NOT NULL, dead_letter TEXT,
  PRIMARY KEY(instance, span)) WITHOUT ROWID;
CREATE TABLE in_flight(request_id INTEGER PRIMARY KEY AUTOINCREMENT, instance INTEGER NOT NULL,
  n INTEGER NOT NULL, created_ms INTEGER NOT NULL, keys BLOB NOT NULL);
CREATE INDEX in_flight_by_instance ON in_flight(instance);
INSERT INTO meta(key, value) VALUES('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
)sql"},
};
static_assert(std::size(kMigrations) > 0);
static_assert(kMigrations[std::size(kMigrations) - 1].version == kStateSchemaVersion);

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string utc_stamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string encode_keys(const std::vector<std::uint64_t>& keys) {
  std::string out(keys.size() * 8, '\0');
  for (std::size_t i = 0; i < keys.size(); ++i) {
    for (int b = 0; b < 8; ++b) {
      out[i * 8 + static_cast<std::size_t>(b)] = static_cast<char>((keys[i] >> (8 * b)) & 0xff);
    }
  }
  return out;
}

void decode_keys(const void* data, std::size_t bytes, std::vector<std::uint64_t>& out) {
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
std::string prefix_successor(std::string_view prefix) {
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
bool has_foreign_header(const std::string& p) {
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

bool path_exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec)) && !ec;
}

StateError sqlite_error(sqlite3* db, int rc, std::string_view what, const std::string& path) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if ((rc & 0xff) == SQLITE_FULL) {
    return StateError(Code::kIo,
                      fmt::format("state database {}: disk full during {} ({}); free space on that "
                                  "filesystem and rerun (spans whose outcome could not be recorded "
                                  "are resent and counted as repeats)",
                                  path, what, msg));
  }
  return StateError(Code::kIo, fmt::format("state database {}: {} failed: {} (sqlite error {})",
                                           path, what, msg, rc));
}

enum class Outcome : std::uint8_t { kDelivered, kDead, kFailed };

class SqliteState final : public StateStore {
 public:
  SqliteState(std::string path, const StateOpenOptions& opts);
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
  void finish_request(std::string_view instance, std::uint64_t request_id,
                      const std::vector<std::uint64_t>& span_keys, bool delivered,
                      bool dead) override;
  void finish_request_dead(std::string_view instance, std::uint64_t request_id,
                           const std::vector<std::uint64_t>& span_keys,
                           std::string_view dead_letter_ref) override;
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
  struct PendingAck {
    Instance* instance;
    std::uint64_t request_id;
    std::vector<std::uint64_t> keys;  // sorted
    Outcome outcome;
    std::string dead_ref;
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
  void rethrow_async_error();
  std::vector<std::uint64_t> load_dead_locked(std::string_view instance);
  void read_sorted_span_keys(sqlite3_stmt* pos, sqlite3_stmt* neg, std::vector<std::uint64_t>& out);
  void insert_delivered(Instance& in, const std::vector<std::uint64_t>& keys);
  void queue_ack(std::string_view instance, std::uint64_t request_id,
                 const std::vector<std::uint64_t>& keys, Outcome outcome, std::string_view ref);
  void flusher_loop();

  std::string path_;
  StateOpenOptions opts_;
  std::string moved_aside_;
  std::unique_ptr<RunLock> lock_;  // released last, after the database is closed
  DbPtr db_;                       // statements below are finalized before it closes
  int last_rc_ = SQLITE_OK;        // code of the last failure (open-time classification)
  bool empty_ = false;             // read-only open of a database with no chsync schema yet
  std::int64_t max_request_at_open_ = 0;

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Instance>, std::less<>> instances_;
  std::vector<std::string> new_instances_;  // interned in the open transaction
  StmtPtr begin_, commit_, rollback_;
  StmtPtr ins_in_flight_, del_in_flight_, ins_dead_, del_dead_, sel_instance_, ins_instance_;
  StmtPtr upsert_file_, sel_file_;
  std::vector<PendingAck> pending_;
  std::size_t pending_keys_ = 0;
  std::chrono::steady_clock::time_point pending_since_;
  std::optional<StateError> async_error_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread flusher_;
};

// ---------------------------------------------------------------------------------------------
// Low-level helpers

void SqliteState::exec(const char* sql, std::string_view what) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) {
    fail(rc, what);
  }
}

sqlite3_stmt* SqliteState::prepare(StmtPtr& slot, std::string_view sql) {
  if (!slot) {
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(s);
      fail(rc, fmt::format("prepare '{}'", sql));
    }
    slot.reset(s);
  }
  return slot.get();
}

StmtPtr SqliteState::prepare_once(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  const int rc =
      sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &s, nullptr);
  StmtPtr out(s);
  if (rc != SQLITE_OK) {
    fail(rc, fmt::format("prepare '{}'", sql));
  }
  return out;
}

bool SqliteState::step(sqlite3_stmt* s, std::string_view what) {
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  fail(rc, what);
}

void SqliteState::bind_i64(sqlite3_stmt* s, int i, std::int64_t v) {
  if (const int rc = sqlite3_bind_int64(s, i, v); rc != SQLITE_OK) {
    fail(rc, "bind");
  }
}

void SqliteState::bind_text(sqlite3_stmt* s, int i, std::string_view v) {
  if (const int rc = sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
      rc != SQLITE_OK) {
    fail(rc, "bind");
  }
}

void SqliteState::bind_blob(sqlite3_stmt* s, int i, const std::string& v) {
  if (const int rc = sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
      rc != SQLITE_OK) {
    fail(rc, "bind");
  }
}

std::int64_t SqliteState::query_i64(std::string_view sql, std::optional<std::int64_t> arg) {
  StmtPtr s = prepare_once(sql);
  if (arg) {
    bind_i64(s.get(), 1, *arg);
  }
  if (!step(s.get(), sql)) {
    return 0;
  }
  return sqlite3_column_int64(s.get(), 0);
}

// ---------------------------------------------------------------------------------------------
// Open

SqliteState::SqliteState(std::string path, const StateOpenOptions& opts)
    : path_(std::move(path)), opts_(opts) {
  if (opts_.read_only) {
    if (!path_exists(path_)) {
      throw StateError(Code::kReadOnlyMissing, fmt::format("no state database at {}", path_));
    }
    open_db(SQLITE_OPEN_READONLY);
    detect();
  } else {
    const fs::path parent = fs::path(path_).parent_path();
    if (!parent.empty()) {
      std::error_code ec;
      fs::create_directories(parent, ec);
      if (ec) {
        throw StateError(Code::kIo, fmt::format("cannot create state directory {}: {}",
                                                parent.string(), ec.message()));
      }
    }
    if (opts_.take_lock) {
      lock_ = std::make_unique<RunLock>(path_ + ".lock");
    }
    if (opts_.rebuild) {
      move_aside();
    }
    open_db(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    detect();
    // journal_mode returns the resulting mode as a row.
    {
      StmtPtr s = prepare_once("PRAGMA journal_mode=WAL");
      if (!step(s.get(), "PRAGMA journal_mode=WAL") ||
          std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0))) !=
              "wal") {
        throw StateError(Code::kIo, fmt::format("state database {}: cannot enable WAL", path_));
      }
    }
    exec("PRAGMA synchronous=NORMAL", "PRAGMA synchronous");
    if (opts_.max_page_count > 0) {
      const auto sql = fmt::format("PRAGMA max_page_count={}", opts_.max_page_count);
      StmtPtr s = prepare_once(sql);
      step(s.get(), sql);
    }
    migrate();
  }
  exec(fmt::format("PRAGMA cache_size=-{}", std::max<std::int64_t>(opts_.cache_kib, 64)).c_str(),
       "PRAGMA cache_size");
  if (!empty_) {
    max_request_at_open_ = query_i64("SELECT coalesce(max(request_id), 0) FROM in_flight", {});
  }
  if (!opts_.read_only) {
    flusher_ = std::thread([this] { flusher_loop(); });
  }
}

void SqliteState::open_db(int flags) {
  if (has_foreign_header(path_)) {
    throw StateError(Code::kCorrupt,
                     fmt::format("state database {} is not an SQLite database (bad header); "
                                 "rerun with --rebuild-state to move it aside and start over",
                                 path_));
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path_.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
      throw StateError(Code::kCorrupt,
                       fmt::format("state database {} is not a valid SQLite database ({}); "
                                   "rerun with --rebuild-state to move it aside and start over",
                                   path_, sqlite3_errstr(rc)));
    }
    throw sqlite_error(raw, rc, "open", path_);
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, static_cast<int>(opts_.busy_timeout.count()));
}

// Classifies the file: fresh, ours (maybe older schema), foreign, newer, corrupt.
void SqliteState::detect() {
  auto corrupt = [&](std::string_view detail) {
    return StateError(Code::kCorrupt,
                      fmt::format("state database {} is corrupt ({}); rerun with --rebuild-state "
                                  "to move it aside and start over (everything is sent again)",
                                  path_, detail));
  };
  auto guarded = [&](std::string_view sql) -> std::int64_t {
    try {
      return query_i64(sql, {});
    } catch (const StateError&) {
      const int rc = last_rc_ & 0xff;
      if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
        throw corrupt(sqlite3_errstr(last_rc_));
      }
      throw;
    }
  };
  const std::int64_t app_id = guarded("PRAGMA application_id");
  const std::int64_t version = guarded("PRAGMA user_version");
  const std::int64_t objects = guarded("SELECT count(*) FROM sqlite_schema");
  if (app_id == 0 && version == 0 && objects == 0) {
    empty_ = opts_.read_only;
    return;  // fresh (or empty file): migrations create everything
  }
  if (app_id != kStateApplicationId) {
    throw StateError(Code::kForeign,
                     fmt::format("{} is not a chsync state database (application_id {:#x}, {} "
                                 "schema objects); pass another --db, or --rebuild-state to move "
                                 "it aside",
                                 path_, static_cast<std::uint32_t>(app_id), objects));
  }
  if (version > kStateSchemaVersion) {
    throw StateError(Code::kNewerSchema,
                     fmt::format("state database {} has schema version {}, newer than this chsync "
                                 "supports ({}); use a newer chsync",
                                 path_, version, kStateSchemaVersion));
  }
  StmtPtr s;
  std::string result;
  try {
    // quick_check reads every page: ~1.2 CPU-s (and 300 MB of I/O) at 20 M delivered spans, which
    // a rerun touching one file must not pay. Past full_check_max_bytes only the small tables are
    // checked (SQLite >= 3.33 takes a table name); damage in a delivered_<id> table still
    // surfaces as an I/O error on the first read or write of the damaged page.
    const std::int64_t db_bytes =
        guarded("PRAGMA page_count") * guarded("PRAGMA page_size");
    std::vector<std::string> checks;
    if (db_bytes <= opts_.full_check_max_bytes) {
      checks.emplace_back("PRAGMA quick_check(1)");
    } else {
      for (const char* t : {"meta", "instances", "files", "dead_spans", "in_flight"})
        checks.push_back(fmt::format("PRAGMA quick_check({})", t));
    }
    for (const auto& sql : checks) {
      s = prepare_once(sql);
      if (step(s.get(), "PRAGMA quick_check")) {
        const auto* t = sqlite3_column_text(s.get(), 0);
        result = t != nullptr ? reinterpret_cast<const char*>(t) : "";
      }
      if (result != "ok") break;
    }
  } catch (const StateError&) {
    const int rc = last_rc_ & 0xff;
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
      throw corrupt(sqlite3_errstr(last_rc_));
    }
    throw;
  }
  if (result != "ok") {
    throw corrupt(fmt::format("quick_check: {}", result));
  }
  if (opts_.read_only && version < kStateSchemaVersion) {
    // Only version 1 exists so far; a read-only open never migrates.
    empty_ = version == 0;
  }
}

void SqliteState::migrate() {
  const std::int64_t current = query_i64("PRAGMA user_version", {});
  for (const Migration& m : kMigrations) {
    if (m.version <= current) {
      continue;
    }
    const std::string what = fmt::format("migration to schema {}", m.version);
    exec("BEGIN IMMEDIATE", what);
    try {
      exec(m.sql, what);
      exec(fmt::format("PRAGMA application_id={}", kStateApplicationId).c_str(), what);
      exec(fmt::format("PRAGMA user_version={}", m.version).c_str(), what);
      exec(fmt::format("INSERT OR REPLACE INTO meta(key, value) VALUES('schema', '{}')", m.version)
               .c_str(),
           what);
      exec("COMMIT", what);
    } catch (...) {
      if (sqlite3_get_autocommit(db_.get()) == 0) {
        sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      }
      throw;
    }
  }
}

void SqliteState::move_aside() {
  if (!path_exists(path_)) {
    return;
  }
  std::string dest = path_ + ".broken-" + utc_stamp();
  for (int n = 1; path_exists(dest); ++n) {
    dest = fmt::format("{}.broken-{}-{}", path_, utc_stamp(), n);
  }
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string from = path_ + suffix;
    if (!path_exists(from)) {
      continue;
    }
    std::error_code ec;
    fs::rename(from, dest + suffix, ec);
    if (ec) {
      throw StateError(Code::kIo, fmt::format("cannot move {} aside to {}: {}", from, dest + suffix,
                                              ec.message()));
    }
  }
  moved_aside_ = dest;
}

SqliteState::~SqliteState() {
  if (flusher_.joinable()) {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    flusher_.join();
  }
  std::lock_guard lk(mu_);
  if (!opts_.read_only) {
    try {
      flush_locked();
    } catch (const StateError&) {
      // Destruction cannot report: unrecorded acks leave their in-flight records (counted repeats).
    }
  }
  instances_.clear();
  // Remaining statements are finalized by member destruction before db_ closes.
}

// ---------------------------------------------------------------------------------------------
// Instances

void SqliteState::prepare_instance(Instance& in) {
  in.table = fmt::format("delivered_{}", in.id);
  in.has_dead = query_i64("SELECT EXISTS(SELECT 1 FROM dead_spans WHERE instance=?)", in.id) != 0;
}

SqliteState::Instance* SqliteState::find_instance(std::string_view name) {
  if (auto it = instances_.find(name); it != instances_.end()) {
    return it->second.get();
  }
  if (empty_) {
    return nullptr;
  }
  sqlite3_stmt* s = prepare(sel_instance_, "SELECT id FROM instances WHERE name=?");
  StmtUse use(s);
  bind_text(s, 1, name);
  if (!step(s, "find instance")) {
    return nullptr;
  }
  auto in = std::make_unique<Instance>();
  in->id = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  prepare_instance(*in);
  Instance* raw = in.get();
  instances_.emplace(std::string(name), std::move(in));
  return raw;
}

SqliteState::Instance& SqliteState::intern_instance(std::string_view name) {
  if (Instance* in = find_instance(name)) {
    return *in;
  }
  auto in = std::make_unique<Instance>();
  {
    sqlite3_stmt* s = prepare(ins_instance_, "INSERT INTO instances(name) VALUES(?)");
    StmtUse use(s);
    bind_text(s, 1, name);
    step(s, "add instance");
    in->id = sqlite3_last_insert_rowid(db_.get());
  }
  // The span ID is the rowid: 8-byte key, no separate index (see docs/state.md for sizes).
  exec(fmt::format("CREATE TABLE IF NOT EXISTS delivered_{}(span INTEGER PRIMARY KEY)", in->id)
           .c_str(),
       "create delivered table");
  prepare_instance(*in);
  Instance& ref = *in;
  instances_.emplace(std::string(name), std::move(in));
  new_instances_.emplace_back(name);
  return ref;
}

void SqliteState::load_all_instances() {
  if (empty_) {
    return;
  }
  StmtPtr s = prepare_once("SELECT name FROM instances");
  std::vector<std::string> names;
  while (step(s.get(), "list instances")) {
    names.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)),
                       static_cast<std::size_t>(sqlite3_column_bytes(s.get(), 0)));
  }
  s.reset();
  for (const auto& n : names) {
    find_instance(n);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

template <class F>
void SqliteState::write_tx(std::string_view what, F&& body, bool with_acks) {
  if (opts_.read_only) {
    throw StateError(Code::kIo, fmt::format("state database {} is open read-only", path_));
  }
  {
    sqlite3_stmt* b = prepare(begin_, "BEGIN IMMEDIATE");
    StmtUse use(b);
    step(b, fmt::format("{} (begin)", what));
  }
  try {
    if (with_acks) {
      apply_pending();
    }
    body();
    sqlite3_stmt* c = prepare(commit_, "COMMIT");
    StmtUse use(c);
    step(c, fmt::format("{} (commit)", what));
  } catch (...) {
    if (sqlite3_get_autocommit(db_.get()) == 0) {
      sqlite3_stmt* r = prepare(rollback_, "ROLLBACK");
      sqlite3_step(r);
      sqlite3_reset(r);
    }
    for (const auto& n : new_instances_) {
      instances_.erase(n);
    }
    new_instances_.clear();
    throw;
  }
  new_instances_.clear();
  if (with_acks) {
    pending_.clear();
    pending_keys_ = 0;
  }
}

void SqliteState::insert_delivered(Instance& in, const std::vector<std::uint64_t>& keys) {
  sqlite3_stmt* s =
      prepare(in.insert, fmt::format("INSERT OR IGNORE INTO {}(span) VALUES(?)", in.table));
  for (const std::uint64_t k : keys) {
    StmtUse use(s);
    bind_i64(s, 1, to_db(k));
    step(s, "record delivered span");
  }
  if (in.has_dead) {  // a replayed dead span stops being dead
    sqlite3_stmt* d = prepare(del_dead_, "DELETE FROM dead_spans WHERE instance=? AND span=?");
    for (const std::uint64_t k : keys) {
      StmtUse use(d);
      bind_i64(d, 1, in.id);
      bind_i64(d, 2, to_db(k));
      step(d, "clear dead span");
    }
  }
}

void SqliteState::apply_pending() {
  for (const PendingAck& a : pending_) {
    Instance& in = *a.instance;
    if (a.outcome == Outcome::kDelivered) {
      insert_delivered(in, a.keys);
    } else if (a.outcome == Outcome::kDead) {
      sqlite3_stmt* s =
          prepare(ins_dead_,
                  "INSERT OR REPLACE INTO dead_spans(instance, span, dead_letter) VALUES(?,?,?)");
      for (const std::uint64_t k : a.keys) {
        StmtUse use(s);
        bind_i64(s, 1, in.id);
        bind_i64(s, 2, to_db(k));
        if (a.dead_ref.empty()) {
          sqlite3_bind_null(s, 3);
        } else {
          bind_text(s, 3, a.dead_ref);
        }
        step(s, "record dead span");
      }
      in.has_dead = in.has_dead || !a.keys.empty();
    }
    sqlite3_stmt* s = prepare(del_in_flight_, "DELETE FROM in_flight WHERE request_id=?");
    StmtUse use(s);
    bind_i64(s, 1, static_cast<std::int64_t>(a.request_id));
    step(s, "clear in-flight record");
  }
}

void SqliteState::flush_locked() {
  if (!pending_.empty()) {
    write_tx("commit acknowledgements", [] {});
  }
}

void SqliteState::rethrow_async_error() {
  if (async_error_) {
    StateError e = std::move(*async_error_);
    async_error_.reset();
    throw e;
  }
}

void SqliteState::flusher_loop() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    if (pending_.empty()) {
      cv_.wait(lk, [&] { return stop_ || !pending_.empty(); });
      continue;
    }
    const auto deadline = pending_since_ + opts_.ack_flush_interval;
    if (cv_.wait_until(lk, deadline, [&] { return stop_; })) {
      break;
    }
    if (pending_.empty() ||
        std::chrono::steady_clock::now() < pending_since_ + opts_.ack_flush_interval) {
      continue;
    }
    try {
      flush_locked();
    } catch (const StateError& e) {
      async_error_ = e;  // reported by the next call; the acks stay pending and are retried
      pending_since_ = std::chrono::steady_clock::now();
    }
  }
}

void SqliteState::queue_ack(std::string_view instance, std::uint64_t request_id,
                            const std::vector<std::uint64_t>& keys, Outcome outcome,
                            std::string_view ref) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  Instance* in = find_instance(instance);
  if (in == nullptr) {
    write_tx("add instance", [&] { in = &intern_instance(instance); });
  }
  PendingAck a{in, request_id, keys, outcome, std::string(ref)};
  std::sort(a.keys.begin(), a.keys.end());
  if (outcome == Outcome::kFailed) {
    a.keys.clear();
  }
  if (pending_.empty()) {
    pending_since_ = std::chrono::steady_clock::now();
  }
  pending_keys_ += a.keys.size() + 1;
  pending_.push_back(std::move(a));
  if (opts_.ack_flush_interval.count() <= 0 || pending_keys_ >= opts_.ack_flush_keys) {
    flush_locked();
  } else if (pending_.size() == 1) {
    cv_.notify_one();
  }
}

std::uint64_t SqliteState::begin_request(std::string_view instance,
                                         const std::vector<std::uint64_t>& span_keys) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  const std::string blob = encode_keys(span_keys);
  std::int64_t id = 0;
  write_tx(
      "record in-flight request",
      [&] {
        Instance& in = intern_instance(instance);
        sqlite3_stmt* s = prepare(
            ins_in_flight_, "INSERT INTO in_flight(instance, n, created_ms, keys) VALUES(?,?,?,?)");
        StmtUse use(s);
        bind_i64(s, 1, in.id);
        bind_i64(s, 2, static_cast<std::int64_t>(span_keys.size()));
        bind_i64(s, 3, now_ms());
        bind_blob(s, 4, blob);
        step(s, "record in-flight request");
        id = sqlite3_last_insert_rowid(db_.get());
      },
      /*with_acks=*/false);
  return static_cast<std::uint64_t>(id);
}

void SqliteState::finish_request(std::string_view instance, std::uint64_t request_id,
                                 const std::vector<std::uint64_t>& span_keys, bool delivered,
                                 bool dead) {
  const Outcome o = delivered ? Outcome::kDelivered : dead ? Outcome::kDead : Outcome::kFailed;
  queue_ack(instance, request_id, span_keys, o, {});
}

void SqliteState::finish_request_dead(std::string_view instance, std::uint64_t request_id,
                                      const std::vector<std::uint64_t>& span_keys,
                                      std::string_view dead_letter_ref) {
  queue_ack(instance, request_id, span_keys, Outcome::kDead, dead_letter_ref);
}

void SqliteState::clear_in_flight(std::string_view instance) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  write_tx("clear in-flight records", [&] {
    if (Instance* in = find_instance(instance)) {
      StmtPtr s = prepare_once("DELETE FROM in_flight WHERE instance=? AND request_id<=?");
      bind_i64(s.get(), 1, in->id);
      bind_i64(s.get(), 2, max_request_at_open_);
      step(s.get(), "clear in-flight records");
    }
  });
}

void SqliteState::mark_delivered(std::string_view instance,
                                 const std::vector<std::uint64_t>& keys) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  std::vector<std::uint64_t> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  write_tx("mark delivered", [&] { insert_delivered(intern_instance(instance), sorted); });
}

void SqliteState::forget_spans(std::string_view instance, const std::vector<std::uint64_t>& keys) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  write_tx("forget spans", [&] {
    Instance* in = find_instance(instance);
    if (in == nullptr) {
      return;
    }
    sqlite3_stmt* s = prepare(in->erase, fmt::format("DELETE FROM {} WHERE span=?", in->table));
    sqlite3_stmt* d = prepare(del_dead_, "DELETE FROM dead_spans WHERE instance=? AND span=?");
    for (const std::uint64_t k : keys) {
      {
        StmtUse use(s);
        bind_i64(s, 1, to_db(k));
        step(s, "forget span");
      }
      StmtUse use(d);
      bind_i64(d, 1, in->id);
      bind_i64(d, 2, to_db(k));
      step(d, "forget dead span");
    }
  });
}

void SqliteState::put_files(const std::vector<FileState>& rows) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  write_tx("store file rows", [&] {
    sqlite3_stmt* s =
        prepare(upsert_file_,
                "INSERT OR REPLACE INTO files(instance, key, size, mtime_ms, fingerprint, "
                "committed_offset, lines, complete, last_sync_ms, spans, errors, project) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    for (const FileState& r : rows) {
      Instance& in = intern_instance(r.instance);
      StmtUse use(s);
      bind_i64(s, 1, in.id);
      bind_text(s, 2, r.key);
      bind_i64(s, 3, static_cast<std::int64_t>(r.size));
      bind_i64(s, 4, r.mtime_ms);
      bind_text(s, 5, r.fingerprint);
      bind_i64(s, 6, static_cast<std::int64_t>(r.committed_offset));
      bind_i64(s, 7, static_cast<std::int64_t>(r.lines));
      bind_i64(s, 8, r.complete ? 1 : 0);
      bind_i64(s, 9, r.last_sync_ms);
      bind_i64(s, 10, static_cast<std::int64_t>(r.spans));
      bind_i64(s, 11, static_cast<std::int64_t>(r.errors));
      bind_text(s, 12, r.project);
      step(s, "store file row");
    }
  });
}

std::uint64_t SqliteState::forget_files(std::string_view instance, std::string_view key_prefix) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  std::uint64_t n = 0;
  write_tx("forget files", [&] {
    Instance* in = find_instance(instance);
    if (in == nullptr) {
      return;
    }
    const std::string hi = prefix_successor(key_prefix);
    StmtPtr s =
        prepare_once(hi.empty() ? "DELETE FROM files WHERE instance=?1 AND key>=?2"
                                : "DELETE FROM files WHERE instance=?1 AND key>=?2 AND key<?3");
    bind_i64(s.get(), 1, in->id);
    bind_text(s.get(), 2, key_prefix);
    if (!hi.empty()) {
      bind_text(s.get(), 3, hi);
    }
    step(s.get(), "forget files");
    n = static_cast<std::uint64_t>(sqlite3_changes64(db_.get()));
  });
  return n;
}

void SqliteState::flush() {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  flush_locked();
}

// ---------------------------------------------------------------------------------------------
// Reading (each flushes pending acks first, so a reader sees every earlier call)

FileState read_file_row(sqlite3_stmt* s, int first_col, std::string instance) {
  auto text = [&](int c) {
    const auto* t = sqlite3_column_text(s, c);
    return t == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(t),
                                      static_cast<std::size_t>(sqlite3_column_bytes(s, c)));
  };
  auto u64 = [&](int c) { return static_cast<std::uint64_t>(sqlite3_column_int64(s, c)); };
  const int c = first_col;
  FileState f;
  f.instance = std::move(instance);
  f.key = text(c);
  f.size = u64(c + 1);
  f.mtime_ms = sqlite3_column_int64(s, c + 2);
  f.fingerprint = text(c + 3);
  f.committed_offset = u64(c + 4);
  f.lines = u64(c + 5);
  f.complete = sqlite3_column_int64(s, c + 6) != 0;
  f.last_sync_ms = sqlite3_column_int64(s, c + 7);
  f.spans = u64(c + 8);
  f.errors = u64(c + 9);
  f.project = text(c + 10);
  return f;
}

constexpr std::string_view kFileCols =
    "key, size, mtime_ms, fingerprint, committed_offset, lines, complete, last_sync_ms, spans, "
    "errors, project";

std::optional<FileState> SqliteState::file(std::string_view instance, std::string_view key) {
  std::lock_guard lk(mu_);
  flush_locked();
  Instance* in = find_instance(instance);
  if (in == nullptr) {
    return std::nullopt;
  }
  sqlite3_stmt* s =
      prepare(sel_file_, fmt::format("SELECT {} FROM files WHERE instance=? AND key=?", kFileCols));
  StmtUse use(s);
  bind_i64(s, 1, in->id);
  bind_text(s, 2, key);
  if (!step(s, "read file row")) {
    return std::nullopt;
  }
  return read_file_row(s, 0, std::string(instance));
}

std::vector<FileState> SqliteState::files(std::string_view instance) {
  std::lock_guard lk(mu_);
  flush_locked();
  std::vector<FileState> out;
  if (empty_) {
    return out;
  }
  if (instance.empty()) {
    StmtPtr s = prepare_once(fmt::format(
        "SELECT i.name, {} FROM files f JOIN instances i ON i.id=f.instance ORDER BY i.name, key",
        kFileCols));
    while (step(s.get(), "list files")) {
      out.push_back(read_file_row(s.get(), 1,
                                  reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0))));
    }
    return out;
  }
  Instance* in = find_instance(instance);
  if (in == nullptr) {
    return out;
  }
  StmtPtr s =
      prepare_once(fmt::format("SELECT {} FROM files WHERE instance=? ORDER BY key", kFileCols));
  bind_i64(s.get(), 1, in->id);
  while (step(s.get(), "list files")) {
    out.push_back(read_file_row(s.get(), 0, std::string(instance)));
  }
  return out;
}

// pos selects keys >= 0 and neg keys < 0 (as int64), each ascending; unsigned order is pos, neg.
void SqliteState::read_sorted_span_keys(sqlite3_stmt* pos, sqlite3_stmt* neg,
                                        std::vector<std::uint64_t>& out) {
  for (sqlite3_stmt* s : {pos, neg}) {
    StmtUse use(s);
    while (step(s, "read span keys")) {
      out.push_back(from_db(sqlite3_column_int64(s, 0)));
    }
  }
}

std::vector<std::uint64_t> SqliteState::load_dead(std::string_view instance) {
  std::lock_guard lk(mu_);
  return load_dead_locked(instance);
}

std::vector<std::uint64_t> SqliteState::load_dead_locked(std::string_view instance) {
  flush_locked();
  std::vector<std::uint64_t> out;
  Instance* in = find_instance(instance);
  if (in == nullptr || !in->has_dead) {
    return out;
  }
  StmtPtr pos =
      prepare_once("SELECT span FROM dead_spans WHERE instance=? AND span>=0 ORDER BY span");
  StmtPtr neg =
      prepare_once("SELECT span FROM dead_spans WHERE instance=? AND span<0 ORDER BY span");
  bind_i64(pos.get(), 1, in->id);
  bind_i64(neg.get(), 1, in->id);
  read_sorted_span_keys(pos.get(), neg.get(), out);
  return out;
}

std::vector<std::uint64_t> SqliteState::load_delivered(std::string_view instance) {
  std::lock_guard lk(mu_);
  std::vector<std::uint64_t> dead = load_dead_locked(instance);
  std::vector<std::uint64_t> out;
  Instance* in = find_instance(instance);
  if (in == nullptr) {
    return out;
  }
  sqlite3_stmt* count = prepare(in->count, fmt::format("SELECT count(*) FROM {}", in->table));
  {
    StmtUse use(count);
    if (step(count, "count delivered")) {
      out.reserve(static_cast<std::size_t>(sqlite3_column_int64(count, 0)) + dead.size());
    }
  }
  sqlite3_stmt* pos = prepare(
      in->select_pos, fmt::format("SELECT span FROM {} WHERE span>=0 ORDER BY span", in->table));
  sqlite3_stmt* neg = prepare(
      in->select_neg, fmt::format("SELECT span FROM {} WHERE span<0 ORDER BY span", in->table));
  read_sorted_span_keys(pos, neg, out);
  if (!dead.empty()) {
    const auto mid = out.insert(out.end(), dead.begin(), dead.end());
    std::inplace_merge(out.begin(), mid, out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  }
  return out;
}

bool SqliteState::settled_fits(std::string_view instance, std::uint64_t max_keys) {
  std::lock_guard lk(mu_);
  Instance* in = find_instance(instance);
  if (in == nullptr) return true;
  // count(*) over the whole table would read every page of a large state; this stops after
  // max_keys + 1 rows. Dead keys count too (load_delivered returns both).
  sqlite3_stmt* s = prepare(
      in->count_upto, fmt::format("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT ?)", in->table));
  std::uint64_t n = 0;
  {
    StmtUse use(s);
    bind_i64(s, 1, static_cast<std::int64_t>(std::min<std::uint64_t>(max_keys, INT64_MAX - 1) + 1));
    if (step(s, "count delivered")) n = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  }
  if (n > max_keys) return false;
  if (in->has_dead) {
    StmtPtr d = prepare_once(
        "SELECT count(*) FROM (SELECT 1 FROM dead_spans WHERE instance=? LIMIT ?)");
    bind_i64(d.get(), 1, in->id);
    bind_i64(d.get(), 2, static_cast<std::int64_t>(max_keys - n + 1));
    if (step(d.get(), "count dead")) n += static_cast<std::uint64_t>(sqlite3_column_int64(d.get(), 0));
  }
  return n <= max_keys;
}

std::vector<std::uint64_t> SqliteState::settled_among(std::string_view instance,
                                                      const std::vector<std::uint64_t>& keys) {
  std::lock_guard lk(mu_);
  std::vector<std::uint64_t> out;
  Instance* in = find_instance(instance);
  if (in == nullptr || keys.empty()) return out;
  // Rowid point look-ups (~1-5 us each; BENCHMARKS.md "Delivered set"). The keys arrive sorted,
  // so one bundle's look-ups walk the B-tree in two ascending runs (non-negative rowids, then
  // negative ones) and share the interior pages in SQLite's page cache.
  sqlite3_stmt* s =
      prepare(in->lookup, fmt::format("SELECT 1 FROM {} WHERE span=?", in->table));
  sqlite3_stmt* d = in->has_dead
                        ? prepare(in->lookup_dead,
                                  "SELECT 1 FROM dead_spans WHERE instance=? AND span=?")
                        : nullptr;
  for (std::uint64_t k : keys) {
    bool hit = false;
    {
      StmtUse use(s);
      bind_i64(s, 1, to_db(k));
      hit = step(s, "look up delivered span");
    }
    if (!hit && d != nullptr) {
      StmtUse use(d);
      bind_i64(d, 1, in->id);
      bind_i64(d, 2, to_db(k));
      hit = step(d, "look up dead span");
    }
    if (hit) out.push_back(k);
  }
  return out;
}

std::vector<std::uint64_t> SqliteState::load_in_flight(std::string_view instance) {
  std::vector<std::uint64_t> out = load_in_flight_records(instance);
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::uint64_t> SqliteState::load_in_flight_records(std::string_view instance) {
  std::lock_guard lk(mu_);
  flush_locked();
  std::vector<std::uint64_t> out;
  Instance* in = find_instance(instance);
  if (in == nullptr) {
    return out;
  }
  StmtPtr s = prepare_once("SELECT keys FROM in_flight WHERE instance=? AND request_id<=?");
  bind_i64(s.get(), 1, in->id);
  bind_i64(s.get(), 2, max_request_at_open_);
  while (step(s.get(), "read in-flight records")) {
    decode_keys(sqlite3_column_blob(s.get(), 0),
                static_cast<std::size_t>(sqlite3_column_bytes(s.get(), 0)), out);
  }
  std::sort(out.begin(), out.end());
  return out;
}

StatusTotals SqliteState::totals(std::string_view instance) {
  std::lock_guard lk(mu_);
  flush_locked();
  StatusTotals t;
  if (empty_) {
    return t;
  }
  std::vector<Instance*> scope;
  if (instance.empty()) {
    load_all_instances();
    for (auto& [name, in] : instances_) {
      scope.push_back(in.get());
    }
  } else if (Instance* in = find_instance(instance)) {
    scope.push_back(in);
  } else {
    return t;
  }
  const char* where = instance.empty() ? "" : " WHERE instance=?1";
  const std::optional<std::int64_t> arg =
      instance.empty() ? std::nullopt : std::optional<std::int64_t>(scope.front()->id);
  {
    StmtPtr s =
        prepare_once(fmt::format("SELECT count(*), coalesce(sum(size),0), coalesce(sum(errors),0), "
                                 "coalesce(max(last_sync_ms),0) FROM files{}",
                                 where));
    if (arg) {
      bind_i64(s.get(), 1, *arg);
    }
    if (step(s.get(), "file totals")) {
      t.files = static_cast<std::uint64_t>(sqlite3_column_int64(s.get(), 0));
      t.bytes = static_cast<std::uint64_t>(sqlite3_column_int64(s.get(), 1));
      t.file_errors = static_cast<std::uint64_t>(sqlite3_column_int64(s.get(), 2));
      t.last_sync_ms = sqlite3_column_int64(s.get(), 3);
    }
  }
  t.spans_dead = static_cast<std::uint64_t>(
      query_i64(fmt::format("SELECT count(*) FROM dead_spans{}", where), arg));
  t.spans_in_flight = static_cast<std::uint64_t>(
      query_i64(fmt::format("SELECT coalesce(sum(n),0) FROM in_flight{}", where), arg));
  for (Instance* in : scope) {
    sqlite3_stmt* c = prepare(in->count, fmt::format("SELECT count(*) FROM {}", in->table));
    StmtUse use(c);
    if (step(c, "count delivered")) {
      t.spans_delivered += static_cast<std::uint64_t>(sqlite3_column_int64(c, 0));
    }
  }
  return t;
}

std::vector<std::string> SqliteState::instances() {
  std::lock_guard lk(mu_);
  flush_locked();
  std::vector<std::string> out;
  if (empty_) {
    return out;
  }
  StmtPtr s = prepare_once("SELECT name FROM instances ORDER BY name");
  while (step(s.get(), "list instances")) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)),
                     static_cast<std::size_t>(sqlite3_column_bytes(s.get(), 0)));
  }
  return out;
}

void SqliteState::vacuum() {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  flush_locked();
  if (opts_.read_only) {
    throw StateError(Code::kIo, fmt::format("state database {} is open read-only", path_));
  }
  exec("VACUUM", "vacuum");
  exec("PRAGMA wal_checkpoint(TRUNCATE)", "checkpoint");
}

void SqliteState::backup(const std::string& dest_path) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  flush_locked();
  const std::string tmp = dest_path + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  sqlite3* raw = nullptr;
  const int orc =
      sqlite3_open_v2(tmp.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  DbPtr dest(raw);
  if (orc != SQLITE_OK) {
    throw sqlite_error(raw, orc, "open backup destination", tmp);
  }
  sqlite3_backup* b = sqlite3_backup_init(dest.get(), "main", db_.get(), "main");
  if (b == nullptr) {
    throw sqlite_error(dest.get(), sqlite3_errcode(dest.get()), "backup", tmp);
  }
  const int src = sqlite3_backup_step(b, -1);
  const int frc = sqlite3_backup_finish(b);
  if (src != SQLITE_DONE || frc != SQLITE_OK) {
    const int rc = frc != SQLITE_OK ? frc : src;
    StateError e = sqlite_error(dest.get(), rc, "backup", tmp);
    dest.reset();
    fs::remove(tmp, ec);
    throw e;
  }
  dest.reset();
  fs::rename(tmp, dest_path, ec);
  if (ec) {
    throw StateError(
        Code::kIo, fmt::format("cannot rename backup {} to {}: {}", tmp, dest_path, ec.message()));
  }
}

}  // namespace

std::unique_ptr<StateStore> open_sqlite_state(const std::string& path,
                                              const StateOpenOptions& opts) {
  return std::make_unique<SqliteState>(path, opts);
}

std::string default_state_path() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') {
    return (fs::path(xdg) / "chsync" / "state.db").string();
  }
  std::string home;
  if (const char* h = std::getenv("HOME"); h != nullptr && h[0] != '\0') {
    home = h;
  } else if (const passwd* pw = ::getpwuid(::getuid()); pw != nullptr && pw->pw_dir != nullptr) {
    home = pw->pw_dir;
  } else {
    home = ".";
  }
  return (fs::path(home) / ".local" / "state" / "chsync" / "state.db").string();
}

}  // namespace chsync
