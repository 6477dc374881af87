#include "pipeline/runtime.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>

using namespace chsync;
using namespace std::chrono_literals;

TEST(StageRunnerTest, FirstErrorStopsEveryone) {
  StageRunner r;
  std::atomic<bool> other_saw_stop{false};
  r.spawn("loop", [&] {
    while (!r.stop_requested()) std::this_thread::sleep_for(1ms);
    other_saw_stop = true;
  });
  r.spawn("fails", [] { throw std::runtime_error("boom"); });
  r.join_all();
  EXPECT_TRUE(other_saw_stop.load());
  EXPECT_EQ(r.first_error(), "fails: boom");
}

TEST(StageRunnerTest, NormalEndHasNoError) {
  StageRunner r;
  std::atomic<int> n{0};
  for (int i = 0; i < 4; ++i) r.spawn("w", [&] { ++n; });
  r.join_all();
  EXPECT_EQ(n.load(), 4);
  EXPECT_EQ(r.first_error(), "");
}

// stop(deadline) of every stage waits on StageThreads: false while a thread still runs at the
// deadline, true once every thread returned (also when one threw).
TEST(StageThreadsTest, WaitsForItsThreadsUntilTheDeadline) {
  StageRunner r;
  StageThreads t;
  std::atomic<bool> release{false};
  t.spawn(r, "held", [&] {
    while (!release.load()) std::this_thread::sleep_for(1ms);
  });
  t.spawn(r, "throws", [] { throw std::runtime_error("boom"); });
  EXPECT_TRUE(t.running());
  EXPECT_FALSE(t.wait_until(std::chrono::steady_clock::now() + 50ms));
  EXPECT_FALSE(t.wait_until(std::chrono::steady_clock::now() - 1s));  // past: only looks
  release = true;
  EXPECT_TRUE(t.wait_until(std::chrono::steady_clock::now() + 10s));
  EXPECT_FALSE(t.running());
  r.join_all();
  EXPECT_EQ(r.first_error(), "throws: boom");
}

TEST(StageThreadsTest, TimeLeftIsZeroOncePassedAndNeverOverflows) {
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(time_left(now - 1s), 0ms);
  EXPECT_GE(time_left(now + 10s), 9s);
  EXPECT_LE(time_left(now + 10s), 10s);
  EXPECT_GT(time_left(Deadline::max()), 24h);
}
