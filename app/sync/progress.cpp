#include "app/sync/progress.h"

#include <fmt/format.h>

#include <algorithm>

namespace chsync {
namespace {
std::string human_bytes(std::uint64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} kB", v / 1e3);
  return fmt::format("{} B", b);
}
std::string clock(double s) {
  if (s < 0 || s > 1e7) return "--:--";
  auto t = static_cast<std::uint64_t>(s);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}
}  // namespace

std::string render_progress(const ProgressSnapshot& s) {
  const double el = std::max(s.elapsed_s, 1e-3);
  const double frac = s.bytes_total ? static_cast<double>(s.bytes_done) / static_cast<double>(s.bytes_total)
                                    : (s.files_total ? static_cast<double>(s.files_done) / static_cast<double>(s.files_total) : 0);
  const double eta = frac > 0 ? el * (1 - frac) / frac : -1;
  return fmt::format("{}/{} files  {}/{}  {:.0f}%  {:.0f} spans/s  {:.1f} MB/s  retries {}  dead {}  "
                     "ETA {}",
                     s.files_done, s.files_total, human_bytes(s.bytes_done),
                     human_bytes(s.bytes_total), frac * 100, static_cast<double>(s.spans_sent) / el,
                     static_cast<double>(s.bytes_read) / 1e6 / el, s.retries, s.dead, clock(eta));
}

}  // namespace chsync
