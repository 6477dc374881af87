#include "backends/otlp/otlp_env.h"

#include <cctype>
#include <charconv>

namespace chsync::otlp {

namespace {}  // namespace

std::string resolve_endpoint(std::string_view flag, std::string_view traces_env,
                             std::string_view base_env) {
  flag = trim(flag);
  traces_env = trim(traces_env);
  base_env = trim(base_env);
  if (!flag.empty()) return std::string(flag);
  if (!traces_env.empty()) {
    std::string url(traces_env);
    // An empty path becomes "/".
    const auto scheme = url.find("://");
    const auto path_start = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    if (path_start == std::string::npos) url += '/';
    return url;
  }
  if (!base_env.empty()) {
    std::string url(base_env);
    if (url.back() != '/') url += '/';
    return url + "v1/traces";
  }
  return "http://127.0.0.1:4318/v1/traces";
}

std::vector<std::pair<std::string, std::string>> parse_key_values(std::string_view s,
                                                                  std::size_t* skipped) {
  std::vector<std::pair<std::string, std::string>> out;
  if (skipped) *skipped = 0;
  while (!s.empty()) {
    const auto comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    item = trim(item);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    std::string_view k = trim(item.substr(0, eq));
    if (eq == std::string_view::npos || k.empty()) {
      if (skipped) ++*skipped;
      continue;
    }
    out.emplace_back(percent_decode(k), percent_decode(trim(item.substr(eq + 1))));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_resource_attributes(
    std::string_view attrs_env, std::string_view service_name_env) {
  auto out = parse_key_values(attrs_env);
  service_name_env = trim(service_name_env);
  if (!service_name_env.empty()) {
    bool found = false;
    for (auto& [k, v] : out)
      if (k == "service.name") {
        v = std::string(service_name_env);
        found = true;
      }
    if (!found) out.emplace_back("service.name", std::string(service_name_env));
  }
  return out;
}

std::optional<std::chrono::milliseconds> parse_timeout_ms(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  std::int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return std::chrono::milliseconds(v);
}

std::optional<bool> parse_compression_gzip(std::string_view s) {
  s = trim(s);
  std::string lower(s);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "gzip") return true;
  if (lower == "none") return false;
  return std::nullopt;
}

}  // namespace chsync::otlp
