#include "backends/http/settings_check.h"

#include <cctype>

#include "backends/http/http_client.h"
#include "pipeline/base64.h"
#include "pipeline/text.h"

namespace chsync::http {

namespace {
bool starts_with_ci(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != p[i]) return false;
  return true;
}
std::string printable_name(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}
// [start of authority, end of authority) in an http(s) URL, or npos.
std::pair<std::size_t, std::size_t> authority_of(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  const std::size_t begin = scheme + 3;
  const std::size_t end = url.find_first_of("/?#", begin);
  return {begin, end == std::string_view::npos ? url.size() : end};
}
}  // namespace

std::string header_error(std::string_view name, std::string_view value) {
  auto bad = [](std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
  };
  if (name.empty()) return "a header has an empty name";
  if (bad(name)) return "header name '" + printable_name(name) + "' contains CR, LF or NUL";
  for (char c : name)
    if (c == ' ' || c == ':' || c == '\t')
      return "header name '" + printable_name(name) + "' contains a space or colon";
  if (bad(value))
    return "the value of header '" + printable_name(name) + "' contains CR, LF or NUL";
  return {};
}

std::string mask_url(std::string_view url) {
  std::string out(url);
  auto [begin, end] = authority_of(out);
  if (begin != std::string::npos) {
    const auto at = out.rfind('@', end - 1);
    if (at != std::string::npos && at >= begin) {
      const auto colon = out.find(':', begin);
      if (colon != std::string::npos && colon < at) {
        out.replace(colon + 1, at - colon - 1, "****");
        end = out.find_first_of("/?#", begin);
        if (end == std::string::npos) end = out.size();
      }
    }
  }
  const auto q = out.find('?', begin == std::string::npos ? 0 : end);
  if (q == std::string::npos) return out;
  const auto hash = out.find('#', q);
  std::string query =
      out.substr(q + 1, hash == std::string::npos ? std::string::npos : hash - q - 1);
  std::string masked;
  std::size_t i = 0;
  while (i <= query.size()) {
    const auto amp = query.find('&', i);
    const std::string_view param =
        std::string_view(query).substr(i, amp == std::string::npos ? std::string::npos : amp - i);
    if (!masked.empty() || i > 0) masked += '&';
    const auto eq = param.find('=');
    if (eq == std::string_view::npos) {
      masked += param;
    } else {
      masked += param.substr(0, eq + 1);
      masked += "****";
    }
    if (amp == std::string::npos) break;
    i = amp + 1;
  }
  out.replace(q + 1, query.size(), masked);
  return out;
}

bool split_userinfo(std::string& url, std::string& user, std::string& password) {
  const auto [begin, end] = authority_of(url);
  if (begin == std::string::npos) return false;
  const auto at = url.rfind('@', end == 0 ? 0 : end - 1);
  if (at == std::string::npos || at < begin) return false;
  const std::string_view info = std::string_view(url).substr(begin, at - begin);
  const auto colon = info.find(':');
  user = percent_decode(info.substr(0, colon));
  password =
      colon == std::string_view::npos ? std::string() : percent_decode(info.substr(colon + 1));
  url.erase(begin, at - begin + 1);
  return true;
}

std::string insecure_warning(std::string_view who) {
  return std::string(who) +
         ": --insecure: TLS certificates and host names are NOT verified; anyone on the path can "
         "read the API keys and spans. Use --ca-file for a private CA instead.";
}

std::string proxy_scheme_error(std::string_view proxy_url) {
  if (proxy_url.empty() || !starts_with_ci(proxy_url, "https://")) return {};
  return "proxy " + mask_url(proxy_url) +
         ": https:// proxies are not supported (the connection to the proxy would not be "
         "encrypted, "
         "so its password would travel in clear); use an http:// proxy (HTTPS targets are still "
         "tunnelled with TLS end to end)";
}

std::string check_http_settings(std::string& endpoint,
                                std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [k, v] : headers)
    if (auto e = header_error(k, v); !e.empty()) return e;
  std::string user, password;
  if (split_userinfo(endpoint, user, password)) {
    for (const auto& [k, v] : headers) {
      if (k.size() != 13) continue;
      std::string lower;
      for (char c : k) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "authorization")
        return "endpoint " + mask_url(endpoint) +
               ": credentials in the URL and an Authorization header: give only one";
    }
    if (auto e = header_error("authorization", user + password); !e.empty())
      return "endpoint: the credentials in the URL contain CR, LF or NUL";
    headers.emplace_back("Authorization", "Basic " + base64_encode(user + ":" + password));
  }
  if (auto url = parse_url(endpoint)) {
    if (auto e = proxy_scheme_error(proxy_for(*url, proxy_env_from_process())); !e.empty())
      return e;
  }
  return {};
}

}  // namespace chsync::http
