// The PostgreSQL state store's classes (pg_state.cpp: store, files, spans, acks; pg_work.cpp:
// work table). Internal to stages/state: callers use open_pg_state (state_store.h). The
// contracts are those of state_store.h and work_table.h; docs/scaleout.md has the design.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "stages/state/ack_buffer.h"
#include "stages/state/pg_conn.h"
#include "stages/state/state_store.h"
#include "stages/state/work_table.h"

namespace chsync::pg {

// Running rows whose heartbeat is older than their lease: the process was killed or lost (or
// is paused; its next heartbeat says `running` again).
inline constexpr const char* kMarkDead =
    "UPDATE chsync_workers SET status='dead', finished_at=heartbeat_at WHERE work_group=$1 AND "
    "status='running' AND heartbeat_at < now() - lease_ms * interval '1 millisecond'";

// A run's owner token is live while it says so and its heartbeat is younger than its lease.
inline constexpr const char* kOwnerLive =
    "EXISTS (SELECT 1 FROM chsync_workers w WHERE w.run_id = {} AND w.status = 'running' AND "
    "w.heartbeat_at > now() - w.lease_ms * interval '1 millisecond')";

class PgState;

class PgWork final : public WorkTable {
 public:
  explicit PgWork(PgState& s) : s_(s) {}
  const std::string& run_id() const override;
  void register_units(const std::vector<WorkUnitSpec>& units) override;
  std::vector<ClaimedUnit> claim(std::size_t max, const std::vector<std::string>& exclude) override;
  void complete(const UnitFence& unit) override;
  void release(const UnitFence& unit) override;
  WorkCounts counts() override;
  std::uint64_t heartbeat(const WorkerProgress& progress) override;
  void finish(const WorkerProgress& progress, bool ok) override;
  std::vector<WorkerRow> workers() override;
  std::chrono::milliseconds lease() const override;

 private:
  PgState& s_;
};

class PgState final : public AckBufferedStore {
 public:
  PgState(std::string url, StateOpenOptions opts);
  ~PgState() override;
  PgState(const PgState&) = delete;
  PgState& operator=(const PgState&) = delete;

  std::optional<FileState> file(std::string_view instance, std::string_view key) override;
  void put_files(const std::vector<FileState>& rows) override;
  std::vector<FileState> files(std::string_view instance) override;
  std::vector<std::uint64_t> load_delivered(std::string_view instance) override;
  std::vector<std::uint64_t> load_in_flight(std::string_view instance) override;
  std::vector<std::uint64_t> load_in_flight_records(std::string_view instance) override;
  std::uint64_t begin_request(std::string_view instance,
                              const std::vector<std::uint64_t>& span_keys) override;
  std::uint64_t begin_fenced_request(std::string_view instance,
                                     const std::vector<std::uint64_t>& span_keys,
                                     const std::vector<UnitFence>& units) override;
  void clear_in_flight(std::string_view instance) override;
  std::vector<std::uint64_t> load_dead(std::string_view instance) override;
  void mark_delivered(std::string_view instance, const std::vector<std::uint64_t>& keys) override;
  void forget_spans(std::string_view instance, const std::vector<std::uint64_t>& keys) override;
  StatusTotals totals(std::string_view instance) override;
  std::vector<std::string> instances() override;
  void vacuum() override;
  void backup(const std::string& dest_path) override;
  std::uint64_t forget_files(std::string_view instance, std::string_view key_prefix) override;
  void flush() override;
  std::string path() const override { return shown_; }
  bool shared() const override { return true; }
  WorkTable* work() override { return work_ ? work_.get() : nullptr; }
  BundleCheck check_bundle(std::string_view instance,
                           const std::vector<std::uint64_t>& keys) override;

  // Pool: a connection for one call, returned afterwards (dropped if broken).
  class Lease {
   public:
    Lease(PgState& s, std::unique_ptr<Conn> c) : s_(s), c_(std::move(c)) {}
    ~Lease() { s_.give_back(std::move(c_)); }
    // A copy would give the connection back twice.
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Conn& operator*() { return *c_; }
    Conn* operator->() { return c_.get(); }

   private:
    PgState& s_;
    std::unique_ptr<Conn> c_;
  };
  Lease conn() {
    {
      std::lock_guard lk(pool_mu_);
      if (!pool_.empty()) {
        auto c = std::move(pool_.back());
        pool_.pop_back();
        return {*this, std::move(c)};
      }
    }
    // Synchronous commit here too: a claim lost in a database crash hands its unit to a second
    // worker while the first still sends it, and neither can count those repeats (seen in the
    // database-restart test: 60 duplicates, 0 counted, with asynchronous claims).
    return {*this, std::make_unique<Conn>(url_, shown_)};
  }
  void give_back(std::unique_ptr<Conn> c) {
    if (!c || !c->ok()) return;
    std::lock_guard lk(pool_mu_);
    if (pool_.size() < opts_.pool_connections) pool_.push_back(std::move(c));
  }

