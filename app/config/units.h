// Parsing of the CLI's unit-bearing values (design Contracts): durations "0", "500ms", "10s",
// "10m", "1h", "1d"; sizes "64KiB", "4MiB", "200M", "1G", "123" (bytes); rates "50/s" (requests)
// or "5000spans/s". Each returns false on malformed input so the caller can name the flag.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace chsync {

bool parse_duration(std::string_view text, std::chrono::milliseconds& out);
bool parse_size(std::string_view text, std::uint64_t& out);
struct Rate {
  double per_second = 0;
  bool spans = false;  // true: spans/s, false: requests/s
};
bool parse_rate(std::string_view text, Rate& out);
// RFC 3339 date or date-time (for --since/--until); a bare date means 00:00:00Z.
bool parse_time_bound(std::string_view text, std::int64_t& epoch_ms);

}  // namespace chsync
