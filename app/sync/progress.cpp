#include "app/sync/progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace chsync {
namespace {

std::string human_bytes(double v) {
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} kB", v / 1e3);
  return fmt::format("{:.0f} B", v);
}

std::string human_count(double v) {
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string clock(double s) {
  if (s < 0 || s > 1e7 || !std::isfinite(s)) return "--:--";
  auto t = static_cast<std::uint64_t>(s);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

double fraction(const ProgressSnapshot& s) {
  if (s.bytes_total) return static_cast<double>(s.bytes_done) / static_cast<double>(s.bytes_total);
  if (s.files_total) return static_cast<double>(s.files_done) / static_cast<double>(s.files_total);
  return 0;
}

// Display width in terminal columns: UTF-8 continuation bytes take none.
std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

const char* to_string(ProgressState s) {
  switch (s) {
    case ProgressState::kReading: return "reading";
    case ProgressState::kSending: return "sending";
    case ProgressState::kRetrying: return "retrying";
    case ProgressState::kDraining: return "draining";
  }
  return "sending";
}

void RecentRate::add(double t, std::uint64_t spans, std::uint64_t bytes) {
  samples_.push_back({t, spans, bytes});
  while (samples_.size() > 2 && samples_.front().t < t - window_s_) samples_.pop_front();
}

double RecentRate::spans_per_s() const {
  if (samples_.size() < 2) return 0;
  const double dt = samples_.back().t - samples_.front().t;
  return dt > 0 ? static_cast<double>(samples_.back().spans - samples_.front().spans) / dt : 0;
}

double RecentRate::bytes_per_s() const {
  if (samples_.size() < 2) return 0;
  const double dt = samples_.back().t - samples_.front().t;
  return dt > 0 ? static_cast<double>(samples_.back().bytes - samples_.front().bytes) / dt : 0;
}

ProgressState progress_state(bool input_done, bool stopping, bool retries_grew,
                             std::uint64_t spans_sent, std::uint64_t in_flight) {
  if (retries_grew) return ProgressState::kRetrying;
  if (stopping || input_done) return ProgressState::kDraining;
  if (spans_sent == 0 && in_flight == 0) return ProgressState::kReading;
  return ProgressState::kSending;
}

std::string render_progress(const ProgressSnapshot& s, std::size_t width) {
  const double frac = fraction(s);
  const bool moving = s.state == ProgressState::kReading || s.state == ProgressState::kSending;
  std::string eta;
  if (moving && frac > 0 && frac < 1 && s.bytes_per_s > 0 && s.bytes_total > s.bytes_done)
    eta = "ETA " +
          clock(static_cast<double>(s.bytes_total - s.bytes_done) / std::max(s.bytes_per_s, 1.0) *
                (s.bytes_read > 0 && s.bytes_done > 0
                     ? static_cast<double>(s.bytes_read) / static_cast<double>(s.bytes_done)
                     : 1.0));
  // (display order, priority: lower is kept first, text)
  struct Part {
    int order, priority;
    std::string text;
  };
  std::vector<Part> parts = {
      {0, 0, to_string(s.state)},
      {1, 1, fmt::format("{:.0f}%", frac * 100)},
      {2, 4, fmt::format("{}/{} files", s.files_done, s.files_total)},
      {3, 2, human_count(static_cast<double>(s.spans_sent)) + " spans"},
      {4, 3, human_count(s.spans_per_s) + "/s"},
      {5, 6, fmt::format("{} in flight", s.in_flight)},
      {6, 8,
       human_bytes(static_cast<double>(s.bytes_done)) + "/" +
           human_bytes(static_cast<double>(s.bytes_total))},
      {7, 9, human_bytes(s.bytes_per_s) + "/s"},
  };
  if (s.retries) parts.push_back({8, 1, fmt::format("retries {}", s.retries)});
  if (s.dead) parts.push_back({9, 1, fmt::format("dead {}", s.dead)});
  if (!eta.empty()) parts.push_back({10, 5, eta});
  std::vector<Part> by_priority = parts;
  std::stable_sort(by_priority.begin(), by_priority.end(),
                   [](const Part& a, const Part& b) { return a.priority < b.priority; });
  std::vector<int> kept;
  std::size_t used = 0;
  // The reason of a failure matters more than the byte counts: keep room for it.
  const std::size_t reserve =
      !s.last_error.empty() && width ? std::min<std::size_t>(width / 2, 40) : 0;
  const std::string sep = "  ";
  for (const auto& p : by_priority) {
    const std::size_t need = columns(p.text) + (kept.empty() ? 0 : sep.size());
    if (width && used + need + reserve > width) continue;
    used += need;
    kept.push_back(p.order);
  }
  std::string line;
  for (const auto& p : parts) {
    if (std::find(kept.begin(), kept.end(), p.order) == kept.end()) continue;
    if (!line.empty()) line += sep;
    line += p.text;
  }
  if (!s.last_error.empty()) {
    const std::string lead = line.empty() ? "" : sep;
    if (!width) {
      line += lead + s.last_error;
    } else if (used + lead.size() + 12 <= width) {
      line += lead + one_line(s.last_error, width - used - lead.size());
    }
  }
  return line;
}

std::vector<log::Field> progress_fields(const ProgressSnapshot& s) {
  return {{"event", "progress"},
          {"state", to_string(s.state)},
          {"files_done", s.files_done},
          {"files_total", s.files_total},
          {"bytes_done", s.bytes_done},
          {"bytes_total", s.bytes_total},
          {"bytes_read", s.bytes_read},
          {"spans_sent", s.spans_sent},
          {"spans_per_s", std::round(s.spans_per_s * 10) / 10},
          {"bytes_per_s", std::round(s.bytes_per_s)},
          {"in_flight", s.in_flight},
          {"retries", s.retries},
          {"dead", s.dead},
          {"elapsed_s", std::round(s.elapsed_s * 10) / 10},
          {"error", s.last_error}};
}

std::size_t terminal_columns(int fd) {
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

std::string one_line(const std::string& text, std::size_t max_chars) {
  std::string out;
  std::size_t cols = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::string piece;
    if (c == '\n') piece = "\\n";
    else if (c == '\r') piece = "\\r";
    else if (c == '\t') piece = " ";
    else if (c < 0x20 || c == 0x7f) piece = fmt::format("\\x{:02x}", c);
    else piece = std::string(1, static_cast<char>(c));
    const std::size_t w = (c & 0xC0) == 0x80 ? 0 : piece.size();
    if (max_chars && cols + w > max_chars - 1 && i + 1 < text.size()) {
      // Do not cut inside a UTF-8 sequence.
      while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80)
        out.pop_back();
      if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0x80)) out.pop_back();
      return out + "…";
    }
    cols += w;
    out += piece;
  }
  return out;
}

