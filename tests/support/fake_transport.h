// FakeTransport: the http::Transport of the exporter tests (the seam between an exporter and
// the network). Posts and timers run on one worker thread in time order; each post's response
// comes from the handler (called with the request and the number of posts before it).
// cancel_all() runs everything queued at once as cancelled; shutdown() stops and joins.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "backends/http/http_client.h"

namespace chsync::test {

class FakeTransport final : public http::Transport {
 public:
  using Handler = std::function<http::Response(const http::Request&, int n)>;
  explicit FakeTransport(Handler h) : handler_(std::move(h)), worker_([this] { loop(); }) {}
  ~FakeTransport() override { shutdown(); }
  FakeTransport(const FakeTransport&) = delete;  // owns the worker thread
  FakeTransport& operator=(const FakeTransport&) = delete;

  void post(http::Request req, http::ResponseFn done) override {
    add(std::chrono::milliseconds(0),
        [this, req = std::move(req), done = std::move(done)](bool cancelled) mutable {
          if (cancelled) {
            http::Response r;
            r.error = http::TransportError::kCancelled;
            return done(std::move(r));
          }
          const int n = posts_++;
          done(handler_(req, n));
        });
  }
  void schedule(std::chrono::milliseconds d, std::function<void(bool)> fn) override {
    add(d, std::move(fn));
  }
  void cancel_all() override {
    std::lock_guard lock(mu_);
    cancel_ = true;
    cv_.notify_all();
  }
  void shutdown() noexcept override {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      stop_ = true;
      cancel_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  int posts() const { return posts_; }

 private:
  struct Task {
    std::chrono::steady_clock::time_point at;
    std::uint64_t seq;
    std::function<void(bool)> fn;
    bool operator>(const Task& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void add(std::chrono::milliseconds d, std::function<void(bool)> fn) {
    std::lock_guard lock(mu_);
    if (stop_) return;
    q_.push(Task{std::chrono::steady_clock::now() + d, seq_++, std::move(fn)});
    cv_.notify_all();
  }
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (q_.empty()) {
        if (stop_) return;
        cv_.wait(lock);
        continue;
      }
      if (!cancel_ && q_.top().at > std::chrono::steady_clock::now()) {
        const auto at = q_.top().at;  // copy: a push while waiting may reallocate the heap
        cv_.wait_until(lock, at);
        continue;
      }
      auto fn = q_.top().fn;
      q_.pop();
      const bool cancelled = cancel_;
      lock.unlock();
      fn(cancelled);
      lock.lock();
    }
  }
  Handler handler_;
  std::atomic<int> posts_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<>> q_;
  std::uint64_t seq_ = 0;
  bool stop_ = false, cancel_ = false;
  std::thread worker_;
};

}  // namespace chsync::test
