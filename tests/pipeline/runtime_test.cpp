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
