// Stage runner: owns the threads of a pipeline run, propagates the first fatal error, and turns
// SIGINT/SIGTERM into an orderly stop.
//
// Contract: spawn() starts a named thread running fn(); stages poll stop_requested() between
// items. If fn throws, the runner records the first error, requests stop for everyone, and
// join_all() rethrows nothing but reports it through first_error(). request_stop() is idempotent
// (it only sets an atomic). join_all() waits for every thread; the destructor stops and joins.
//
// Every stage of a sync (stages/*, the watcher and the metrics server in app/) stops the same
// way: `bool stop(Deadline deadline) noexcept` asks it to stop (idempotent, from any thread) and
// waits until its threads have returned or the deadline has passed; true when they returned and
// what the stage holds has been handed on. A deadline in the past only asks (the watcher does
// that on a signal); the run calls stop again with the real deadline once the threads are joined.
// StageThreads is the bookkeeping behind that wait.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace chsync {

class StageRunner {
 public:
  StageRunner() = default;
  ~StageRunner();
  StageRunner(const StageRunner&) = delete;
  StageRunner& operator=(const StageRunner&) = delete;

  void spawn(std::string name, std::function<void()> fn);
  void join_all();

  void request_stop() noexcept { stop_.store(true, std::memory_order_release); }
  bool stop_requested() const noexcept { return stop_.load(std::memory_order_acquire); }

  // The first exception message of any stage, or "" when all ended normally.
  std::string first_error() const;

 private:
  struct Worker {
    std::string name;
    std::thread thread;
  };
  std::vector<Worker> workers_;
  std::atomic<bool> stop_{false};
  mutable std::mutex error_mutex_;
  std::string first_error_;
};

// The point in time a stop must be done by (steady clock).
using Deadline = std::chrono::steady_clock::time_point;

// Time left until `deadline` (zero once it has passed), for calls that take a duration.
std::chrono::milliseconds time_left(Deadline deadline) noexcept;

// The threads one stage started on a StageRunner, counted until each returns (or throws: the
// runner records the error). A stage's stop(deadline) waits on it. Must outlive the threads (the
// run joins the runner before any stage goes away).
class StageThreads {
 public:
  // Starts one thread named `name` on `runner`, running fn().
  void spawn(StageRunner& runner, std::string name, std::function<void()> fn);
  // True when every thread started here has returned by `deadline`.
  bool wait_until(Deadline deadline);
  bool running() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable done_;
  std::size_t running_ = 0;
};

// The one deadline by which a run's stop must be done: now + --drain-timeout, fixed once, when the
// run begins to end (the first stop request, or the joins of a run whose input is exhausted);
// a later arm() returns the deadline already fixed. No drain of the run ends after it: a drain
// that starts before it is fixed (a sender whose queue ended) ends by from_now(), which is never
// later than the deadline fixed afterwards; once it is fixed, every drain ends by it, so a stop
// never waits --drain-timeout again after a slow thread has returned. Thread-safe.
class DrainDeadline {
 public:
  explicit DrainDeadline(std::chrono::milliseconds drain_timeout) : timeout_(drain_timeout) {}

  // Fixes the deadline at now + the drain timeout unless it is fixed already; returns it.
  Deadline arm() noexcept;
  bool armed() const noexcept;
  // The deadline once fixed, else Deadline::max().
  Deadline get() const noexcept;
  // The end of a drain that starts now: now + the drain timeout, or the run's deadline when it
  // is fixed and earlier.
  Deadline from_now() const noexcept;

 private:
  const std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  bool armed_ = false;
  Deadline deadline_ = Deadline::max();
};

// Installs SIGINT/SIGTERM handlers that record the signal (first one); the sync's watcher thread
// polls received_signal() and turns it into request_stop(). A second signal exits immediately
// with 128+signo (hard stop, crash semantics).
void install_signal_handlers();
int received_signal() noexcept;  // 0, SIGINT or SIGTERM
// Forgets a recorded signal (start of a run, tests).
void reset_signal_state() noexcept;

}  // namespace chsync
