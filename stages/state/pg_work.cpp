// PostgreSQL work table (work_table.h; docs/scaleout.md "Units and leases", "Fencing"): units,
// claims with fence tokens, leases, heartbeats, worker rows.
#include <fmt/format.h>

#include <algorithm>

#include "stages/state/pg_state.h"

namespace chsync::pg {

// ---- work table ----

const std::string& PgWork::run_id() const { return s_.run_id(); }
std::chrono::milliseconds PgWork::lease() const { return s_.opts().lease; }

void PgWork::register_units(const std::vector<WorkUnitSpec>& units) {
  auto c = s_.conn();
  constexpr std::size_t kChunk = 5000;
  for (std::size_t at = 0; at < units.size(); at += kChunk) {
    const std::size_t n = std::min(kChunk, units.size() - at);
    std::vector<std::string> keys, sigs;
    std::vector<std::uint64_t> seqs;
    for (std::size_t i = at; i < at + n; ++i) {
      keys.push_back(units[i].key);
      sigs.push_back(units[i].signature);
      seqs.push_back(units[i].seq);
    }
    // A unit finished before this run started (and still needed, since it was registered) or
    // whose files changed is open again; one finished by a concurrent run is not.
    c->exec("register work units",
            "INSERT INTO chsync_work AS w(work_group, unit_key, signature, seq, status) "
            "SELECT $1, k, s, q, 'pending' FROM unnest($2::text[], $3::text[], $4::bigint[]) "
            "AS t(k, s, q) ON CONFLICT (work_group, unit_key) DO UPDATE SET status='pending', "
            "signature=excluded.signature, seq=excluded.seq, owner=NULL, lease_until=NULL, "
            "attempts=0 WHERE w.status='done' AND (w.signature <> excluded.signature OR "
            "w.done_at < $5::timestamptz)",
            {s_.opts().work_group, text_array(keys), text_array(sigs), int_array(seqs),
             s_.started_at()});
  }
  // Fresh statistics, or the claim query may scan and sort the whole table until autovacuum
  // comes by (measured: 0.4 s per claim over 400k fresh rows, 1 ms after ANALYZE).
  if (units.size() >= 1000) c->run("analyze work table", "ANALYZE chsync_work");
}

// One statement, one round trip: pick, lease and count in a single implicit transaction. This
// run's own expired leases are not picked: those units are still in its pipeline (a heartbeat
// missed during a database outage), and the next heartbeat renews them unless another worker
// took them meanwhile.
std::vector<ClaimedUnit> PgWork::claim(std::size_t max, const std::vector<std::string>& exclude) {
  auto c = s_.conn();
  Result r = c->exec(
      "claim work units",
      "WITH c AS (SELECT unit_key, owner AS prev, status = 'claimed' AS expired FROM "
      "chsync_work WHERE work_group=$1 AND "
      "status <> 'done' AND (status = 'pending' OR (lease_until < now() AND owner IS DISTINCT "
      "FROM $4)) AND NOT (unit_key = ANY($3::text[])) ORDER BY seq LIMIT $2 FOR UPDATE SKIP "
      "LOCKED), "
      "u AS (UPDATE chsync_work w SET status='claimed', owner=$4, lease_until=now() + $5 * "
      "interval '1 millisecond', attempts=w.attempts+1, fence=w.fence+1, claimed_at=now() "
      "FROM c WHERE w.work_group=$1 AND w.unit_key=c.unit_key RETURNING w.unit_key, "
      "w.attempts, coalesce(c.prev, '') AS prev, w.fence, c.expired), "
      "n AS (UPDATE chsync_workers SET units_claimed = units_claimed + (SELECT count(*) FROM u) "
      "WHERE run_id=$4) SELECT unit_key, attempts, prev, fence, expired FROM u",
      {s_.opts().work_group, std::to_string(max), text_array(exclude), s_.run_id(),
       i64s(s_.opts().lease.count())});
  std::vector<ClaimedUnit> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i)
    out.push_back(ClaimedUnit{r.str(i, 0), static_cast<int>(r.i64(i, 1)), r.str(i, 2), r.i64(i, 3),
                              r.get(i, 4)[0] == 't'});
  return out;
}

void PgWork::complete(const UnitFence& unit) { s_.defer_complete(unit); }

void PgWork::release(const UnitFence& unit) {
  auto c = s_.conn();
  c->exec("release work unit",
          "UPDATE chsync_work SET status='pending', owner=NULL, lease_until=NULL WHERE "
          "work_group=$1 AND unit_key=$2 AND owner=$3 AND status='claimed' AND fence=$4",
          {s_.opts().work_group, unit.key, s_.run_id(), i64s(unit.fence)});
}

