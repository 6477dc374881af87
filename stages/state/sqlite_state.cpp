// SQLite implementation of StateStore. Schema, migrations and crash ordering: docs/state.md.
//
// One connection, guarded by mu_ (reads and writes). finish_request calls are appended to an
// ordered ack log (acks_, the AckBuffer both stores share) and committed by whichever comes first:
// the flusher thread after ack_flush_interval, ack_flush_keys keys, or any other write / read /
// flush() / destruction. Every write transaction first applies the whole pending log, so durable
// state is always a prefix of the calls made.
#include "stages/state/sqlite_state.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chsync {
namespace sqlite {
namespace {

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

}  // namespace

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

SqliteState::SqliteState(std::string path, StateOpenOptions opts)
    : path_(std::move(path)), opts_(std::move(opts)) {
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
    acks_.start([this] { flush_locked(); });
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
    const std::int64_t db_bytes = guarded("PRAGMA page_count") * guarded("PRAGMA page_size");
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
  acks_.stop();
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

}  // namespace sqlite

using sqlite::SqliteState;
namespace fs = std::filesystem;

namespace {

// The running user's home directory from the password database; nullopt when there is no entry.
// getpwuid_r, not getpwuid: glibc documents getpwuid as MT-Unsafe (one static record).
std::optional<std::string> passwd_home() {
  const long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 4096);
  passwd pw{};
  passwd* found = nullptr;
  int rc = 0;
  while ((rc = ::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found)) == ERANGE)
    buf.resize(buf.size() * 2);  // a record longer than the hint: retry with more room
  if (rc != 0 || found == nullptr || found->pw_dir == nullptr) return std::nullopt;
  return std::string(found->pw_dir);
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
  } else if (std::optional<std::string> dir = passwd_home()) {
    home = std::move(*dir);
  } else {
    home = ".";
  }
  return (fs::path(home) / ".local" / "state" / "chsync" / "state.db").string();
}

}  // namespace chsync
