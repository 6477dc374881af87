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
    EXPECT_EQ(set.contains(k), ref.contains(k));
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

// Erase (the run forgets spans a fenced request never sent): backward-shift deletion must keep
// every other key findable, also inside long probe runs that wrap around the table.
TEST(FlatU64SetTest, EraseKeepsOtherKeysFindable) {
  std::mt19937_64 rng(7);
  FlatU64Set set;
  std::unordered_set<std::uint64_t> ref;
  // Keys from a small range collide often (long probe runs); 0 is a key too.
  for (int round = 0; round < 200000; ++round) {
    const std::uint64_t k = rng() % 3000;
    if (rng() % 3 == 0) {
      EXPECT_EQ(set.erase(k), ref.erase(k) == 1) << "erase " << k;
    } else {
      EXPECT_EQ(set.insert(k), ref.insert(k).second) << "insert " << k;
    }
  }
  EXPECT_EQ(set.size(), ref.size());
  for (std::uint64_t k = 0; k < 3000; ++k) EXPECT_EQ(set.contains(k), ref.count(k) == 1) << k;
}

TEST(FlatU64SetTest, EraseOfMissingKeyIsFalse) {
  FlatU64Set set;
  EXPECT_FALSE(set.erase(5));
  EXPECT_FALSE(set.erase(0));
  set.insert(5);
  EXPECT_TRUE(set.erase(5));
  EXPECT_FALSE(set.contains(5));
  EXPECT_TRUE(set.insert(5));
}

}  // namespace
}  // namespace chsync
