#include "app/config/units.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "pipeline/span.h"

namespace chsync {
namespace {
bool split_number(std::string_view t, double& num, std::string_view& unit) {
  std::size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  if (i == 0) return false;
  auto r = std::from_chars(t.data(), t.data() + i, num);
  if (r.ec != std::errc() || r.ptr != t.data() + i) return false;
  unit = t.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return num >= 0 && std::isfinite(num);
}
}  // namespace

bool parse_duration(std::string_view t, std::chrono::milliseconds& out) {
  double n = 0;
  std::string_view u;
  if (!split_number(t, n, u)) return false;
  double ms = 0;
  if (u.empty()) {
    if (n != 0) return false;  // a bare number is ambiguous except 0 (ms stays 0)
  } else if (u == "ms") ms = n;
  else if (u == "s") ms = n * 1000;
  else if (u == "m" || u == "min") ms = n * 60000;
  else if (u == "h") ms = n * 3600000;
  else if (u == "d") ms = n * 86400000;
  else return false;
  out = std::chrono::milliseconds(static_cast<std::int64_t>(ms));
  return true;
}

bool parse_size(std::string_view t, std::uint64_t& out) {
  double n = 0;
  std::string_view u;
  if (!split_number(t, n, u)) return false;
  double mult = 1;
  if (u.empty() || u == "B") mult = 1;
  else if (u == "K" || u == "KB" || u == "k") mult = 1e3;
  else if (u == "KiB") mult = 1024;
  else if (u == "M" || u == "MB") mult = 1e6;
  else if (u == "MiB") mult = 1024.0 * 1024;
  else if (u == "G" || u == "GB") mult = 1e9;
  else if (u == "GiB") mult = 1024.0 * 1024 * 1024;
  else return false;
  out = static_cast<std::uint64_t>(n * mult);
  return true;
}

bool parse_rate(std::string_view t, Rate& out) {
  double n = 0;
  std::string_view u;
  if (!split_number(t, n, u)) return false;
  if (u == "/s" || u == "req/s" || u == "requests/s") {
    out = {n, false};
  } else if (u == "spans/s") {
    out = {n, true};
  } else {
    return false;
  }
  return true;
}

bool parse_time_bound(std::string_view t, std::int64_t& epoch_ms) {
  if (t.size() == 10) {
    std::string full(t);
    full += "T00:00:00Z";
    return parse_rfc3339_ms(full, epoch_ms);
  }
  return parse_rfc3339_ms(t, epoch_ms);
}

}  // namespace chsync
