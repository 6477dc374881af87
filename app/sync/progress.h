// Progress display: a live line on a TTY (redrawn in place), or a plain log line every
// --progress-interval when stderr is not a terminal (cron, systemd, CI).
#pragma once

#include <cstdint>
#include <string>

namespace chsync {

struct ProgressSnapshot {
  std::uint64_t files_done = 0, files_total = 0;
  std::uint64_t bytes_done = 0, bytes_total = 0;  // on-disk bytes of finished bundles
  std::uint64_t bytes_read = 0;                   // decompressed bytes read so far
  std::uint64_t spans_sent = 0;
  std::uint64_t retries = 0;
  std::uint64_t dead = 0;
  double elapsed_s = 0;
};

// One line, without a newline: "12/40 files  1.2/3.4 GB  35%  12,345 spans/s  80.1 MB/s  retries 0
// dead 0  ETA 0:42".
std::string render_progress(const ProgressSnapshot& s);

}  // namespace chsync
