// FlatU64Set against std::unordered_set: same answers for random keys, key 0, and keys that
// collide in the low bits (long probe chains across the 80% load limit and regrowth).
#include "pipeline/flat_u64_set.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_set>
#include <vector>

namespace chsync {
namespace {

TEST(FlatU64SetTest, MatchesUnorderedSet) {
  std::mt19937_64 rng(42);
  FlatU64Set set;
  std::unordered_set<std::uint64_t> ref;
  std::vector<std::uint64_t> seen;
  for (int i = 0; i < 200000; ++i) {
    // A third of the keys repeat earlier ones; a seventh share their low 20 bits.
    std::uint64_t k = rng();
    if (i % 7 == 0) k = (k << 20) | 0x5;
    if (i % 3 == 0 && !seen.empty()) k = seen[rng() % seen.size()];
    if (i % 1000 == 0) k = 0;
    seen.push_back(k);
    EXPECT_EQ(set.insert(k), ref.insert(k).second) << i;
  }
  EXPECT_EQ(set.size(), ref.size());
  for (auto k : ref) EXPECT_TRUE(set.contains(k));
  std::mt19937_64 other(7);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t k = other();
    EXPECT_EQ(set.contains(k), ref.count(k) > 0);
  }
}

TEST(FlatU64SetTest, EmptyAndZero) {
  FlatU64Set set;
  EXPECT_FALSE(set.contains(0));
  EXPECT_FALSE(set.contains(12345));
  EXPECT_TRUE(set.insert(0));
  EXPECT_FALSE(set.insert(0));
  EXPECT_TRUE(set.contains(0));
  EXPECT_EQ(set.size(), 1u);
}

}  // namespace
}  // namespace chsync
