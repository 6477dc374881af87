// State store: what has been delivered, per backend instance, so that reruns send nothing twice.
//
// Keys: everything is scoped by backend instance name (a backend added later receives everything).
// Files: one row per (instance, file key) with size, mtime, fingerprint, committed offset, counts;
// a file whose row matches (size, mtime, fingerprint) and is complete is skipped unread.
// Spans: delivered span IDs (64-bit, INTEGER PRIMARY KEY), dead span IDs, and in-flight records
// written before a request is sent (after a crash they tell which resent spans may be repeats).
// Thread-safety: all methods may be called from any thread; writes are serialised internally and
// committed in batched transactions (one writer). Errors: open() reports corrupt/foreign/locked
// databases as a StateError; other I/O errors throw StateError (they end the run, exit 1/2).
//
// Crash ordering (see docs/state.md): begin_request commits its in-flight record before it
// returns. finish_request calls are buffered in call order (up to
// StateOpenOptions::ack_flush_interval / ack_flush_keys) and committed together; a kill loses
// only acks, whose in-flight records then remain, and the next run counts those spans as possible
// repeats (safe). Every other write (put_files, mark_delivered, forget_*, clear_in_flight,
// flush) commits before it returns, in one transaction with all buffered acks before it; so a
// file row never becomes durable before the acks of the spans it covers. What survives a kill is
// therefore a prefix of the calls, except that begin_request records may be ahead of earlier
// buffered acks (harmless: those requests just stay in flight).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "stages/state/work_table.h"

namespace chsync {

class StateError : public std::runtime_error {
 public:
  // kUnavailable: a shared store (PostgreSQL) could not be reached, or stayed unreachable for
  // the whole outage tolerance; the run ends with exit 3 like an unreachable backend.
  enum class Code {
    kCorrupt,
    kForeign,
    kNewerSchema,
    kLocked,
    kIo,
    kReadOnlyMissing,
    kUnavailable
  };
  StateError(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const noexcept { return code_; }

 private:
  Code code_;
};

struct FileState {
  std::string instance;
  std::string key;
  std::uint64_t size = 0;
  std::int64_t mtime_ms = 0;
  std::string fingerprint;             // hex hash of the first bytes (catches replacement)
  std::uint64_t committed_offset = 0;  // bytes fully delivered (a turn boundary)
  std::uint64_t lines = 0;
  bool complete = false;  // false: held turns or undelivered spans remain; reread next run
  std::int64_t last_sync_ms = 0;
  std::uint64_t spans = 0;   // spans delivered from this file (cumulative)
  std::uint64_t errors = 0;  // bad lines seen at the last read
  std::string project;
};

struct StateOpenOptions {
  bool read_only = false;  // status: never create, never write
  bool rebuild = false;    // --rebuild-state: move the old file aside and start over
  bool take_lock = true;   // exclusive run lock (exit 4 when held by a live process)
  // Added: tuning. Buffered finish_request calls are committed when this old or this many keys.
  std::chrono::milliseconds ack_flush_interval{50};  // <= 0: commit every ack immediately
  std::size_t ack_flush_keys = 16384;
  std::chrono::milliseconds busy_timeout{5000};  // SQLite busy handler (other readers, backup)
  std::int64_t cache_kib = 16384;                // PRAGMA cache_size = -cache_kib
  std::int64_t max_page_count = 0;               // tests only: > 0 caps the db (forces SQLITE_FULL)
  // SQLite open: PRAGMA quick_check over the whole file up to this size; a larger state checks
  // only its small tables (quick_check reads every page: 1.2 CPU-s at 20 M spans).
  std::int64_t full_check_max_bytes = 64 << 20;
  // Shared (PostgreSQL) stores only: work sharing identity (stages/state/work_table.h).
  bool register_worker = false;            // sync: join the work group as a worker
  std::string work_group = "default";      // --work-group
  std::string worker_id;                   // --worker-id; "" = HOST:PID
  std::chrono::milliseconds lease{60000};  // --lease
  std::size_t pool_connections = 4;        // pooled connections (workers + claims + heartbeat)
  // How long a PostgreSQL store keeps reconnecting and retrying a write or a bundle check after
  // the connection broke (restart, failover) before the error reaches the caller.
  std::chrono::milliseconds outage_tolerance{30000};
};

// Per-bundle view of a shared store (check_bundle).
struct BundleCheck {
  std::vector<std::uint64_t> settled;  // of the asked keys: delivered or dead now (sorted)
  // Keys held by in-flight records of other runs (gone ones: crashed, or ended without an
  // outcome; live ones: a holder that lost the unit after recording a send, or a resume copy
  // in another unit), one entry per record (sorted): each is one send of unknown outcome, so
  // sending the key again is a possible repeat. Those records
  // now belong to this run as `adopted_request` (0 when none), so a crash of this run leaves
  // them for the next one to count again (over-counting repeats is safe, losing them is not).
  std::vector<std::uint64_t> adopted;
  std::uint64_t adopted_request = 0;
};

// Added: identification of a chsync state database (PRAGMA application_id / user_version).
inline constexpr std::int32_t kStateApplicationId = 0x43485359;  // "CHSY"
inline constexpr int kStateSchemaVersion = 1;

struct StatusTotals {
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;
  std::uint64_t spans_delivered = 0;
  std::uint64_t spans_dead = 0;
  std::uint64_t spans_in_flight = 0;
  std::uint64_t file_errors = 0;
  std::int64_t last_sync_ms = 0;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Files.
  virtual std::optional<FileState> file(std::string_view instance, std::string_view key) = 0;
  virtual void put_files(const std::vector<FileState>& rows) = 0;
  virtual std::vector<FileState> files(std::string_view instance) = 0;

