#include "pipeline/runtime.h"

#include <unistd.h>
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

namespace {
std::atomic<int> g_signal{0};

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
