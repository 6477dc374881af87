#include "backends/http/retry_policy.h"

#include <gtest/gtest.h>

#include "backends/http/http_client.h"

using namespace chsync::http;
using std::chrono::milliseconds;

TEST(RetryPolicyTest, FullJitterStaysWithinCap) {
  RetryPolicy p;
  p.initial_backoff = milliseconds(100);
  p.max_backoff = milliseconds(1000);
  EXPECT_EQ(p.backoff_cap(0), milliseconds(100));
  EXPECT_EQ(p.backoff_cap(1), milliseconds(200));
  EXPECT_EQ(p.backoff_cap(3), milliseconds(800));
  EXPECT_EQ(p.backoff_cap(4), milliseconds(1000));
  EXPECT_EQ(p.backoff_cap(500), milliseconds(1000));
  std::mt19937_64 rng(42);
  for (std::uint32_t n = 0; n < 8; ++n) {
    milliseconds lo = milliseconds::max(), hi = milliseconds(0);
    for (int i = 0; i < 2000; ++i) {
      auto d = p.backoff(n, rng);
      ASSERT_GE(d.count(), 0);
      ASSERT_LE(d, p.backoff_cap(n));
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // full jitter spreads over the whole window
    EXPECT_LT(lo.count(), p.backoff_cap(n).count() / 10 + 1);
    EXPECT_GT(hi.count(), p.backoff_cap(n).count() * 9 / 10);
  }
}

TEST(RetryPolicyTest, RetryableStatuses) {
  for (int s : {429, 502, 503, 504}) EXPECT_TRUE(is_retryable_status(s)) << s;
  for (int s : {200, 400, 401, 403, 404, 413, 422, 500, 501})
    EXPECT_FALSE(is_retryable_status(s)) << s;
}

// Issue 20 item 5: no overflow, saturation instead; a wait past the budget ends the retries.
TEST(RetryPolicyTest, RetryAfterSaturatesAndEndsRetriesBeyondTheBudget) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_retry_after("9223372036854776"), milliseconds::max());
  EXPECT_EQ(parse_retry_after("99999999999999999999999999"), milliseconds::max());
  EXPECT_EQ(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"), milliseconds::max());
  RetryPolicy p;
  p.max_elapsed = milliseconds(60000);
  std::mt19937_64 rng(1);
  EXPECT_FALSE(p.next_delay(0, milliseconds(0), milliseconds::max(), rng));
  EXPECT_FALSE(p.next_delay(0, milliseconds(59000), milliseconds(2000), rng));
  EXPECT_EQ(p.next_delay(0, milliseconds(1000), milliseconds(2000), rng), milliseconds(2000));
  EXPECT_FALSE(p.next_delay(0, milliseconds::max(), std::nullopt, rng));
  p.max_attempts = 2;
  EXPECT_TRUE(p.next_delay(0, milliseconds(0), std::nullopt, rng));
  EXPECT_FALSE(p.next_delay(1, milliseconds(0), std::nullopt, rng));
  p.max_attempts = 0;
  p.max_elapsed = milliseconds(0);  // retry forever: the server's wait is honoured as it is
  EXPECT_EQ(p.next_delay(5, milliseconds(0), milliseconds::max(), rng), RetryPolicy::kMaxWait);
}

TEST(RetryPolicyTest, RetryAfterSecondsAndDates) {
  using namespace std::chrono;
  EXPECT_EQ(parse_retry_after("120"), milliseconds(120000));
  EXPECT_EQ(parse_retry_after(" 0 "), milliseconds(0));
  const auto now = system_clock::time_point(seconds(1445412480));  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), milliseconds(30000));
  EXPECT_EQ(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now), milliseconds(60000));
  EXPECT_EQ(parse_retry_after("Wed Oct 21 07:28:10 2015", now), milliseconds(10000));
  EXPECT_EQ(parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now), milliseconds(0));  // past
  EXPECT_FALSE(parse_retry_after("", now));
  EXPECT_FALSE(parse_retry_after("soon", now));
  EXPECT_FALSE(parse_retry_after("1.5", now));
  EXPECT_FALSE(parse_retry_after("Wed, 99 Foo 2015 07:28:00 GMT", now));
}

TEST(UrlTest, Parses) {
  auto u = parse_url("https://Example.com/api/public/otel/v1/traces?x=1");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "Example.com");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->target, "/api/public/otel/v1/traces?x=1");
  EXPECT_EQ(u->host_header(), "Example.com");
  u = parse_url("http://127.0.0.1:4318");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, "4318");
  EXPECT_EQ(u->target, "/");
  EXPECT_EQ(u->host_header(), "127.0.0.1:4318");
  u = parse_url("http://[::1]:9/x");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->host_header(), "[::1]:9");
  EXPECT_FALSE(parse_url("ftp://x/"));
  EXPECT_FALSE(parse_url("http://:80/"));
  EXPECT_FALSE(parse_url("http://h:8o/"));
}
