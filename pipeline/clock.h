// Wall-clock time in milliseconds since the Unix epoch: state rows, reports, metrics, the map
// run's reference time. Durations use std::chrono::steady_clock instead.
#pragma once

#include <chrono>
#include <cstdint>

namespace chsync {

inline std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace chsync
