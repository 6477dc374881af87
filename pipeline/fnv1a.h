// FNV-1a over bytes: a stable (across builds and hosts) 64-bit hash for shard choice and work
// unit signatures. Not for span IDs (those are truncated SHA-256, pipeline/ids.h).
#pragma once

#include <cstdint>
#include <string_view>

namespace chsync {

inline constexpr std::uint64_t kFnvBasis = 0xcbf29ce484222325ull;

// FNV-1a over s, continuing from h (start: kFnvBasis).
inline std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace chsync
