#include "pipeline/memory_budget.h"

#include <gtest/gtest.h>

namespace chsync {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;

std::uint64_t sum(const MemoryBudget& b) {
  return b.work_queue_bytes() + b.result_queue_bytes() + b.archive_pending_bytes() +
         b.reorder_bytes() + b.send_queues_bytes() + b.delivered_set_bytes() + b.sending_bytes();
}

TEST(MemoryBudget, SharesAddUpToTheCapExactly) {
  for (std::uint64_t total : {48 * kMiB, 48 * kMiB + 1, 48 * kMiB + 7, 256 * kMiB + 3, kMiB << 20})
    for (bool reorder : {false, true})
      for (std::size_t n : {1, 2, 3, 7}) {
        const MemoryBudget b(total, reorder, n);
        EXPECT_EQ(sum(b), total) << total << " " << reorder << " " << n;
        EXPECT_EQ(b.total_bytes(), total);
        EXPECT_EQ(b.delivered_set_bytes(), total / 16);
        EXPECT_EQ(b.sending_bytes(), total / 4);
      }
}

TEST(MemoryBudget, ASmallCapKeepsTheQueueFloor) {
  for (std::uint64_t total : {std::uint64_t{0}, std::uint64_t{1024}, 8 * kMiB}) {
    const MemoryBudget b(total, true, 1);
    EXPECT_EQ(b.delivered_set_bytes(), total / 16);  // not raised: a large state is looked up
    EXPECT_EQ(b.sending_bytes(), total / 4);
    EXPECT_EQ(sum(b) - b.delivered_set_bytes() - b.sending_bytes(), MemoryBudget::kMinQueueBytes);
    EXPECT_EQ(b.total_bytes(), sum(b));
    EXPECT_EQ(b.reorder_bytes(), 8 * kMiB);  // the reorder buffer's old floor
  }
  EXPECT_EQ(MemoryBudget(1024, false, 1).delivered_keys_each(), 8u);
}

TEST(MemoryBudget, UnusedSharesAreZero) {
  // 480 MiB: 30 MiB delivered sets, 120 MiB sending, 330 MiB of queues.
  const MemoryBudget one(480 * kMiB, false, 1);
  EXPECT_EQ(one.reorder_bytes(), 0u);
  EXPECT_EQ(one.send_queues_bytes(), 0u);
  EXPECT_EQ(one.sending_bytes(), 120 * kMiB);
  EXPECT_EQ(one.work_queue_bytes(), 110 * kMiB);
  EXPECT_EQ(one.delivered_keys_each(), 30 * kMiB / 8);
  const MemoryBudget all(480 * kMiB, true, 3);
  EXPECT_EQ(all.reorder_bytes(), 66 * kMiB);
  EXPECT_EQ(all.send_queues_bytes(), 66 * kMiB);
  EXPECT_EQ(all.send_queue_bytes_each(), 22 * kMiB);
  EXPECT_EQ(all.archive_member_in_memory_bytes(), 66 * kMiB / 4);
  EXPECT_EQ(all.delivered_keys_each(), 10 * kMiB / 8);
}

}  // namespace
}  // namespace chsync
