// Stage runner: owns the threads of a pipeline run, propagates the first fatal error, and turns
// SIGINT/SIGTERM into an orderly stop.
//
// Contract: spawn() starts a named thread running fn(); stages poll stop_requested() between
// items. If fn throws, the runner records the first error, requests stop for everyone, and
// join_all() rethrows nothing but reports it through first_error(). request_stop() is idempotent
// (it only sets an atomic). join_all() waits for every thread; the destructor stops and joins.
#pragma once

#include <atomic>
#include <chrono>
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

// Installs SIGINT/SIGTERM handlers that record the signal (first one); the sync's watcher thread
// polls received_signal() and turns it into request_stop(). A second signal exits immediately
// with 128+signo (hard stop, crash semantics).
void install_signal_handlers();
int received_signal() noexcept;  // 0, SIGINT or SIGTERM
// Forgets a recorded signal (start of a run, tests).
void reset_signal_state() noexcept;

}  // namespace chsync