std::vector<std::string> run_hints(const HintInputs& h) {
  std::vector<std::string> out;
  for (const auto& p : h.ignored_inputs)
    out.push_back(
        fmt::format("{}: not a transcript file (.jsonl, .jsonl.gz, .jsonl.zst) or an "
                    "archive; it was not read",
                    p));
  if (h.files_scanned == 0 && h.ignored_inputs.empty()) {
    std::string where;
    for (const auto& p : h.inputs) where += (where.empty() ? "" : ", ") + p;
    out.push_back(fmt::format("no transcript files (*.jsonl) found in {}", where));
  } else if (h.files_scanned > h.empty_files && h.spans_mapped == 0 && h.turns_held == 0) {
    out.push_back(fmt::format(
        "{} files read, but no Claude Code transcript entries in them (lines with \"type\": "
        "\"user\"/\"assistant\" and a sessionId); nothing to send",
        h.files_scanned - h.empty_files));
  }
  if (h.turns_held > 0) {
    const std::uint64_t min = h.settle_ms / 60000;
    out.push_back(fmt::format(
        "{} turns held back: their files changed less than --settle {} ago (a session may still be "
        "writing them); a later run sends them, --settle 0 sends them now",
        h.turns_held,
        min > 0 && h.settle_ms % 60000 == 0 ? std::to_string(min) + "m"
                                            : std::to_string(h.settle_ms) + "ms"));
  }
  return out;
}

