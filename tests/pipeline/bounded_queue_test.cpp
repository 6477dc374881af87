#include "pipeline/bounded_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

using namespace chsync;
using namespace std::chrono_literals;

TEST(BoundedQueueTest, CapacityBoundsQueuedBytes) {
  BoundedQueue<int> q(100);
  EXPECT_TRUE(q.push(1, 60));
  int item = 2;
  EXPECT_FALSE(q.try_push(item, 60)) << "60 + 60 exceeds the 100-byte capacity";
  EXPECT_EQ(q.queued_bytes(), 60u);
  item = 3;
  EXPECT_TRUE(q.try_push(item, 40));
  EXPECT_EQ(q.queued_bytes(), 100u);
  EXPECT_EQ(*q.pop(), 1);
  EXPECT_EQ(q.queued_bytes(), 40u);
}

TEST(BoundedQueueTest, OversizeItemAdmittedIntoEmptyQueue) {
  BoundedQueue<int> q(10);
  EXPECT_TRUE(q.push(7, 1000)) << "a single huge line must not deadlock";
  int item = 8;
  EXPECT_FALSE(q.try_push(item, 1));
  EXPECT_EQ(*q.pop(), 7);
}

TEST(BoundedQueueTest, ProducerBlocksWhenFullAndResumes) {
  BoundedQueue<int> q(10);
  ASSERT_TRUE(q.push(1, 10));
  std::atomic<bool> pushing{false}, pushed{false};
  std::thread producer([&] {
    pushing = true;
    q.push(2, 10);
    pushed = true;
  });
  // From when the producer calls push, not from when the thread was made: a loaded box may
  // start the thread late, and the blocked time below is measured inside push.
  while (!pushing.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(pushed.load()) << "producer must wait while the queue is full";
  EXPECT_EQ(*q.pop(), 1);
  producer.join();
  EXPECT_TRUE(pushed.load());
  EXPECT_EQ(*q.pop(), 2);
  EXPECT_GT(q.counters().push_blocked_ns.load(), 50'000'000u) << "blocked time is counted";
}

TEST(BoundedQueueTest, CloseWakesBlockedConsumersAndProducers) {
  BoundedQueue<int> q(10);
  std::thread consumer([&] { EXPECT_FALSE(q.pop().has_value()); });
  BoundedQueue<int> full(10);
  ASSERT_TRUE(full.push(1, 10));
  std::atomic<bool> rejected{false};
  std::thread producer([&] { rejected = !full.push(2, 10); });
  std::this_thread::sleep_for(50ms);
  q.close();
  full.close();
  consumer.join();
  producer.join();
  EXPECT_TRUE(rejected.load());
  EXPECT_EQ(*full.pop(), 1) << "items queued before close are still drained";
  EXPECT_FALSE(full.pop().has_value());
}

TEST(BoundedQueueTest, ManyProducersManyConsumersLoseNothing) {
  BoundedQueue<std::uint64_t> q(64);
  constexpr int kProducers = 4, kConsumers = 3, kPerProducer = 20000;
  std::vector<std::thread> threads;
  threads.reserve(kProducers);
  std::atomic<std::uint64_t> sum{0}, count{0};
  for (int p = 0; p < kProducers; ++p)
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i)
        ASSERT_TRUE(q.push(static_cast<std::uint64_t>(p) * kPerProducer + i, 1 + i % 7));
    });
  std::vector<std::thread> consumers;
  consumers.reserve(kConsumers);
  for (int c = 0; c < kConsumers; ++c)
    consumers.emplace_back([&] {
      while (auto v = q.pop()) {
        sum += *v;
        ++count;
        EXPECT_LE(q.queued_bytes(), 64u + 7u);
      }
    });
  for (auto& t : threads) t.join();
  q.close();
  for (auto& t : consumers) t.join();
  const std::uint64_t n = std::uint64_t{kProducers} * kPerProducer;
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
  EXPECT_LE(q.counters().max_bytes.load(), 64u + 7u) << "capacity really bounds memory";
}

TEST(BoundedQueueTest, ShutdownMidStreamDrainsWithoutDeadlock) {
  BoundedQueue<int> q(5);
  std::atomic<int> popped{0};
  std::thread consumer([&] {
    while (q.pop()) {
      ++popped;
      std::this_thread::sleep_for(1ms);
    }
  });
  std::thread producer([&] {
    for (int i = 0; i < 100000; ++i)
      if (!q.push(i, 1)) break;
  });
  std::this_thread::sleep_for(30ms);
  q.close();
  producer.join();
  consumer.join();
  EXPECT_GT(popped.load(), 0);
  EXPECT_EQ(q.queued_bytes(), 0u);
}
