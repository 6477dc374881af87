// PostgreSQL state store and work table (state_store.h, work_table.h; docs/scaleout.md).
//
// Tables (schema version kPgSchemaVersion, created/migrated under an advisory lock so that
// several workers starting at once do not race):
//   chsync_meta(key, value)                      application, schema_version, created_at
//   chsync_files(instance, key, ...)             one row per file, as in SQLite
//   chsync_spans(instance, span, dead, dead_letter)  delivered and dead span keys
//   chsync_in_flight(request_id, instance, owner, keys bigint[])  one row per request
//   chsync_workers(run_id, worker_id, ...)       one row per run, heartbeat and progress
//   chsync_work(work_group, unit_key, ...)       leases and fence tokens
// Span keys are unsigned 64-bit; PostgreSQL has signed bigint, so they are stored bit-cast.
//
// Writes: finish_request is buffered (ack_flush_interval / ack_flush_keys, committed by a flusher
// thread or the next write) and committed in one transaction on the writer connection, which
// also serialises every other write, so the crash ordering of state_store.h holds here too.
// Reads, claims and heartbeats use pooled connections and never wait for the writer.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>

#include "stages/state/pg_state.h"

namespace chsync {
namespace pg {
namespace {

constexpr int kPgSchemaVersion = 2;

struct PgMigration {
  int version;
  const char* sql;
};
constexpr PgMigration kPgMigrations[] = {
    {1, R"sql(
CREATE TABLE chsync_files(
  instance text NOT NULL, key text NOT NULL, size bigint NOT NULL, mtime_ms bigint NOT NULL,
  fingerprint text NOT NULL, committed_offset bigint NOT NULL, lines bigint NOT NULL,
  complete boolean NOT NULL, last_sync_ms bigint NOT NULL, spans bigint NOT NULL,
  errors bigint NOT NULL, project text NOT NULL, PRIMARY KEY(instance, key));
CREATE TABLE chsync_spans(instance text NOT NULL, span bigint NOT NULL,
  dead boolean NOT NULL DEFAULT false, dead_letter text, PRIMARY KEY(instance, span));
CREATE TABLE chsync_in_flight(request_id bigserial PRIMARY KEY, instance text NOT NULL,
  owner text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), keys bigint[] NOT NULL);
CREATE INDEX chsync_in_flight_by_instance ON chsync_in_flight(instance, owner);
CREATE TABLE chsync_workers(run_id text PRIMARY KEY, worker_id text NOT NULL,
  work_group text NOT NULL, host text NOT NULL, pid bigint NOT NULL, status text NOT NULL,
  lease_ms bigint NOT NULL, started_at timestamptz NOT NULL, heartbeat_at timestamptz NOT NULL,
  finished_at timestamptz, units_claimed bigint NOT NULL DEFAULT 0,
  units_done bigint NOT NULL DEFAULT 0, spans_sent bigint NOT NULL DEFAULT 0,
  bytes_read bigint NOT NULL DEFAULT 0);
CREATE TABLE chsync_work(work_group text NOT NULL, unit_key text NOT NULL,
  signature text NOT NULL, seq bigint NOT NULL, status text NOT NULL, owner text,
  lease_until timestamptz, attempts integer NOT NULL DEFAULT 0, claimed_at timestamptz,
  done_at timestamptz, PRIMARY KEY(work_group, unit_key));
CREATE INDEX chsync_work_open ON chsync_work(work_group, seq) WHERE status <> 'done';
)sql"},
    // Fencing (work_table.h): a token per unit that every claim increases.
    {2, R"sql(
ALTER TABLE chsync_work ADD COLUMN fence bigint NOT NULL DEFAULT 0;
)sql"},
};
static_assert(kPgMigrations[std::size(kPgMigrations) - 1].version == kPgSchemaVersion);

}  // namespace

PgState::PgState(std::string url, StateOpenOptions opts)
    : url_(std::move(url)), shown_(redact_url(url_)), opts_(std::move(opts)) {
  if (opts_.rebuild) {
    throw StateError(Code::kIo,
                     fmt::format("--rebuild-state is refused for the shared PostgreSQL state {} "
                                 "(other workers may be using it); use `chsync state forget` or "
                                 "drop the chsync_* tables by hand",
                                 shown_));
  }
  writer_ = std::make_unique<Conn>(url_, shown_);
  Conn& c = writer();
  // What is there: no meta table (new), ours, or someone else's.
  Result m = c.exec("inspect schema",
                    "SELECT to_regclass('chsync_meta') IS NOT NULL, "
                    "to_regclass('chsync_spans') IS NOT NULL");
  const bool has_meta = m.get(0, 0)[0] == 't';
  const bool has_spans = m.get(0, 1)[0] == 't';
  if (!has_meta && has_spans)
    throw StateError(Code::kForeign,
                     fmt::format("PostgreSQL state {}: chsync_* tables without chsync_meta: not "
                                 "a chsync state (or damaged); refusing to touch it",
                                 shown_));
  if (has_meta) {
    Result a = c.exec("read meta",
                      "SELECT coalesce((SELECT value FROM chsync_meta WHERE key='application'),''),"
                      " coalesce((SELECT value FROM chsync_meta WHERE key='schema_version'),'0')");
    if (std::string(a.get(0, 0)) != "chsync")
      throw StateError(Code::kForeign,
                       fmt::format("PostgreSQL state {}: chsync_meta belongs to another "
                                   "application ('{}')",
                                   shown_, a.get(0, 0)));
    const int v = std::atoi(a.get(0, 1));
    if (v > kPgSchemaVersion)
      throw StateError(Code::kNewerSchema,
                       fmt::format("PostgreSQL state {} has schema version {}, this chsync knows "
                                   "up to {}: upgrade chsync",
                                   shown_, v, kPgSchemaVersion));
  }
  if (opts_.read_only) {
    if (!has_meta)
      throw StateError(Code::kReadOnlyMissing,
                       fmt::format("PostgreSQL state {} has no chsync tables yet", shown_));
  } else {
    migrate(c);
  }
  if (opts_.register_worker && !opts_.read_only) register_run(c);
  work_ = std::make_unique<PgWork>(*this);  // read-only: counts and workers for status
  // Synchronous commit on purpose: a unit completion lost in a database crash while this run
  // believes it done would stay "claimed" by a live worker, and workers that each wait for the
  // other's claimed units would never finish (seen in DatabaseCrashTest).
  if (!opts_.read_only && opts_.ack_flush_interval.count() > 0)
    acks_.start([this] { retrying([&] { flush_locked(true); }); });
}

PgState::~PgState() {
  acks_.stop();
  std::lock_guard lk(writer_mu_);
  try {
    flush_locked();
  } catch (const std::exception&) {
    // Destruction cannot report: the acks stay in flight and the next run counts them.
  }
}

void PgState::migrate(Conn& c) {
  Tx tx(c);
  c.run("lock for migration", "SELECT pg_advisory_xact_lock(4849385929)");  // "CHSY" + 1
  c.run("create meta",
        "CREATE TABLE IF NOT EXISTS chsync_meta(key text PRIMARY KEY, value text NOT NULL)");
  Result v = c.exec("schema version",
                    "SELECT coalesce((SELECT value::int FROM chsync_meta WHERE "
                    "key='schema_version'), 0)");
  int have = std::atoi(v.get(0, 0));
  for (const auto& mig : kPgMigrations) {
    if (mig.version <= have) continue;
    c.run(fmt::format("migration {}", mig.version), mig.sql);
    have = mig.version;
  }
  c.exec("write meta",
         "INSERT INTO chsync_meta(key, value) VALUES ('application','chsync'), "
         "('schema_version',$1), ('created_at', to_char(now() AT TIME ZONE 'UTC', "
         "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) ON CONFLICT (key) DO UPDATE SET value = CASE WHEN "
         "chsync_meta.key = 'schema_version' THEN excluded.value ELSE chsync_meta.value END",
         {std::to_string(have)});
  tx.commit();
}

void PgState::register_run(Conn& c) {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const long pid = static_cast<long>(::getpid());
  std::string wid = opts_.worker_id.empty() ? fmt::format("{}:{}", host, pid) : opts_.worker_id;
  std::random_device rd;
  run_id_ = fmt::format("{}#{:08x}", wid, rd());
  Result r = c.exec(
      "register worker",
      "INSERT INTO chsync_workers(run_id, worker_id, work_group, host, pid, status, "
      "lease_ms, started_at, heartbeat_at) VALUES ($1,$2,$3,$4,$5,'running',$6,"
      "now(),now()) RETURNING started_at::text",
      {run_id_, wid, opts_.work_group, std::string(host), i64s(pid), i64s(opts_.lease.count())});
  started_at_ = r.get(0, 0);
  c.exec("mark dead workers", kMarkDead, {opts_.work_group});
  // Keep a month of finished runs for `chsync status` and post-mortems, not every run forever.
  c.exec("prune old worker rows",
         "DELETE FROM chsync_workers WHERE status <> 'running' AND heartbeat_at < now() - "
         "interval '30 days'");
}

// ---- files ----

// One column list and one parser for file rows (file() and files()).
constexpr const char* kFileColumns =
    "SELECT instance, key, size, mtime_ms, fingerprint, committed_offset, lines, complete, "
    "last_sync_ms, spans, errors, project FROM chsync_files";

FileState file_row(const Result& r, int i) {
  FileState f;
  r.read(i, f.instance, f.key, f.size, f.mtime_ms, f.fingerprint, f.committed_offset, f.lines,
         f.complete, f.last_sync_ms, f.spans, f.errors, f.project);
  return f;
}

// Reads commit the buffered writes first (as in SQLite): a caller sees every earlier call.
std::optional<FileState> PgState::file(std::string_view instance, std::string_view key) {
  flush();
  auto c = conn();
  Result r = c->exec("read file row", std::string(kFileColumns) + " WHERE instance=$1 AND key=$2",
                     {std::string(instance), std::string(key)});
  if (r.rows() == 0) return std::nullopt;
  return file_row(r, 0);
}

std::vector<FileState> PgState::files(std::string_view instance) {
  flush();
  auto c = conn();
  Result r =
      instance.empty()
          ? c->exec("read file rows", std::string(kFileColumns) + " ORDER BY instance, key")
          : c->exec("read file rows", std::string(kFileColumns) + " WHERE instance=$1 ORDER BY key",
                    {std::string(instance)});
  std::vector<FileState> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(file_row(r, i));
  return out;
}

// Buffered like acks: the rows go out with the next flush, in the same transaction as (and
// after) the acks they cover; a kill loses both together (the files are read again and their
// spans, still in flight, are resent and counted as possible repeats).
void PgState::put_files(const std::vector<FileState>& rows) {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  pending_files_.insert(pending_files_.end(), rows.begin(), rows.end());
  acks_.touch();
  if (opts_.ack_flush_interval.count() <= 0 || pending_files_.size() >= 4096)
    retrying([&] { flush_locked(true); });
}

void PgState::defer_complete(const UnitFence& unit) {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  pending_done_.push_back(unit);
  acks_.touch();
}

void PgState::write_files_locked(const std::vector<FileState>& rows) {
  Conn& c = writer();
  constexpr std::size_t kChunk = 1000;
  for (std::size_t at = 0; at < rows.size(); at += kChunk) {
    const std::size_t n = std::min(kChunk, rows.size() - at);
    std::vector<std::string> inst, key, fp, project;
    std::vector<std::uint64_t> size, mtime, off, lines, last, spans, errors, complete;
    for (std::size_t i = at; i < at + n; ++i) {
      const FileState& f = rows[i];
      inst.push_back(f.instance);
      key.push_back(f.key);
      fp.push_back(f.fingerprint);
      project.push_back(f.project);
      size.push_back(f.size);
      mtime.push_back(static_cast<std::uint64_t>(f.mtime_ms));
      off.push_back(f.committed_offset);
      lines.push_back(f.lines);
      last.push_back(static_cast<std::uint64_t>(f.last_sync_ms));
      spans.push_back(f.spans);
      errors.push_back(f.errors);
      complete.push_back(f.complete ? 1 : 0);
    }
    // Cumulative spans, as in SQLite: a file row adds what this delivery added.
    c.exec("write file rows",
           "INSERT INTO chsync_files AS f(instance, key, size, mtime_ms, fingerprint, "
           "committed_offset, lines, complete, last_sync_ms, spans, errors, project) "
           "SELECT i, k, s, m, fp, o, l, c <> 0, ls, sp, e, p FROM unnest($1::text[], "
           "$2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], "
           "$8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[]) AS "
           "t(i, k, s, m, fp, o, l, c, ls, sp, e, p) ON CONFLICT (instance, key) DO UPDATE SET "
           "size=excluded.size, mtime_ms=excluded.mtime_ms, fingerprint=excluded.fingerprint, "
           "committed_offset=excluded.committed_offset, lines=excluded.lines, "
           "complete=excluded.complete, last_sync_ms=excluded.last_sync_ms, "
           "spans=f.spans + excluded.spans, errors=excluded.errors, project=excluded.project",
           {text_array(inst), text_array(key), int_array(size), int_array(mtime), text_array(fp),
            int_array(off), int_array(lines), int_array(complete), int_array(last),
            int_array(spans), int_array(errors), text_array(project)});
  }
}

std::uint64_t PgState::forget_files(std::string_view instance, std::string_view key_prefix) {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  flush_locked();
  std::string like;
  for (char ch : key_prefix) {
    if (ch == '%' || ch == '_' || ch == '\\') like += '\\';
    like += ch;
  }
  like += '%';
  Result r =
      writer().exec("forget files", "DELETE FROM chsync_files WHERE instance=$1 AND key LIKE $2",
                    {std::string(instance), like});
  return r.affected();
}

// ---- spans ----

std::vector<std::uint64_t> PgState::load_span_keys(std::string_view what, const char* sql,
                                                   std::string_view instance) {
  flush();
  auto c = conn();
  Result r = c->exec(what, sql, {std::string(instance)});
  std::vector<std::uint64_t> out(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out[static_cast<std::size_t>(i)] = r.u64(i, 0);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::uint64_t> PgState::load_delivered(std::string_view instance) {
  return load_span_keys("load delivered", "SELECT span FROM chsync_spans WHERE instance=$1",
                        instance);
}

std::vector<std::uint64_t> PgState::load_dead(std::string_view instance) {
  return load_span_keys("load dead", "SELECT span FROM chsync_spans WHERE instance=$1 AND dead",
                        instance);
}

std::vector<std::uint64_t> PgState::load_in_flight_records(std::string_view instance) {
  flush();
  auto c = conn();
  // Records of runs that are gone; a live run's records are its own business.
  Result r = c->exec("read in-flight records",
                     fmt::format("SELECT request_id, keys FROM chsync_in_flight f WHERE "
                                 "instance=$1 AND owner <> $2 AND NOT {}",
                                 fmt::format(kOwnerLive, "f.owner")),
                     {std::string(instance), run_id_});
  std::vector<std::uint64_t> out;
  std::lock_guard lk(writer_mu_);
  for (int i = 0; i < r.rows(); ++i) {
    loaded_in_flight_.insert(r.u64(i, 0));
    parse_int_array(r.get(i, 1), out);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::uint64_t> PgState::load_in_flight(std::string_view instance) {
  auto out = load_in_flight_records(instance);
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void PgState::clear_in_flight(std::string_view instance) {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  flush_locked();
  if (loaded_in_flight_.empty()) return;
  std::vector<std::uint64_t> ids(loaded_in_flight_.begin(), loaded_in_flight_.end());
  writer().exec("clear in-flight records",
                "DELETE FROM chsync_in_flight WHERE instance=$1 AND request_id = ANY($2::bigint[])",
                {std::string(instance), int_array(ids)});
}

std::uint64_t PgState::begin_request(std::string_view instance,
                                     const std::vector<std::uint64_t>& span_keys) {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  // Committed (autocommit) before it returns: durable against a kill of this process. Retried
  // after a lost connection: a record inserted twice only over-counts possible repeats.
  const std::string keys = int_array(span_keys);
  return retrying([&] {
    return writer()
        .exec("record in-flight request",
              "INSERT INTO chsync_in_flight(instance, owner, keys) VALUES ($1, $2, $3::bigint[]) "
              "RETURNING request_id",
              {std::string(instance), run_id_.empty() ? std::string("-") : run_id_, keys})
        .u64(0, 0);
  });
}

std::uint64_t PgState::begin_fenced_request(std::string_view instance,
                                            const std::vector<std::uint64_t>& span_keys,
                                            const std::vector<UnitFence>& units) {
  if (units.empty()) return begin_request(instance, span_keys);
  std::vector<std::string> ukeys;
  std::vector<std::uint64_t> fences;
  for (const auto& u : units) {
    if (std::find(ukeys.begin(), ukeys.end(), u.key) != ukeys.end()) continue;
    ukeys.push_back(u.key);
    fences.push_back(static_cast<std::uint64_t>(u.fence));
  }
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  const std::string keys = int_array(span_keys);
  // One statement: the UPDATE locks the unit rows this run still holds under these tokens (a
  // concurrent claim either committed first, and then the row no longer matches, or waits for
  // this statement; SKIP LOCKED makes it pass the row by) and renews their leases; the record
  // is inserted only if every unit matched. A lease that ran out without another worker
  // claiming the unit is still held: nobody else can have sent it. Retried after a lost
  // connection like begin_request (a record written twice only over-counts).
  return retrying([&] {
    Result r = writer().exec(
        "record in-flight request (fenced)",
        "WITH t AS (SELECT * FROM unnest($4::text[], $5::bigint[]) AS t(k, f)), "
        "held AS (UPDATE chsync_work w SET lease_until = now() + $7 * interval '1 millisecond' "
        "FROM t WHERE w.work_group=$6 AND w.unit_key=t.k AND w.fence=t.f AND w.owner=$2 AND "
        "w.status='claimed' RETURNING w.unit_key), "
        "ins AS (INSERT INTO chsync_in_flight(instance, owner, keys) SELECT $1, $2, "
        "$3::bigint[] WHERE (SELECT count(*) FROM held) = $8 RETURNING request_id) "
        "SELECT coalesce((SELECT request_id FROM ins), 0)",
        {std::string(instance), run_id_.empty() ? std::string("-") : run_id_, keys,
         text_array(ukeys), int_array(fences), opts_.work_group, i64s(opts_.lease.count()),
         std::to_string(ukeys.size())});
    return r.u64(0, 0);
  });
}

void PgState::queue_ack(BufferedAck ack) {
  std::unique_lock lk(writer_mu_);
  rethrow_async_error();
  if (acks_.add(std::move(ack))) retrying([&] { flush_locked(true); });
}

// Writes the buffered acks. Callers hold writer_mu_; inside an open transaction when they want
// the acks committed together with their own write, else each statement autocommits in order
// (in-flight removal last, so a kill in between leaves records: over-counted repeats, safe).
void PgState::flush_locked(bool own_tx) {
  if (!has_pending()) return;
  Conn& c = writer();
  std::vector<BufferedAck> batch = acks_.take();
  std::vector<FileState> files;
  files.swap(pending_files_);
  std::vector<UnitFence> done;
  done.swap(pending_done_);
  // Group: (instance, outcome, dead ref) -> keys.
  std::map<std::tuple<std::string, AckOutcome, std::string>, std::vector<std::uint64_t>> groups;
  std::vector<std::uint64_t> req_ids;
  for (auto& a : batch) {
    if (a.request_id != 0) req_ids.push_back(a.request_id);
    if (a.outcome == AckOutcome::kFailed || a.keys.empty()) continue;
    auto& v = groups[{a.instance, a.outcome, a.dead_ref}];
    v.insert(v.end(), a.keys.begin(), a.keys.end());
  }
  try {
    std::optional<Tx> tx;
    if (own_tx) tx.emplace(c);
    for (auto& [g, keys] : groups) {
      const auto& [inst, outcome, ref] = g;
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      if (outcome == AckOutcome::kDelivered) {
        c.exec("record delivered spans",
               "INSERT INTO chsync_spans(instance, span) SELECT $1, unnest($2::bigint[]) "
               "ON CONFLICT (instance, span) DO UPDATE SET dead=false, dead_letter=NULL "
               "WHERE chsync_spans.dead",
               {inst, int_array(keys)});
      } else {
        c.exec(
            "record dead spans",
            "INSERT INTO chsync_spans(instance, span, dead, dead_letter) SELECT $1, "
            "unnest($2::bigint[]), true, $3 ON CONFLICT (instance, span) DO NOTHING",
            {inst, int_array(keys), ref.empty() ? std::nullopt : std::optional<std::string>(ref)});
      }
    }
    if (!req_ids.empty())
      c.exec("remove in-flight records",
             "DELETE FROM chsync_in_flight WHERE request_id = ANY($1::bigint[])",
             {int_array(req_ids)});
    if (!files.empty()) write_files_locked(files);
    if (!done.empty()) {
      // Only under the token of this run's claim: a holder that lost the unit (its acks still
      // record the spans above, which were delivered) never completes it for the new holder.
      std::vector<std::string> keys;
      std::vector<std::uint64_t> fences;
      for (const auto& u : done) {
        keys.push_back(u.key);
        fences.push_back(static_cast<std::uint64_t>(u.fence));
      }
      c.exec("complete work units",
             "UPDATE chsync_work w SET status='done', done_at=now(), lease_until=NULL FROM "
             "unnest($2::text[], $4::bigint[]) AS t(k, f) WHERE w.work_group=$1 AND "
             "w.unit_key=t.k AND w.fence=t.f AND w.owner=$3 AND w.status='claimed'",
             {opts_.work_group, text_array(keys), run_id_, int_array(fences)});
    }
    if (tx) tx->commit();
    acks_.committed();
  } catch (...) {
    // Put them back so a later flush (or the caller's error path) does not lose them silently.
    acks_.restore(std::move(batch));
    pending_files_.insert(pending_files_.begin(), files.begin(), files.end());
    pending_done_.insert(pending_done_.begin(), done.begin(), done.end());
    throw;
  }
}

void PgState::flush() {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  retrying([&] { flush_locked(true); });
}

// One statement over ($1 instance, $2 keys), committed together with the acks buffered before it
// (state_store.h: durable state stays a prefix of the calls).
void PgState::write_span_keys(std::string_view what, const char* sql, std::string_view instance,
                              const std::vector<std::uint64_t>& keys) {
  std::lock_guard lk(writer_mu_);
  rethrow_async_error();
  Tx tx(writer());
  flush_locked();
  writer().exec(what, sql, {std::string(instance), int_array(keys)});
  tx.commit();
}

void PgState::mark_delivered(std::string_view instance, const std::vector<std::uint64_t>& keys) {
  write_span_keys("mark delivered",
                  "INSERT INTO chsync_spans(instance, span) SELECT $1, unnest($2::bigint[]) ON "
                  "CONFLICT (instance, span) DO UPDATE SET dead=false, dead_letter=NULL",
                  instance, keys);
}

void PgState::forget_spans(std::string_view instance, const std::vector<std::uint64_t>& keys) {
  write_span_keys("forget spans",
                  "DELETE FROM chsync_spans WHERE instance=$1 AND span = ANY($2::bigint[])",
                  instance, keys);
}

BundleCheck PgState::check_bundle(std::string_view instance,
                                  const std::vector<std::uint64_t>& keys) {
  // A lost connection is retried: an adoption committed just before it was lost leaves its
  // records owned by this run, and the next taker counts them again (over-counting is safe).
  return retrying([&] { return check_bundle_once(instance, keys); });
}

BundleCheck PgState::check_bundle_once(std::string_view instance,
                                       const std::vector<std::uint64_t>& keys) {
  BundleCheck out;
  if (keys.empty()) return out;
  const std::string arr = int_array(keys);
  const std::string inst(instance);
  auto c = conn();
  // Sends of unknown outcome by other runs holding any of these keys are rare (a crash, a
  // holder that lost its lease after recording a send, a resume copy another worker sends
  // now): one round trip answers both questions, the probe as a row with a NULL span. The
  // holder may be alive: with fencing, a live run that recorded a send and then lost the unit
  // may still send it, so its record counts as a possible repeat here like a dead run's.
  const std::string gone = "f.instance=$1 AND f.owner <> $3 AND f.keys && $2::bigint[]";
  Result r = c->exec("check delivered spans",
                     "SELECT span FROM chsync_spans WHERE instance=$1 AND span = ANY($2::bigint[]) "
                     "UNION ALL (SELECT NULL FROM chsync_in_flight f WHERE " +
                         gone + " LIMIT 1)",
                     {inst, arr, run_id_});
  bool orphans = false;
  out.settled.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    if (r.null(i, 0)) orphans = true;
    else out.settled.push_back(r.u64(i, 0));
  }
  std::sort(out.settled.begin(), out.settled.end());
  if (!orphans) return out;
  // One request record usually holds spans of several bundles, so workers taking over those
  // bundles at the same time compete for it: each waits for the other (FOR UPDATE, not SKIP
  // LOCKED, which would leave its share behind uncounted) and then takes its own keys out of
  // the version the other left. Locks are taken in request_id order: no deadlock.
  Tx tx(*c);
  Result recs = c->exec("adopt in-flight records",
                        "SELECT request_id, keys FROM chsync_in_flight f WHERE " + gone +
                            " ORDER BY request_id FOR UPDATE",
                        {inst, arr, run_id_});
  for (int i = 0; i < recs.rows(); ++i) {
    std::vector<std::uint64_t> rk;
    parse_int_array(recs.get(i, 1), rk);
    std::vector<std::uint64_t> mine, rest;
    for (auto k : rk) (std::binary_search(keys.begin(), keys.end(), k) ? mine : rest).push_back(k);
    out.adopted.insert(out.adopted.end(), mine.begin(), mine.end());
    if (rest.empty())
      c->exec("remove adopted record", "DELETE FROM chsync_in_flight WHERE request_id=$1",
              {recs.str(i, 0)});
    else
      c->exec("shrink adopted record",
              "UPDATE chsync_in_flight SET keys=$2::bigint[] WHERE request_id=$1",
              {recs.str(i, 0), int_array(rest)});
  }
  std::sort(out.adopted.begin(), out.adopted.end());
  // Read the settled keys again, now that the records are locked: the lock may have waited for
  // their owner's ack flush (which deletes the records and records the spans delivered in one
  // transaction; a worker paused in the middle of it holds the lock for the whole pause). The
  // first read predates that commit, and sending what it missed would repeat uncounted (seen
  // in FencingTest under load: 20 duplicates, 0 counted).
  {
    Result again = c->exec("check delivered spans (locked)",
                           "SELECT span FROM chsync_spans WHERE instance=$1 AND span = "
                           "ANY($2::bigint[])",
                           {inst, arr});
    out.settled.clear();
    for (int i = 0; i < again.rows(); ++i) out.settled.push_back(again.u64(i, 0));
    std::sort(out.settled.begin(), out.settled.end());
  }
  if (!out.adopted.empty()) {
    Result n =
        c->exec("record adopted keys",
                "INSERT INTO chsync_in_flight(instance, owner, keys) VALUES ($1, $2, "
                "$3::bigint[]) RETURNING request_id",
                {inst, run_id_.empty() ? std::string("-") : run_id_, int_array(out.adopted)});
    out.adopted_request = n.u64(0, 0);
  }
  tx.commit();
  return out;
}

// ---- housekeeping ----

StatusTotals PgState::totals(std::string_view instance) {
  flush();
  StatusTotals t;
  auto c = conn();
  const bool all = instance.empty();
  const std::string where = all ? "" : " WHERE instance=$1";
  auto q = [&](std::string_view what, const std::string& sql) {
    return all ? c->exec(what, sql) : c->exec(what, sql, {std::string(instance)});
  };
  Result f = q("file totals",
               "SELECT count(*), coalesce(sum(size),0), coalesce(sum(errors),0), "
               "coalesce(max(last_sync_ms),0) FROM chsync_files" +
                   where);
  t.files = f.u64(0, 0);
  t.bytes = f.u64(0, 1);
  t.file_errors = f.u64(0, 2);
  t.last_sync_ms = f.i64(0, 3);
  Result s = q("span totals",
               "SELECT count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead) FROM "
               "chsync_spans" +
                   where);
  t.spans_delivered = s.u64(0, 0);
  t.spans_dead = s.u64(0, 1);
  Result i = q("in-flight totals",
               "SELECT coalesce(sum(cardinality(keys)),0) FROM chsync_in_flight" + where);
  t.spans_in_flight = i.u64(0, 0);
  return t;
}

std::vector<std::string> PgState::instances() {
  flush();  // an instance known only from buffered acks is an instance (as in SQLite)
  auto c = conn();
  Result r = c->exec("list instances",
                     "SELECT instance FROM chsync_files UNION SELECT DISTINCT instance FROM "
                     "chsync_spans ORDER BY 1");
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.str(i, 0));
  return out;
}

void PgState::vacuum() {
  flush();
  auto c = conn();
  for (const char* t :
       {"chsync_files", "chsync_spans", "chsync_in_flight", "chsync_work", "chsync_workers"})
    c->run("vacuum", fmt::format("VACUUM (ANALYZE) {}", t));
}

void PgState::backup(const std::string& /*dest_path*/) {
  throw StateError(
      Code::kIo,
      fmt::format("backup of the PostgreSQL state {}: use pg_dump -t 'chsync_*'", shown_));
}

}  // namespace pg

using pg::PgState;
using pg::redact_url;

std::string display_state_location(const std::string& location) {
  return is_pg_url(location) ? redact_url(location) : location;
}

bool is_pg_url(std::string_view location) {
  return location.rfind("postgres://", 0) == 0 || location.rfind("postgresql://", 0) == 0;
}

std::unique_ptr<StateStore> open_pg_state(const std::string& url, const StateOpenOptions& opts) {
  return std::make_unique<PgState>(url, opts);
}

std::unique_ptr<StateStore> open_state(const std::string& location, const StateOpenOptions& opts) {
  if (is_pg_url(location)) return open_pg_state(location, opts);
  return open_sqlite_state(location, opts);
}

}  // namespace chsync
