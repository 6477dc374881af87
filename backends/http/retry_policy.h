// RetryPolicy: when and how long to wait before re-sending a request (protocols §B.5, style rule
// 9).
//
// Contract: a value type, no I/O. Retryable: HTTP 429/502/503/504 and transport failures (refused,
// reset, timeout). Backoff is exponential with full jitter: attempt n (0-based) waits a uniform
// random time in [0, min(max_backoff, initial_backoff * multiplier^n)].
// Retry-After (seconds or HTTP-date) is honoured fully, without capping at max_backoff: a server
// that asks for 60 s gets 60 s. The only bound is max_elapsed: when the next attempt would start
// after first_attempt + max_elapsed, the caller gives up (fatal, exit 3).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

namespace chsync::http {

struct RetryPolicy {
  static constexpr std::chrono::milliseconds kMaxWait{24LL * 3600 * 1000};

  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds max_elapsed{300000};  // 0: retry forever
  std::uint32_t max_attempts = 0;                 // 0: no cap (only max_elapsed counts)
  double multiplier = 2.0;

  // Upper bound of the jitter window for 0-based retry number n.
  [[nodiscard]] std::chrono::milliseconds backoff_cap(std::uint32_t n) const noexcept;
  // Full jitter: uniform in [0, backoff_cap(n)].
  [[nodiscard]] std::chrono::milliseconds backoff(std::uint32_t n, std::mt19937_64& rng) const;

  // The one retry decision of every HTTP backend. `retries` is how many retries this request had
  // already, `elapsed` the time since its first attempt, `retry_after` the server's delay if it
  // sent one. Returns the delay before the next attempt, or nullopt when the retries end now:
  // the attempt cap is reached, or the wait (backoff or Retry-After, whichever applies) would
  // start the next attempt after max_elapsed. No arithmetic here can overflow; no delay is
  // longer than kMaxWait.
  [[nodiscard]] std::optional<std::chrono::milliseconds> next_delay(
      std::uint32_t retries, std::chrono::milliseconds elapsed,
      std::optional<std::chrono::milliseconds> retry_after, std::mt19937_64& rng) const;
};

// true for 429, 502, 503, 504.
[[nodiscard]] bool is_retryable_status(int status) noexcept;

// Parses a Retry-After value: delta-seconds ("120") or an IMF-fixdate HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT", also RFC 850 and asctime forms). Returns the delay from `now`
// (0 if the date is in the past), or nullopt when the value is malformed. A delay too large for
// milliseconds saturates at milliseconds::max() (a hostile server cannot make it wrap).
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace chsync::http
