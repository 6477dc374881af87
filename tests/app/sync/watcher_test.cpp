// Watcher (app/sync): stop(deadline) is bounded by its deadline even while the watcher's thread
// is stuck in a callback, and nothing is drawn after the stop.
#include "app/sync/watcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace chsync {
namespace {

using Clock = std::chrono::steady_clock;

class WatcherTest : public ::testing::Test {
 protected:
  Watcher::Wiring wiring() {
    Watcher::Wiring w;
    w.logger = log::Logger([this](log::Level, const std::string& line) {
      std::lock_guard lock(mu_);
      lines_.push_back(line);
    });
    w.progress_interval = std::chrono::milliseconds(1);
    w.start = Clock::now();
    w.snapshot = [this] {
      ++snapshots_;
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return !hold_; });
      return ProgressSnapshot{};
    };
    w.runner = &runner_;
    w.failure = &failure_;
    w.stop_stages = [this] { ++asked_; };
    return w;
  }
  void release() {
    std::lock_guard lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  std::size_t lines() {
    std::lock_guard lock(mu_);
    return lines_.size();
  }

  StageRunner runner_;
  StateFailure failure_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  std::vector<std::string> lines_;
  std::atomic<int> snapshots_{0}, asked_{0};
};

TEST_F(WatcherTest, LogsProgressAsksTheStagesOnAStopAndEndsAtOnce) {
  Watcher w(wiring());
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (lines() == 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(lines(), 0u);
  EXPECT_EQ(asked_.load(), 0);
  runner_.request_stop();
  while (asked_.load() == 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(asked_.load(), 0);  // a stop of the run is passed on to the stages
  const auto t0 = Clock::now();
  EXPECT_TRUE(w.stop(t0 + std::chrono::seconds(5)));
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));  // no 50 ms tick waited out
}

// The thread is inside a progress snapshot that cannot go on (a lock the run holds). The run
// stops the watcher with its drain deadline: before, it waited without bound (here until the
// snapshot is released 5 s later); now it returns at the deadline, and the line that snapshot
// was for is never drawn.
TEST_F(WatcherTest, StopReturnsAtItsDeadlineWhileTheThreadIsStuck) {
  hold_ = true;
  Watcher w(wiring());
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (snapshots_.load() == 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(snapshots_.load(), 1);
  std::thread releaser([this] {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    release();
  });
  const auto t0 = Clock::now();
  EXPECT_FALSE(w.stop(t0 + std::chrono::milliseconds(200)));
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(190));
  EXPECT_LT(took, std::chrono::milliseconds(2500));
  releaser.join();
  EXPECT_TRUE(w.stop(Clock::now() + std::chrono::seconds(10)));
  EXPECT_EQ(lines(), 0u);           // stopped while it was taken: not drawn
  EXPECT_EQ(snapshots_.load(), 1);  // and none taken after the stop gave up
}

}  // namespace
}  // namespace chsync