  const StateOpenOptions& opts() const { return opts_; }
  const std::string& run_id() const { return run_id_; }
  const std::string& started_at() const { return started_at_; }
  // PgWork::complete: marked done in the flush that makes its files' rows durable.
  void defer_complete(const UnitFence& unit);

 private:
  static void migrate(Conn& c);
  // The writer connection, reconnected if the last one broke (writer_mu_ held).
  Conn& writer() {
    if (!writer_ || !writer_->ok()) {
      writer_.reset();
      writer_ = std::make_unique<Conn>(url_, shown_);
    }
    return *writer_;
  }
  // Runs fn again after a connection failure (database restarting, failing over, network), with
  // backoff, until opts_.outage_tolerance after the outage began; other errors, and the last
  // failure, propagate. The outage clock is the store's, not the call's: the calls a failing run
  // makes on its way out (flush, finish, carry-over) each try once more and give up at once,
  // instead of waiting the whole tolerance each (a 2 s tolerance took 6 s to exit, so a 60 s
  // one would take minutes). Any success ends the outage.
  // fn must be safe to repeat: every caller's writes are idempotent or over-count repeats.
  template <class F>
  auto retrying(F&& fn) {
    using Clock = std::chrono::steady_clock;
    auto backoff = std::chrono::milliseconds(100);
    for (;;) {
      try {
        if constexpr (std::is_void_v<decltype(fn())>) {
          fn();
          outage_since_ns_.store(0, std::memory_order_relaxed);
          return;
        } else {
          auto result = fn();
          outage_since_ns_.store(0, std::memory_order_relaxed);
          return result;
        }
      } catch (const PgTransient&) {
        std::int64_t began = 0;
        const std::int64_t now_ns = Clock::now().time_since_epoch().count();
        outage_since_ns_.compare_exchange_strong(began, now_ns, std::memory_order_relaxed);
        if (began == 0) began = now_ns;  // this call noticed the outage first
        const auto deadline = Clock::time_point(Clock::duration(began)) + opts_.outage_tolerance;
        {
          // Idle pooled connections broke with the one that failed: do not try them one by one.
          std::lock_guard lk(pool_mu_);
          pool_.clear();
        }
        if (Clock::now() + backoff > deadline) throw;
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      }
    }
  }
  BundleCheck check_bundle_once(std::string_view instance, const std::vector<std::uint64_t>& keys);
  // Writes the buffered acks, file rows and completions (writer_mu_ held). own_tx: in a
  // transaction of its own, restoring the buffers if anything fails, commit included (then a
  // retry applies them again: idempotent, except that a lost COMMIT reply can make a file row's
  // cumulative span count count twice — cosmetic); else in the caller's transaction.
  void flush_locked(bool own_tx = false);
  void write_files_locked(const std::vector<FileState>& rows);
  void write_span_keys(std::string_view what, const char* sql, std::string_view instance,
                       const std::vector<std::uint64_t>& keys);
  std::vector<std::uint64_t> load_span_keys(std::string_view what, const char* sql,
                                            std::string_view instance);
  void queue_ack(BufferedAck ack) override;
  bool has_pending() const {
    return !acks_.acks().empty() || !pending_files_.empty() || !pending_done_.empty();
  }
  void rethrow_async_error() { acks_.rethrow_error(); }
  void register_run(Conn& c);

  std::string url_, shown_;
  StateOpenOptions opts_;
  bool empty_ = false;  // read-only open of a database without the chsync schema
  std::string run_id_, started_at_;
  std::unique_ptr<PgWork> work_;
  std::set<std::uint64_t> loaded_in_flight_;  // request ids load_in_flight returned

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> pool_;
  // When the current outage began (steady_clock ticks), 0 while the database answers.
  std::atomic<std::int64_t> outage_since_ns_{0};

  std::mutex writer_mu_;  // the writer connection and the pending acks
  std::unique_ptr<Conn> writer_;
  // The acks (shared with SQLite: AckBuffer), then file rows and unit completions behind them.
  AckBuffer acks_{writer_mu_, opts_.ack_flush_interval, opts_.ack_flush_keys};
  std::vector<FileState> pending_files_;  // put_files, written after the acks
  std::vector<UnitFence> pending_done_;   // work units complete once the above are durable

  friend class PgWork;
};

}  // namespace chsync::pg