  // Spans. load_delivered returns delivered and dead span keys of an instance, sorted ascending.
  virtual std::vector<std::uint64_t> load_delivered(std::string_view instance) = 0;
  // Span keys recorded in flight by an earlier run that never got an outcome, sorted, deduped
  // (union of the records that existed when the store was opened; records of this run excluded).
  virtual std::vector<std::uint64_t> load_in_flight(std::string_view instance) = 0;
  // Added: delivered-set look-ups, for states too large to load whole. settled_fits: true when
  // load_delivered would return at most max_keys keys (reads at most max_keys + 1 rows); a store
  // that cannot tell cheaply returns true, and the caller loads the set as before.
  virtual bool settled_fits(std::string_view /*instance*/, std::uint64_t /*max_keys*/) {
    return true;
  }
  // Of `keys` (sorted ascending), those delivered or dead, sorted. Point look-ups on the
  // committed rows: acks this process still buffers are not seen (a run tracks its own sends).
  // Thread-safe like every method; the default filters load_delivered (correct, not cheap).
  virtual std::vector<std::uint64_t> settled_among(std::string_view instance,
                                                   const std::vector<std::uint64_t>& keys) {
    const std::vector<std::uint64_t> all = load_delivered(instance);
    std::vector<std::uint64_t> out;
    std::set_intersection(keys.begin(), keys.end(), all.begin(), all.end(),
                          std::back_inserter(out));
    return out;
  }
  // Added: like load_in_flight but a key appears once per record holding it (sorted, not
  // deduped): each record is one send of unknown outcome, so one possible repeat.
  virtual std::vector<std::uint64_t> load_in_flight_records(std::string_view instance) {
    return load_in_flight(instance);
  }
  // Records a request's spans as in flight; returns a request id. Durable against process kill
  // when it returns (WAL, synchronous=NORMAL).
  virtual std::uint64_t begin_request(std::string_view instance,
                                      const std::vector<std::uint64_t>& span_keys) = 0;
  // Work sharing: like begin_request, but the record is written only if this run still holds
  // every unit in `units` under its fence token (stages/state/work_table.h), checked in the
  // same statement; it also renews their leases. Returns 0 (nothing written) when a unit
  // changed hands: the caller must not send. A local store has no fencing (begin_request).
  virtual std::uint64_t begin_fenced_request(std::string_view instance,
                                             const std::vector<std::uint64_t>& span_keys,
                                             const std::vector<UnitFence>& /*units*/) {
    return begin_request(instance, span_keys);
  }
  // Outcome of a request: delivered or dead keys are recorded and its in-flight record removed
  // in one transaction. failed == true: only the in-flight record is removed.
  virtual void finish_request(std::string_view instance, std::uint64_t request_id,
                              const std::vector<std::uint64_t>& span_keys, bool delivered,
                              bool dead) = 0;
  // Added: like finish_request(..., delivered=false, dead=true) but stores a reference to the
  // dead-letter record (file:line or id) with each dead key.
  virtual void finish_request_dead(std::string_view instance, std::uint64_t request_id,
                                   const std::vector<std::uint64_t>& span_keys,
                                   std::string_view dead_letter_ref) = 0;
  // Added: removes the in-flight records of earlier runs (those load_in_flight returns) for the
  // instance, once the caller has resent/accounted for them. Records of this run are kept.
  virtual void clear_in_flight(std::string_view instance) = 0;
  // Added: dead span keys of an instance, sorted ascending (replay-dead-letters).
  virtual std::vector<std::uint64_t> load_dead(std::string_view instance) = 0;
  // Marks keys delivered without a request (replay-dead-letters, --resend bookkeeping); a key
  // that was dead stops being dead.
  virtual void mark_delivered(std::string_view instance,
                              const std::vector<std::uint64_t>& keys) = 0;
  // Removes keys from delivered and dead (--resend of a set, forget).
  virtual void forget_spans(std::string_view instance, const std::vector<std::uint64_t>& keys) = 0;

