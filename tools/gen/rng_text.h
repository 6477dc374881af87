// Deterministic PRNG, JSON string escaping and text/base64 pools for chsync-gen.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace chsync::gen {

inline std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256**: fast, good quality, fully deterministic across platforms.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {  // NOLINT(*-pro-type-member-init): s_ filled right here
    for (auto& w : s_) w = splitmix64(seed);
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n). n == 0 returns 0.
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  // Uniform in [lo, hi] (inclusive).
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }
  // Log-normal with the given median and sigma, clamped to [lo, hi].
  std::int64_t lognormal(double median, double sigma, std::int64_t lo, std::int64_t hi) {
    double u1 = unit();
    if (u1 < 1e-300) u1 = 1e-300;
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * unit());
    const double v = median * std::exp(sigma * z);
    if (v < static_cast<double>(lo)) return lo;
    if (v > static_cast<double>(hi)) return hi;
    return static_cast<std::int64_t>(v);
  }
  // Geometric-ish count with the given mean, at least lo, at most hi.
  std::int64_t count(double mean, std::int64_t lo, std::int64_t hi) {
    std::int64_t n = lo;
    const double p = 1.0 / (mean - static_cast<double>(lo) + 1.0);
    while (n < hi && !chance(p)) ++n;
    return n;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Appends v as a JSON string (with quotes). Non-ASCII UTF-8 is written raw, control characters
// are escaped (\n, \t, \r, \b, \f, else \u00XX), as Claude Code does.
inline void json_str(std::string& o, std::string_view v) {
  static constexpr char kHex[] = "0123456789abcdef";
  o.push_back('"');
  std::size_t run = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    o.append(v.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      case '\b': o += "\\b"; break;
      case '\f': o += "\\f"; break;
      default:
        o += "\\u00";
        o.push_back(kHex[c >> 4]);
        o.push_back(kHex[c & 15]);
    }
  }
  o.append(v.data() + run, v.size() - run);
  o.push_back('"');
}

}  // namespace chsync::gen
