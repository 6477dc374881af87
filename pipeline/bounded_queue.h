// BoundedQueue<T>: a multi-producer multi-consumer queue bounded by BYTES, not items.
//
// Contract: push() blocks while adding the item would exceed capacity_bytes (an item larger than
// the whole capacity is still admitted when the queue is empty, so a single 50 MB line never
// deadlocks); pop() blocks while empty. close() wakes every waiter: after it, push() returns false
// and pop() drains what is left, then returns false. Time spent blocked is counted per side.
// Storage is moodycamel::ConcurrentQueue (lock-free); the mutex/condvar only parks threads that
// must wait, so the fast path of a non-full, non-empty queue takes no lock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

#include <deque>

#if defined(__SANITIZE_THREAD__)
#define CHSYNC_QUEUE_LOCKED 1
#else
#include <concurrentqueue/concurrentqueue.h>
#endif

namespace chsync {

#if defined(CHSYNC_QUEUE_LOCKED)
// Under ThreadSanitizer the storage is a plain locked deque: TSan does not model the standalone
// fences moodycamel relies on (it reports false races, and GCC rejects the fences under -Werror).
// Everything chsync adds on top (byte accounting, blocking, close) is still checked by TSan.
template <typename T>
class LockedStorage {
 public:
  bool enqueue(T&& v) {
    std::lock_guard lock(mu_);
    q_.push_back(std::move(v));
    return true;
  }
  bool try_dequeue(T& out) {
    std::lock_guard lock(mu_);
    if (q_.empty()) return false;
    out = std::move(q_.front());
    q_.pop_front();
    return true;
  }
  std::size_t size_approx() const {
    std::lock_guard lock(mu_);
    return q_.size();
  }