WorkCounts PgWork::counts() {
  auto c = s_.conn();
  Result r = c->exec(
      "count work units",
      "SELECT count(*) FILTER (WHERE status='pending'), count(*) FILTER (WHERE status='claimed' "
      "AND lease_until >= now()), count(*) FILTER (WHERE status='claimed' AND lease_until >= "
      "now() AND owner=$2), count(*) FILTER (WHERE status='claimed' AND lease_until < now()), "
      "count(*) FILTER (WHERE status='done') FROM chsync_work WHERE work_group=$1",
      {s_.opts().work_group, s_.run_id()});
  WorkCounts w;
  w.pending = r.u64(0, 0);
  w.claimed = r.u64(0, 1);
  w.claimed_by_me = r.u64(0, 2);
  w.expired = r.u64(0, 3);
  w.done = r.u64(0, 4);
  return w;
}

std::uint64_t PgWork::heartbeat(const WorkerProgress& p) {
  auto c = s_.conn();
  Tx tx(*c);
  Result r = c->exec("renew leases",
                     "UPDATE chsync_work SET lease_until = now() + $3 * interval '1 millisecond' "
                     "WHERE work_group=$1 AND owner=$2 AND status='claimed'",
                     {s_.opts().work_group, s_.run_id(), i64s(s_.opts().lease.count())});
  c->exec("heartbeat",
          "UPDATE chsync_workers SET heartbeat_at=now(), status='running', finished_at=NULL, "
          "units_done=$2, spans_sent=$3, bytes_read=$4 WHERE run_id=$1 AND status IN "
          "('running', 'dead')",
          {s_.run_id(), std::to_string(p.units_done), std::to_string(p.spans_sent),
           std::to_string(p.bytes_read)});
  tx.commit();
  return r.affected();
}

void PgWork::finish(const WorkerProgress& p, bool ok) {
  s_.flush();  // deferred completions first, or the release below would undo them
  auto c = s_.conn();
  Tx tx(*c);
  c->exec("release work units",
          "UPDATE chsync_work SET status='pending', owner=NULL, lease_until=NULL WHERE "
          "work_group=$1 AND owner=$2 AND status='claimed'",
          {s_.opts().work_group, s_.run_id()});
  c->exec("finish worker",
          "UPDATE chsync_workers SET status=$2, finished_at=now(), heartbeat_at=now(), "
          "units_done=$3, spans_sent=$4, bytes_read=$5 WHERE run_id=$1",
          {s_.run_id(), ok ? "finished" : "failed", std::to_string(p.units_done),
           std::to_string(p.spans_sent), std::to_string(p.bytes_read)});
  tx.commit();
}

std::vector<WorkerRow> PgWork::workers() {
  auto c = s_.conn();
  // Killed or lost runs stop saying `running` (the one write `chsync status` makes; a paused
  // run that comes back says `running` again with its next heartbeat), and a day later they
  // are dropped from the table.
  try {
    Tx tx(*c);
    c->exec("mark dead workers", kMarkDead, {s_.opts().work_group});
    c->exec("prune dead workers",
            "DELETE FROM chsync_workers WHERE work_group=$1 AND status='dead' AND heartbeat_at < "
            "now() - interval '1 day'",
            {s_.opts().work_group});
    tx.commit();
  } catch (const PgTransient&) {
    throw;
  } catch (const StateError&) {
    // A read-only server (a standby) or role: the rows below still say `dead`.
  }
  Result r = c->exec(
      "list workers",
      fmt::format("SELECT run_id, worker_id, host, pid, status, "
                  "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                  "to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                  "units_claimed, units_done, spans_sent, bytes_read, {} FROM chsync_workers x "
                  "WHERE work_group=$1 AND (status='running' OR heartbeat_at > now() - interval "
                  "'1 day') ORDER BY started_at, run_id",
                  fmt::format(kOwnerLive, "x.run_id")),
      {s_.opts().work_group});
  std::vector<WorkerRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    WorkerRow w;
    r.read(i, w.run_id, w.worker_id, w.host, w.pid, w.status, w.started_at, w.heartbeat_at,
           w.units_claimed, w.units_done, w.spans_sent, w.bytes_read, w.live);
    if (w.status == "running" && !w.live) w.status = "dead";  // expired since the update
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace chsync::pg
