// Option values in canonical form and typed access to them (app/config/option_values.h).
#include "app/config/option_values.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "app/config/units.h"

namespace chsync {
namespace {

using T = OptionType;

std::string typed_value(const OptionDecl& d, const std::string& text, std::string& out) {
  switch (d.type) {
    case T::kSize: {
      std::uint64_t n = 0;
      if (!parse_size(text, n)) return fmt::format("invalid size '{}' (use 64KiB, 4MiB)", text);
      out = std::to_string(n);
      return {};
    }
    case T::kDuration: {
      std::chrono::milliseconds ms{};
      if (!parse_duration(text, ms))
        return fmt::format("invalid duration '{}' (use 0, 500ms, 10s, 10m, 1h)", text);
      out = std::to_string(ms.count());
      return {};
    }
    case T::kRate: {
      Rate r;
      if (!parse_rate(text, r) || r.per_second <= 0)
        return fmt::format("invalid rate '{}' (use 50/s or 5000spans/s)", text);
      out = fmt::format("{}{}/s", r.per_second, r.spans ? "spans" : "");
      return {};
    }
    case T::kCount: {
      if (text.empty() || text.size() > 12 ||
          text.find_first_not_of("0123456789") != std::string::npos)
        return fmt::format("invalid number '{}'", text);
      const std::uint64_t n = std::stoull(text);
      if (n < d.min || (d.max && n > d.max))
        return fmt::format("{} is out of range [{}, {}]", n, d.min, d.max);
      out = std::to_string(n);
      return {};
    }
    case T::kBool: {
      if (text == "true" || text == "1" || text == "yes") out = "true";
      else if (text == "false" || text == "0" || text == "no") out = "false";
      else return fmt::format("invalid boolean '{}' (true or false)", text);
      return {};
    }
    case T::kChoice: {
      std::string v = text;
      std::transform(v.begin(), v.end(), v.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (std::find(d.choices.begin(), d.choices.end(), v) == d.choices.end())
        return fmt::format("'{}' is not one of {}", text, fmt::join(d.choices, ", "));
      out = v;
      return {};
    }
    case T::kUrl:
      if (text.rfind("http://", 0) != 0 && text.rfind("https://", 0) != 0)
        return fmt::format("'{}' is not an http:// or https:// URL", text);
      out = text;
      return {};
    case T::kString:
    case T::kHeaders:
    case T::kList: break;
  }
  out = text;
  return {};
}

}  // namespace

std::string canonical_value(const OptionDecl& d, const std::string& text, std::string& out) {
  std::string err = typed_value(d, text, out);
  if (err.empty() && d.check) {
    if (auto why = d.check(out); !why.empty()) err = fmt::format("'{}': {}", text, why);
  }
  return err;
}

std::string spec_str(const BackendSpec& s, const std::string& key) {
  auto it = s.settings.find(key);
  return it == s.settings.end() ? std::string() : it->second;
}

bool spec_has(const BackendSpec& s, const std::string& key) { return s.settings.contains(key); }

std::uint64_t spec_u64(const BackendSpec& s, const std::string& key) {
  const std::string v = spec_str(s, key);
  return v.empty() ? 0 : std::stoull(v);
}

std::chrono::milliseconds spec_ms(const BackendSpec& s, const std::string& key) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(spec_u64(s, key)));
}

bool spec_bool(const BackendSpec& s, const std::string& key) { return spec_str(s, key) == "true"; }

std::vector<std::string> spec_list(const BackendSpec& s, const std::string& key) {
  std::vector<std::string> out;
  for (std::size_t i = 0;; ++i) {
    auto it = s.settings.find(key + "." + std::to_string(i));
    if (it == s.settings.end()) return out;
    out.push_back(it->second);
  }
}

}  // namespace chsync