 private:
  mutable std::mutex mu_;
  std::deque<T> q_;
};
#endif

struct QueueCounters {
  std::atomic<std::uint64_t> pushed_items{0};
  std::atomic<std::uint64_t> pushed_bytes{0};
  std::atomic<std::uint64_t> push_blocked_ns{0};  // producers waiting on a full queue
  std::atomic<std::uint64_t> pop_blocked_ns{0};   // consumers waiting on an empty queue
  std::atomic<std::uint64_t> max_bytes{0};        // high-water mark of queued bytes
};

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  ~BoundedQueue() = default;
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Blocks while full. Returns false if the queue was closed (the item is dropped by the caller's
  // choice: it still owns nothing, so callers check the result and stop producing).
  bool push(T item, std::uint64_t bytes) {
    if (!reserve(bytes, /*wait=*/true)) return false;
    enqueue_reserved(std::move(item), bytes);
    return true;
  }

  // Non-blocking: false when full or closed.
  bool try_push(T& item, std::uint64_t bytes) {
    if (!reserve(bytes, /*wait=*/false)) return false;
    enqueue_reserved(std::move(item), bytes);
    return true;
  }

  // Blocks while empty and open. Returns nullopt once closed and drained.
  std::optional<T> pop() {
    Slot slot;
    if (queue_.try_dequeue(slot)) return release(std::move(slot));
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    for (;;) {
      if (queue_.try_dequeue(slot)) {
        lock.unlock();
        add_ns(counters_.pop_blocked_ns, t0);
        return release(std::move(slot));
      }
      if (closed_.load(std::memory_order_acquire)) {
        // A producer may have enqueued between our dequeue attempt and the close.
        if (queue_.try_dequeue(slot)) {
          lock.unlock();
          return release(std::move(slot));
        }
        add_ns(counters_.pop_blocked_ns, t0);
        return std::nullopt;
      }
      not_empty_.wait_for(lock, std::chrono::milliseconds(50));
    }
  }

  // Like pop(), but gives up after `wait`: nullopt with timed_out = true (still open, empty).
  std::optional<T> pop_for(std::chrono::milliseconds wait, bool& timed_out) {
    timed_out = false;
    Slot slot;
    if (queue_.try_dequeue(slot)) return release(std::move(slot));
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::unique_lock lock(mutex_);
    for (;;) {
      if (queue_.try_dequeue(slot)) {
        lock.unlock();
        return release(std::move(slot));
      }
      if (closed_.load(std::memory_order_acquire)) {
        if (queue_.try_dequeue(slot)) {
          lock.unlock();
          return release(std::move(slot));
        }
        return std::nullopt;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        timed_out = true;
        return std::nullopt;
      }
      not_empty_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() +
                                                         std::chrono::milliseconds(50)));
    }
  }

  std::optional<T> try_pop() {
    Slot slot;
    if (queue_.try_dequeue(slot)) return release(std::move(slot));
    return std::nullopt;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_.store(true, std::memory_order_release);
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  std::uint64_t queued_bytes() const noexcept {
    return used_bytes_.load(std::memory_order_relaxed);
  }
  std::uint64_t capacity_bytes() const noexcept { return capacity_bytes_; }
  std::size_t size_approx() const noexcept { return queue_.size_approx(); }
  const QueueCounters& counters() const noexcept { return counters_; }

 private:
  struct Slot {
    T item{};
    std::uint64_t bytes = 0;
  };

  bool reserve(std::uint64_t bytes, bool wait) {
    std::optional<std::chrono::steady_clock::time_point> t0;
    std::unique_lock<std::mutex> lock(mutex_, std::defer_lock);
    for (;;) {
      if (closed_.load(std::memory_order_acquire)) return false;
      std::uint64_t used = used_bytes_.load(std::memory_order_relaxed);
      // An oversize item is admitted into an empty queue, so progress is always possible.
      while (used + bytes <= capacity_bytes_ || used == 0) {
        if (used_bytes_.compare_exchange_weak(used, used + bytes, std::memory_order_acq_rel)) {
          if (t0) add_ns(counters_.push_blocked_ns, *t0);
          update_max(used + bytes);
          return true;
        }
      }
      if (!wait) return false;
      if (!t0) t0 = std::chrono::steady_clock::now();
      if (!lock.owns_lock()) lock.lock();
      // Re-check under the lock: release() notifies while holding it, so no wakeup is lost.
      used = used_bytes_.load(std::memory_order_relaxed);
      if (used + bytes <= capacity_bytes_ || used == 0 || closed_.load()) continue;
      not_full_.wait_for(lock, std::chrono::milliseconds(50));
    }
  }

  // After reserve() succeeded: the item goes in, is counted, and a consumer is woken.
  void enqueue_reserved(T&& item, std::uint64_t bytes) {
    queue_.enqueue(Slot{std::move(item), bytes});
    counters_.pushed_items.fetch_add(1, std::memory_order_relaxed);
    counters_.pushed_bytes.fetch_add(bytes, std::memory_order_relaxed);
    wake_consumers();
  }

  T release(Slot&& slot) {
    used_bytes_.fetch_sub(slot.bytes, std::memory_order_acq_rel);
    { std::lock_guard lock(mutex_); }
    not_full_.notify_all();
    return std::move(slot.item);
  }

  void wake_consumers() {
    { std::lock_guard lock(mutex_); }
    not_empty_.notify_one();
  }

  void update_max(std::uint64_t v) {
    std::uint64_t cur = counters_.max_bytes.load(std::memory_order_relaxed);
    while (v > cur && !counters_.max_bytes.compare_exchange_weak(cur, v)) {
    }
  }

  static void add_ns(std::atomic<std::uint64_t>& c, std::chrono::steady_clock::time_point t0) {
    c.fetch_add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::steady_clock::now() - t0)
                                               .count()),
                std::memory_order_relaxed);
  }

  const std::uint64_t capacity_bytes_;
#if defined(CHSYNC_QUEUE_LOCKED)
  LockedStorage<Slot> queue_;
#else
  moodycamel::ConcurrentQueue<Slot> queue_;
#endif
  std::atomic<std::uint64_t> used_bytes_{0};
  std::atomic<bool> closed_{false};
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  QueueCounters counters_;
};

}  // namespace chsync
