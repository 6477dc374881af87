// AckBuffer: the buffered finish_request calls of a state store (SQLite and PostgreSQL share it),
// and the one failure behaviour both have: nothing is dropped.
//
// What it holds: acks in call order (instance, request id, keys, outcome, dead-letter ref), how
// many keys, and since when something has been waiting. A store may buffer other writes behind
// the acks (PostgreSQL: file rows and unit completions) and calls touch() for them.
// When it is committed: by the store's own write path (every other write commits the buffer
// first, so durable state stays a prefix of the calls) or by the flusher thread once the oldest
// entry is `interval` old; add() says when `max_keys` keys (or interval <= 0) ask for an
// immediate commit.
// Failure: a background commit that fails keeps everything buffered (the store's flush restores
// what it took), remembers the error for the store's next call (rethrow_error, once), and tries
// again an interval later. A kill loses the buffer: the in-flight records stay, and the next run
// counts those spans as possible repeats (state_store.h).
// Threads: every method but start()/stop() is called with the store's mutex held; the flusher
// thread takes that mutex itself. stop() joins it (mutex not held); the store then flushes once
// more in its destructor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "stages/state/state_store.h"

namespace chsync {

enum class AckOutcome : std::uint8_t { kFailed, kDelivered, kDead };

struct BufferedAck {
  std::string instance;
  std::uint64_t request_id = 0;
  std::vector<std::uint64_t> keys;  // kFailed: empty (only the in-flight record goes)
  AckOutcome outcome = AckOutcome::kFailed;
  std::string dead_ref;  // kDead: the dead-letter record, "" when none
};

class AckBuffer {
 public:
  AckBuffer(std::mutex& mu, std::chrono::milliseconds interval, std::size_t max_keys)
      : mu_(mu), interval_(interval), max_keys_(max_keys) {}
  ~AckBuffer() { stop(); }
  AckBuffer(const AckBuffer&) = delete;
  AckBuffer& operator=(const AckBuffer&) = delete;

  // Appends an ack; true when the caller must commit now.
  bool add(BufferedAck a) {
    if (a.outcome == AckOutcome::kFailed) a.keys.clear();
    keys_ += a.keys.size() + 1;
    acks_.push_back(std::move(a));
    touch();
    return interval_.count() <= 0 || keys_ >= max_keys_;
  }
  // Another buffered write waits for the same commit: the clock starts if it was not running.
  void touch() {
    if (!since_) since_ = std::chrono::steady_clock::now();
    cv_.notify_all();
  }
  const std::vector<BufferedAck>& acks() const { return acks_; }
  std::vector<BufferedAck> take() {
    keys_ = 0;
    return std::exchange(acks_, {});
  }
  // A commit of what take() returned failed: back in front, in order, so nothing is lost.
  void restore(std::vector<BufferedAck> batch) {
    for (const auto& a : batch) keys_ += a.keys.size() + 1;
    batch.insert(batch.end(), std::make_move_iterator(acks_.begin()),
                 std::make_move_iterator(acks_.end()));
    acks_ = std::move(batch);
  }
  // Everything buffered (acks and the store's other writes) is durable now.
  void committed() {
    acks_.clear();
    keys_ = 0;
    since_.reset();
  }
  bool waiting() const { return since_.has_value(); }
  // Reports a failed background commit once, to the store's next caller.
  void rethrow_error() {
    if (error_) {
      StateError e = std::move(*error_);
      error_.reset();
      throw StateError(std::move(e));
    }
  }

  // Starts the flusher thread. commit(): the store's flush with the mutex held; it calls
  // committed() on success and throws StateError (buffers restored) on failure.
  void start(std::function<void()> commit) {
    commit_ = std::move(commit);
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lk(mu_);
    while (!stop_) {
      if (!since_) {
        cv_.wait(lk);
        continue;
      }
      const auto due = *since_ + interval_;
      if (std::chrono::steady_clock::now() < due) {
        cv_.wait_until(lk, due);
        continue;
      }
      try {
        commit_();
        since_.reset();
      } catch (const StateError& e) {
        if (!error_) error_ = e;
        since_ = std::chrono::steady_clock::now();  // everything stays; again an interval later
      }
    }
  }

  std::mutex& mu_;
  const std::chrono::milliseconds interval_;
  const std::size_t max_keys_;
  std::vector<BufferedAck> acks_;
  std::size_t keys_ = 0;
  std::optional<std::chrono::steady_clock::time_point> since_;
  std::optional<StateError> error_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::function<void()> commit_;
  std::thread thread_;
};

// The StateStore base of both stores: finish_request and finish_request_dead are the same
// call in both (one BufferedAck each); what differs (the lock, SQLite's read-only check and
// key order, how a full buffer is committed) is the store's queue_ack.
class AckBufferedStore : public StateStore {
 public:
  void finish_request(std::string_view instance, std::uint64_t request_id,
                      const std::vector<std::uint64_t>& span_keys, bool delivered,
                      bool dead) final {
    const AckOutcome o =
        delivered ? AckOutcome::kDelivered : (dead ? AckOutcome::kDead : AckOutcome::kFailed);
    queue_ack(BufferedAck{std::string(instance), request_id, span_keys, o, {}});
  }
  void finish_request_dead(std::string_view instance, std::uint64_t request_id,
                           const std::vector<std::uint64_t>& span_keys,
                           std::string_view dead_letter_ref) final {
    queue_ack(BufferedAck{std::string(instance), request_id, span_keys, AckOutcome::kDead,
                          std::string(dead_letter_ref)});
  }

 protected:
  // Buffers the ack under the store's lock (a failed background commit is rethrown first) and
  // commits when AckBuffer::add asks for it.
  virtual void queue_ack(BufferedAck ack) = 0;
};

}  // namespace chsync
