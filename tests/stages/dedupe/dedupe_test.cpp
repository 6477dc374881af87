// SpanDedupe: what one backend instance still needs, span by span.
#include "stages/dedupe/dedupe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace chsync {
namespace {

const std::vector<std::uint64_t> kNone;

TEST(SpanDedupe, SendsNewKeysOnceAndCountsDrops) {
  SpanDedupe d;
  EXPECT_TRUE(d.admit(7, kNone).send);
  EXPECT_TRUE(d.admit(9, kNone).send);
  EXPECT_FALSE(d.admit(7, kNone).send);  // already handed over in this run
  EXPECT_EQ(d.deduped(), 1u);
  EXPECT_EQ(d.sent(), 2u);
}

TEST(SpanDedupe, KeyZeroIsAnOrdinaryKey) {
  SpanDedupe d;
  EXPECT_TRUE(d.admit(0, kNone).send);
  EXPECT_FALSE(d.admit(0, kNone).send);
}

TEST(SpanDedupe, DropsKeysDeliveredBefore) {
  SpanDedupe d;
  d.set_delivered({2, 4, 8});
  EXPECT_FALSE(d.admit(4, kNone).send);
  EXPECT_TRUE(d.admit(5, kNone).send);
  EXPECT_TRUE(d.delivered_before(8));
  EXPECT_FALSE(d.delivered_before(5));
  EXPECT_EQ(d.deduped(), 1u);
}

TEST(SpanDedupe, DropsKeysTheSharedStateSettled) {
  SpanDedupe d;
  const std::vector<std::uint64_t> settled = {3, 6};
  EXPECT_FALSE(d.admit(6, settled).send);
  EXPECT_TRUE(d.admit(6, kNone).send);  // the answer was for one bundle only
}

TEST(SpanDedupe, CountsPossibleRepeatsOfEarlierInFlightRecords) {
  SpanDedupe d;
  // Key 5 was in two earlier records (two sends of unknown outcome), key 9 in one.
  d.set_in_flight_records({5, 5, 9});
  EXPECT_EQ(d.in_flight_keys(), (std::vector<std::uint64_t>{5, 9}));
  EXPECT_TRUE(d.in_flight_before(5));
  EXPECT_FALSE(d.in_flight_before(6));
  EXPECT_EQ(d.sends_before(5), 2u);
  const auto v5 = d.admit(5, kNone);
  EXPECT_TRUE(v5.send);
  EXPECT_EQ(v5.possible_repeats, 2u);
  EXPECT_EQ(d.admit(9, kNone).possible_repeats, 1u);
  EXPECT_EQ(d.admit(6, kNone).possible_repeats, 0u);
  // A duplicate is not a send, so it repeats nothing.
  const auto again = d.admit(5, kNone);
  EXPECT_FALSE(again.send);
  EXPECT_EQ(again.possible_repeats, 0u);
}

TEST(SpanDedupe, ManyKeysStayExact) {
  SpanDedupe d;
  std::vector<std::uint64_t> delivered;
  for (std::uint64_t k = 1; k <= 20000; k += 2) delivered.push_back(k * 0x9E3779B97F4A7C15ull);
  std::sort(delivered.begin(), delivered.end());
  d.set_delivered(delivered);
  std::uint64_t sent = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (std::uint64_t k = 1; k <= 20000; ++k)
      sent += d.admit(k * 0x9E3779B97F4A7C15ull, kNone).send;
  EXPECT_EQ(sent, 10000u);  // the even half, once
  EXPECT_EQ(d.deduped(), 30000u);
}

}  // namespace
}  // namespace chsync
