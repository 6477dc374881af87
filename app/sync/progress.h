// Progress display: a live line on a TTY (redrawn in place, fitted to the terminal width and
// following resizes), or one log line every --progress-interval when stderr is not a terminal
// (cron, systemd, CI) — with --log-format json a JSON object with typed fields.
// The end-of-run summary is rendered here too (one line per run, one per backend), so the sync
// pipeline only hands over numbers.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "pipeline/log.h"

namespace chsync {

// What the run is doing now; the line says it instead of a fictional "100% … ETA 0:00".
enum class ProgressState { kReading, kSending, kRetrying, kDraining };
const char* to_string(ProgressState s);

struct ProgressSnapshot {
  ProgressState state = ProgressState::kReading;
  std::uint64_t files_done = 0, files_total = 0;
  std::uint64_t bytes_done = 0, bytes_total = 0;  // on-disk bytes of finished bundles
  std::uint64_t bytes_read = 0;                   // decompressed bytes read so far
  std::uint64_t spans_sent = 0;
  std::uint64_t in_flight = 0;  // requests awaiting a response
  std::uint64_t retries = 0;
  std::uint64_t dead = 0;
  double spans_per_s = 0;  // recent (last few seconds), not the average since start
  double bytes_per_s = 0;  // recent, decompressed bytes read
  double elapsed_s = 0;
  std::string last_error;  // "otlp: HTTP 503: overloaded" (empty when none)
};

// Rates over a sliding window (default 5 s) of cumulative counters.
class RecentRate {
 public:
  explicit RecentRate(double window_s = 5) : window_s_(window_s) {}
  void add(double t_s, std::uint64_t spans, std::uint64_t bytes);
  double spans_per_s() const;
  double bytes_per_s() const;

 private:
  struct Sample {
    double t;
    std::uint64_t spans, bytes;
  };
  double window_s_;
  std::deque<Sample> samples_;
};

// The state from what the counters say: draining once everything is read, retrying while the
// retry count grows, reading until the first span goes out, else sending.
ProgressState progress_state(bool input_done, bool stopping, bool retries_grew,
                             std::uint64_t spans_sent, std::uint64_t in_flight);

// One line without a newline, at most `width` columns (0: no limit). Fields are dropped by
// priority when the terminal is narrow; the last error is truncated to what remains.
std::string render_progress(const ProgressSnapshot& s, std::size_t width = 0);
// Typed fields for --log-format json.
std::vector<log::Field> progress_fields(const ProgressSnapshot& s);
// Columns of the terminal on `fd` (0 when not a terminal or unknown).
std::size_t terminal_columns(int fd);

// Escapes control characters and cuts to `max_chars` (with "…"): a backend's answer goes into
// one log line.
std::string one_line(const std::string& text, std::size_t max_chars);

struct BackendSummary {
  std::string instance, type;
  std::uint64_t spans_sent = 0, dead = 0, failed = 0, rejected = 0, retries = 0, requests = 0;
  bool fatal = false;
  std::string fatal_reason, last_error;
};

struct RunSummary {
  bool dry_run = false;
  std::uint64_t files_scanned = 0, files_updated = 0, files_skipped = 0;
  std::uint64_t spans_sent = 0, spans_deduped = 0, turns_held = 0, dead = 0, bad_lines = 0;
  std::uint64_t bytes_read = 0, spans_mapped = 0, transcript_files = 0;
  double seconds = 0;
  std::vector<BackendSummary> backends;
  std::string dead_letter_path;  // where dead letters went ("" when none)
  std::uint64_t settle_ms = 0;
  std::vector<std::string> hints;  // "nothing happened" explanations, one line each
};

// What the "nothing happened" explanations (issue 23 point 8) are made from.
struct HintInputs {
  std::vector<std::string> inputs;
  std::uint64_t files_scanned = 0, empty_files = 0, spans_mapped = 0, bad_lines = 0;
  std::uint64_t turns_held = 0, settle_ms = 0;
  std::vector<std::string> ignored_inputs;  // given explicitly but not a transcript type
};
// One line per case: no transcripts found, files without transcript entries, held turns.
std::vector<std::string> run_hints(const HintInputs& h);

// Writes the summary through `logger` (text or JSON): one run line, one line per backend
// when there are several or one failed, the dead-letter location, and the hints.
void log_summary(const RunSummary& s, const log::Logger& logger);

}  // namespace chsync