  // Housekeeping.
  virtual StatusTotals totals(std::string_view instance) = 0;  // "" = all instances
  virtual std::vector<std::string> instances() = 0;            // files("") also means all instances
  virtual void vacuum() = 0;
  // Online copy (sqlite3_backup) to dest_path.tmp, then renamed over dest_path.
  virtual void backup(const std::string& dest_path) = 0;
  // Forgets file rows whose key starts with prefix (and nothing else).
  virtual std::uint64_t forget_files(std::string_view instance, std::string_view key_prefix) = 0;
  virtual void flush() = 0;  // commit pending batched writes now
  virtual std::string path() const = 0;
  // Added: where open() with rebuild moved the old database ("" when nothing was moved).
  virtual std::string moved_aside_path() const { return {}; }

  // Added for shared stores (PostgreSQL, several processes at once). A local store (SQLite) has
  // one writer, so its callers load delivered keys and in-flight records once at the start; a
  // shared one changes under the caller, so it is asked per bundle instead.
  virtual bool shared() const { return false; }
  virtual WorkTable* work() { return nullptr; }  // non-null: work sharing is on
  // keys: sorted. Which are settled now, and the in-flight records of gone runs that hold any.
  virtual BundleCheck check_bundle(std::string_view /*instance*/,
                                   const std::vector<std::uint64_t>& /*keys*/) {
    return {};
  }
};

// Opens a PostgreSQL store (url: postgres:// or postgresql://, any libpq connection URI). Schema
// migrations run under an advisory lock; there is no run lock (several runs share the store).
// Throws StateError: kIo (cannot connect; message without the password), kForeign, kNewerSchema,
// kReadOnlyMissing (read_only and no chsync schema), kIo for rebuild (refused: shared state).
std::unique_ptr<StateStore> open_pg_state(const std::string& url, const StateOpenOptions& opts);

// True for postgres:// and postgresql:// URLs.
bool is_pg_url(std::string_view location);
// A state location fit for messages: a PostgreSQL URL without its password.
std::string display_state_location(const std::string& location);

// open_pg_state for PostgreSQL URLs, open_sqlite_state for anything else (a path).
std::unique_ptr<StateStore> open_state(const std::string& location, const StateOpenOptions& opts);

// Opens (creating if needed and allowed) the SQLite store at `path`. Throws StateError:
// kLocked (another live run holds <path>.lock), kCorrupt (not a database / quick_check fails),
// kForeign (other application_id, or tables without one), kNewerSchema (user_version too new),
// kReadOnlyMissing (read_only and no file), kIo (anything else, with the SQLite message and path).
// Order: lock, then rebuild (move aside to <path>.broken-<UTC timestamp>), then checks, migrations.
std::unique_ptr<StateStore> open_sqlite_state(const std::string& path,
                                              const StateOpenOptions& opts);

// Default path: $XDG_STATE_HOME/chsync/state.db, else ~/.local/state/chsync/state.db.
std::string default_state_path();

}  // namespace chsync
