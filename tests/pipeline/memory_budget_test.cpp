#include "pipeline/memory_budget.h"

#include <gtest/gtest.h>

namespace chsync {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;

std::uint64_t sum(const MemoryBudget& b) {
  return b.work_queue_bytes() + b.result_queue_bytes() + b.archive_pending_bytes() +
         b.reorder_bytes() + b.send_queues_bytes() + b.delivered_set_bytes();
}

TEST(MemoryBudget, SharesAddUpToTheCapExactly) {
  for (std::uint64_t total : {40 * kMiB, 40 * kMiB + 1, 40 * kMiB + 7, 256 * kMiB + 3, kMiB << 20})
    for (bool reorder : {false, true})
      for (std::size_t n : {1, 2, 3, 7}) {
        const MemoryBudget b(total, reorder, n);
        EXPECT_EQ(sum(b), total) << total << " " << reorder << " " << n;
        EXPECT_EQ(b.total_bytes(), total);
        EXPECT_EQ(b.delivered_set_bytes(), total / 16);
      }
}

TEST(MemoryBudget, ASmallCapKeepsTheQueueFloor) {
  for (std::uint64_t total : {std::uint64_t{0}, std::uint64_t{1024}, 8 * kMiB}) {
    const MemoryBudget b(total, true, 1);
    EXPECT_EQ(b.delivered_set_bytes(), total / 16);  // not raised: a large state is looked up
    EXPECT_EQ(sum(b) - b.delivered_set_bytes(), MemoryBudget::kMinQueueBytes);
    EXPECT_EQ(b.total_bytes(), sum(b));
    EXPECT_EQ(b.reorder_bytes(), 8 * kMiB);  // the reorder buffer's old floor
  }
  EXPECT_EQ(MemoryBudget(1024, false, 1).delivered_keys_each(), 8u);
}

TEST(MemoryBudget, UnusedSharesAreZero) {
  const MemoryBudget one(320 * kMiB, false, 1);
  EXPECT_EQ(one.reorder_bytes(), 0u);
  EXPECT_EQ(one.send_queues_bytes(), 0u);
  EXPECT_EQ(one.work_queue_bytes(), 100 * kMiB);
  EXPECT_EQ(one.delivered_keys_each(), 20 * kMiB / 8);
  const MemoryBudget all(320 * kMiB, true, 4);
  EXPECT_EQ(all.reorder_bytes(), 60 * kMiB);
  EXPECT_EQ(all.send_queues_bytes(), 60 * kMiB);
  EXPECT_EQ(all.send_queue_bytes_each(), 15 * kMiB);
  EXPECT_EQ(all.archive_member_in_memory_bytes(), 15 * kMiB);
  EXPECT_EQ(all.delivered_keys_each(), 5 * kMiB / 8);
}

}  // namespace
}  // namespace chsync
