#include "backends/http/retry_policy.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "pipeline/text.h"

namespace chsync::http {

std::chrono::milliseconds RetryPolicy::backoff_cap(std::uint32_t n) const noexcept {
  const auto base = static_cast<double>(initial_backoff.count());
  const auto cap = static_cast<double>(max_backoff.count());
  const double v =
      base * std::pow(multiplier < 1.0 ? 1.0 : multiplier, static_cast<double>(std::min(n, 62u)));
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(v, cap)));
}

std::chrono::milliseconds RetryPolicy::backoff(std::uint32_t n, std::mt19937_64& rng) const {
  const auto cap = backoff_cap(n).count();
  if (cap <= 0) return std::chrono::milliseconds(0);
  std::uniform_int_distribution<std::int64_t> dist(0, cap);
  return std::chrono::milliseconds(dist(rng));
}

std::optional<std::chrono::milliseconds> RetryPolicy::next_delay(
    std::uint32_t retries, std::chrono::milliseconds elapsed,
    std::optional<std::chrono::milliseconds> retry_after, std::mt19937_64& rng) const {
  if (max_attempts > 0 && retries + 1 >= max_attempts) return std::nullopt;
  const std::chrono::milliseconds delay = retry_after ? *retry_after : backoff(retries, rng);
  if (delay.count() < 0) return std::chrono::milliseconds(0);
  if (max_elapsed.count() > 0) {
    // elapsed + delay > max_elapsed, written so that neither side can overflow.
    if (elapsed >= max_elapsed || delay > max_elapsed - elapsed) return std::nullopt;
  }
  // Retrying forever (max_elapsed 0): a server's wait is honoured, but no timer is set further
  // out than a day (now + milliseconds::max() would overflow the clock).
  return std::min(delay, kMaxWait);
}

bool is_retryable_status(int status) noexcept {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

namespace {

int month_index(std::string_view m) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  if (m.size() != 3) return -1;
  std::string lower(m);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::size_t i = 0; i < kMonths.size(); ++i)
    if (kMonths[i] == lower) return static_cast<int>(i);
  return -1;
}

bool to_int(std::string_view s, int& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Splits on spaces, commas, dashes and colons; returns the tokens.
std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',' || s[i] == '-' || s[i] == ':')) ++i;
    std::size_t j = i;
    while (j < s.size() && !(s[j] == ' ' || s[j] == ',' || s[j] == '-' || s[j] == ':')) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    constexpr auto kMax = std::chrono::milliseconds::max();
    std::int64_t secs = 0;
    auto r = std::from_chars(value.data(), value.data() + value.size(), secs);
    if (r.ec == std::errc::result_out_of_range) return kMax;  // all digits: just too many
    if (r.ec != std::errc()) return std::nullopt;
    if (secs > kMax.count() / 1000) return kMax;
    return std::chrono::milliseconds(secs * 1000);
  }
  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT   RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
  // asctime: Sun Nov  6 08:49:37 1994
  auto t = tokens(value);
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0, mon = -1;
  if (t.size() >= 8 && month_index(t[2]) >= 0) {  // IMF / RFC 850 (weekday first)
    mon = month_index(t[2]);
    if (!to_int(t[1], day) || !to_int(t[3], year) || !to_int(t[4], hh) || !to_int(t[5], mm) ||
        !to_int(t[6], ss))
      return std::nullopt;
    if (t[3].size() == 2) year += year < 70 ? 2000 : 1900;
  } else if (t.size() == 7 && month_index(t[1]) >= 0) {  // asctime
    mon = month_index(t[1]);
    if (!to_int(t[2], day) || !to_int(t[3], hh) || !to_int(t[4], mm) || !to_int(t[5], ss) ||
        !to_int(t[6], year))
      return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits (until 2262): a date beyond is "forever", not a
  // wrapped negative delay.
  if (year > 2200) return std::chrono::milliseconds::max();
  const std::int64_t epoch_s =
      days_from_civil(year, static_cast<unsigned>(mon + 1), static_cast<unsigned>(day)) * 86400 +
      std::int64_t{hh} * 3600 + std::int64_t{mm} * 60 + ss;
  const auto target = std::chrono::system_clock::time_point(std::chrono::seconds(epoch_s));
  if (target <= now) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(target - now);
}

}  // namespace chsync::http
