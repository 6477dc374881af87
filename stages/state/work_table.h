// Work sharing between chsync processes that use one shared state (PostgreSQL; docs/scaleout.md).
//
// Units: a plain session bundle, or a whole archive (its members cannot be read out of order).
// Every process registers the units it discovered and needs; processes then claim units with a
// lease (FOR UPDATE SKIP LOCKED), so a unit is processed by one live process at a time. A lease
// is renewed by heartbeat(); a process that dies (kill -9, lost host) stops renewing, and once its
// lease has expired its units are claimed again by the others (attempts > 1, prev_owner set).
// All times are the database server's clock, so the hosts' clocks do not matter.
//
// Fencing: every claim gives the unit a new fence token (chsync_work.fence + 1, so it grows each
// time the unit changes hands). A holder passes its (key, fence) to the writes that act on the
// unit — StateStore::begin_fenced_request (the record before a send), complete, release — and
// each succeeds only while the unit is still claimed by this run under that token, checked in
// the same statement. A worker that outlived its lease is thereby refused before it can send.
//
// Identity: a run is identified by run_id (worker_id + a random suffix), so a restarted worker
// with the same --worker-id never mistakes the records of its killed predecessor for its own.
// Thread-safety: every method may be called from any thread (each call uses a pooled
// connection). Errors: StateError kIo with the server message.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace chsync {

struct WorkUnitSpec {
  std::string key;        // state identity: first file key of a bundle, or the archive path
  std::string signature;  // hash of the unit's (file key, size, mtime): a change re-opens it
  std::uint64_t seq = 0;  // claim order (discovery order)
};

struct ClaimedUnit {
  std::string key;
  int attempts = 0;        // 1 on the first claim
  std::string prev_owner;  // run id of the expired lease holder ("" on a first claim)
  std::int64_t fence = 0;  // this claim's fence token (> every earlier token of the unit)
  // Taken from another run whose lease had expired (not a pending unit, which includes units
  // given back by a worker that does not know them).
  bool taken_over = false;
};

// A unit as held by this run: the writes that act on it carry the claim's token.
struct UnitFence {
  std::string key;
  std::int64_t fence = 0;
  bool operator==(const UnitFence&) const = default;
};

struct WorkCounts {
  std::uint64_t pending = 0;
  std::uint64_t claimed = 0;  // live leases, any owner
  std::uint64_t claimed_by_me = 0;
  std::uint64_t expired = 0;  // claimed but the lease ran out (claimable)
  std::uint64_t done = 0;
};

struct WorkerRow {
  std::string run_id, worker_id, host, status, started_at, heartbeat_at;
  std::int64_t pid = 0;
  // status: running, finished, failed, or dead (its heartbeat expired while running: killed or
  // lost; workers() marks such rows dead in the table).
  bool live = false;  // running with a fresh heartbeat
  std::uint64_t units_claimed = 0, units_done = 0, spans_sent = 0, bytes_read = 0;
};

struct WorkerProgress {
  std::uint64_t units_done = 0, spans_sent = 0, bytes_read = 0;
};

class WorkTable {
 public:
  virtual ~WorkTable() = default;
  virtual const std::string& run_id() const = 0;
  // Inserts units not yet known; a unit that is done re-opens (pending) when its signature
  // changed or it was finished before this run started. Claimed units are left alone.
  virtual void register_units(const std::vector<WorkUnitSpec>& units) = 0;
  // Claims up to max claimable units (pending, or claimed with an expired lease), in seq order,
  // skipping rows other processes are claiming right now and keys in `exclude`.
  virtual std::vector<ClaimedUnit> claim(std::size_t max,
                                         const std::vector<std::string>& exclude) = 0;
  // The unit is finished (every span has an outcome and its file rows are committed). Takes
  // effect only while this run still holds the unit under `fence` (a holder that lost the unit
  // never completes it for the new one).
  virtual void complete(const UnitFence& unit) = 0;
  // Gives a claimed unit back (pending) without finishing it: stop, backend failure. Only while
  // this run still holds it under `fence`.
  virtual void release(const UnitFence& unit) = 0;
  virtual WorkCounts counts() = 0;
  // Renews this run's leases and publishes its progress; returns how many leases it still holds.
  virtual std::uint64_t heartbeat(const WorkerProgress& progress) = 0;
  // End of the run: releases every unit still claimed and marks the worker finished/failed.
  virtual void finish(const WorkerProgress& progress, bool ok) = 0;
  // Running ones and those of the last day. A running row whose heartbeat is older than its
  // lease is reported (and, unless read-only, marked) dead.
  virtual std::vector<WorkerRow> workers() = 0;
  virtual std::chrono::milliseconds lease() const = 0;
};

}  // namespace chsync