void log_summary(const RunSummary& s, const log::Logger& logger) {
  const double mb = static_cast<double>(s.bytes_read) / 1e6;
  std::string text = fmt::format(
      "{}{} files scanned ({} updated, {} skipped), {} spans {}, {} deduped, {} held turns, {} "
      "dead, "
      "{} bad lines, {:.1f} MB in {:.2f} s ({:.1f} MB/s)",
      s.dry_run ? "dry run: " : "", s.files_scanned, s.files_updated, s.files_skipped, s.spans_sent,
      s.dry_run ? "would be sent" : "sent", s.spans_deduped, s.turns_held, s.dead, s.bad_lines, mb,
      s.seconds, mb / std::max(s.seconds, 1e-6));
  logger.write(log::Level::kInfo, text,
               {{"event", "summary"},
                {"dry_run", s.dry_run},
                {"files_scanned", s.files_scanned},
                {"files_updated", s.files_updated},
                {"files_skipped", s.files_skipped},
                {"spans_sent", s.spans_sent},
                {"spans_deduped", s.spans_deduped},
                {"turns_held", s.turns_held},
                {"dead", s.dead},
                {"bad_lines", s.bad_lines},
                {"bytes_read", s.bytes_read},
                {"duration_s", std::round(s.seconds * 100) / 100}},
               /*text_fields=*/false);
  bool any_trouble = false;
  for (const auto& b : s.backends)
    any_trouble = any_trouble || b.fatal || b.dead || b.failed || b.rejected;
  for (const auto& b : s.backends) {
    if (s.backends.size() < 2 && !any_trouble) break;
    std::string line = fmt::format("backend {}: {} spans {}", b.instance, b.spans_sent,
                                   s.dry_run ? "would be sent" : "sent");
    if (b.dead) line += fmt::format(", {} dead", b.dead);
    if (b.failed) line += fmt::format(", {} not delivered", b.failed);
    if (b.rejected) line += fmt::format(", {} rejected", b.rejected);
    if (b.retries) line += fmt::format(", {} retries", b.retries);
    const std::string& why = b.fatal ? b.fatal_reason : b.last_error;
    if (b.fatal) line += "; failed: " + one_line(why, 300);
    else if (!why.empty()) line += "; last error: " + one_line(why, 300);
    logger.write(
        b.fatal ? log::Level::kError : (b.dead || b.failed ? log::Level::kWarn : log::Level::kInfo),
        line,
        {{"event", "backend_summary"},
         {"backend", b.instance},
         {"type", b.type},
         {"spans_sent", b.spans_sent},
         {"dead", b.dead},
         {"failed", b.failed},
         {"rejected", b.rejected},
         {"retries", b.retries},
         {"requests", b.requests},
         {"status", b.fatal ? "failed" : (b.dead || b.failed ? "partial" : "ok")},
         {"error", why}},
        false);
  }
  if (s.dead && !s.dead_letter_path.empty())
    logger.write(log::Level::kWarn,
                 fmt::format("{} dead spans: the requests and the backend's answers are in {} "
                             "(send them again with: chsync replay-dead-letters)",
                             s.dead, s.dead_letter_path),
                 {{"event", "dead_letters"}, {"dead", s.dead}, {"path", s.dead_letter_path}},
                 false);
  for (const auto& h : s.hints) logger.write(log::Level::kInfo, h, {{"event", "hint"}}, false);
}

}  // namespace chsync
