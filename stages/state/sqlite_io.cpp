// SQLite state store: writes (one transaction each, the ack log applied first), the buffered ack
// log and its flusher, and reads (each commits the ack log first, so a reader sees every
// earlier call). See sqlite_state.h.
#include "stages/state/sqlite_state.h"

namespace chsync::sqlite {

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
    acks_.committed();
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
  for (const BufferedAck& a : acks_.acks()) {
    Instance& in = intern_instance(a.instance);  // inside the transaction
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
  if (!acks_.acks().empty()) {
    write_tx("commit acknowledgements", [] {});
  }
}

void SqliteState::queue_ack(BufferedAck a) {
  std::lock_guard lk(mu_);
  rethrow_async_error();
  if (opts_.read_only) {
    throw StateError(Code::kIo, fmt::format("state database {} is open read-only", path_));
  }
  std::sort(a.keys.begin(), a.keys.end());  // B-tree order: fewer pages touched per commit
  if (acks_.add(std::move(a))) {
    flush_locked();
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
    StmtPtr d =
        prepare_once("SELECT count(*) FROM (SELECT 1 FROM dead_spans WHERE instance=? LIMIT ?)");
    bind_i64(d.get(), 1, in->id);
    bind_i64(d.get(), 2, static_cast<std::int64_t>(max_keys - n + 1));
    if (step(d.get(), "count dead"))
      n += static_cast<std::uint64_t>(sqlite3_column_int64(d.get(), 0));
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
  sqlite3_stmt* s = prepare(in->lookup, fmt::format("SELECT 1 FROM {} WHERE span=?", in->table));
  sqlite3_stmt* d = in->has_dead ? prepare(in->lookup_dead,
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
    throw StateError(std::move(e));
  }
  dest.reset();
  fs::rename(tmp, dest_path, ec);
  if (ec) {
    throw StateError(
        Code::kIo, fmt::format("cannot rename backup {} to {}: {}", tmp, dest_path, ec.message()));
  }
}

}  // namespace chsync::sqlite
