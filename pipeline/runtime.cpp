#include "pipeline/runtime.h"

#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <exception>

namespace chsync {

StageRunner::~StageRunner() {
  request_stop();
  join_all();
}

void StageRunner::spawn(std::string name, std::function<void()> fn) {
  Worker w;
  w.name = name;
  w.thread = std::thread([this, name = std::move(name), fn = std::move(fn)]() {
    try {
      fn();
    } catch (const std::exception& e) {
      {
        std::lock_guard lock(error_mutex_);
        if (first_error_.empty()) first_error_ = name + ": " + e.what();
      }
      request_stop();
    } catch (...) {
      {
        std::lock_guard lock(error_mutex_);
        if (first_error_.empty()) first_error_ = name + ": unknown error";
      }
      request_stop();
    }
  });
  workers_.push_back(std::move(w));
}

void StageRunner::join_all() {
  for (auto& w : workers_)
    if (w.thread.joinable()) w.thread.join();
  workers_.clear();
}

std::string StageRunner::first_error() const {
  std::lock_guard lock(error_mutex_);
  return first_error_;
}

std::chrono::milliseconds time_left(Deadline deadline) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (deadline <= now) return std::chrono::milliseconds(0);
  // Deadline::max() (no deadline) must not overflow the conversion.
  if (deadline - now > std::chrono::hours(24 * 365)) return std::chrono::hours(24 * 365);
  return std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
}

void StageThreads::spawn(StageRunner& runner, std::string name, std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    ++running_;  // before the thread exists: a stop() right after start() waits for it
  }
  runner.spawn(std::move(name), [this, fn = std::move(fn)] {
    struct Leave {  // NOLINT(*-special-member-functions): a scope guard, aggregate, never copied
      StageThreads* t;
      ~Leave() {
        std::lock_guard lock(t->mu_);
        --t->running_;
        t->done_.notify_all();  // under the lock: the owner may go once running_ is 0
      }
    } leave{this};
    fn();
  });
}

bool StageThreads::wait_until(Deadline deadline) {
  std::unique_lock lock(mu_);
  if (deadline == Deadline::max()) {
    done_.wait(lock, [this] { return running_ == 0; });
    return true;
  }
  return done_.wait_until(lock, deadline, [this] { return running_ == 0; });
}

bool StageThreads::running() const {
  std::lock_guard lock(mu_);
  return running_ > 0;
}

Deadline DrainDeadline::arm() noexcept {
  std::lock_guard lock(mu_);
  if (!armed_) {
    armed_ = true;
    deadline_ = std::chrono::steady_clock::now() + timeout_;
  }
  return deadline_;
}

bool DrainDeadline::armed() const noexcept {
  std::lock_guard lock(mu_);
  return armed_;
}

Deadline DrainDeadline::get() const noexcept {
  std::lock_guard lock(mu_);
  return deadline_;
}

Deadline DrainDeadline::from_now() const noexcept {
  const Deadline own = std::chrono::steady_clock::now() + timeout_;
  std::lock_guard lock(mu_);
  return std::min(own, deadline_);
}

namespace {
std::atomic<int> g_signal{0};  // NOLINT(*-avoid-non-const-global-variables): signal handler

extern "C" void on_signal(int signo) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, signo)) {
    // Second signal: hard stop. Crash-safe by design (state is committed transactionally).
    _exit(128 + signo);
  }
}
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

int received_signal() noexcept { return g_signal.load(); }
void reset_signal_state() noexcept { g_signal.store(0); }

}  // namespace chsync
