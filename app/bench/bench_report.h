// Measurements of a `chsync bench` run and their three renderings: a table (stdout), JSON
// (--report) and a self-contained HTML page with inline SVG charts (--html).
//
// LatencyHistogram: HdrHistogram-style log buckets. Bucket 0 holds [0, 1 µs); bucket b >= 1 holds
// [1.01^(b-1), 1.01^b) µs, so a percentile reported as the bucket's geometric middle is within
// 0.5% of the true value (clamped to the exact min/max, which are tracked). Not thread-safe: the
// bench records under its own mutex.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace chsync::bench {

class LatencyHistogram {
 public:
  static constexpr double kGrowth = 1.01;  // ≤1% bucket width: ≤0.5% error at the middle

  void record_us(double us);
  std::uint64_t count() const noexcept { return count_; }
  // q in [0, 100]; 0 when empty.
  double percentile_us(double q) const;
  double min_us() const noexcept { return count_ ? min_ : 0; }
  double max_us() const noexcept { return count_ ? max_ : 0; }
  double mean_us() const noexcept { return count_ ? sum_ / static_cast<double>(count_) : 0; }
  static std::size_t bucket_of(double us);
  static double bucket_middle(std::size_t bucket);

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  double min_ = 0, max_ = 0, sum_ = 0;
};

// One second of the run (by intended send time).
struct SecondStats {
  std::uint64_t requests = 0;  // sent
  std::uint64_t spans = 0;
  std::uint64_t ok = 0;      // 2xx responses
  std::uint64_t errors = 0;  // non-2xx + transport errors
  LatencyHistogram latency;
};

struct BenchResult {
  // Setup.
  std::string backend, endpoint, mode;  // mode: "open" (rate) or "closed" (concurrency)
  std::string rate_unit = "requests/s";
  double target_rate = 0;  // 0 in closed loop
  double duration_s = 0, ramp_s = 0;
  std::size_t concurrency = 0, batch_spans = 0;
  std::string compression, id_salt;
  std::string started_at, version;  // RFC 3339 UTC; chsync version
  // Input.
  std::uint64_t input_spans = 0, input_bytes_encoded = 0, input_batches = 0, loops = 0;
  bool input_truncated = false;
  // Outcome.
  double elapsed_s = 0;  // send window actually used (≥ duration_s when behind)
  std::uint64_t requests_sent = 0, requests_completed = 0, requests_ok = 0;
  std::uint64_t spans_sent = 0, spans_ok = 0;
  std::uint64_t bytes_raw = 0, bytes_sent = 0;  // of accepted (2xx) requests
  std::uint64_t retries = 0;                    // the bench never retries: failures count as errors
  std::uint64_t errors_http = 0, errors_transport = 0, unfinished = 0;
  std::map<int, std::uint64_t> status_codes;
  std::map<std::string, std::uint64_t> transport_errors;
  double max_schedule_lag_ms = 0;  // how far the generator fell behind its intended times
  bool stopped_early = false;      // every answer was a failure: sending stopped
  std::string first_error;         // the first failure, for the headline
  LatencyHistogram latency;
  std::vector<SecondStats> timeline;

  double achieved_rate() const;  // accepted requests or spans per second, in rate_unit
  double error_rate() const;     // failed / completed requests, 0..1
};

std::string render_table(const BenchResult& r);
std::string render_json(const BenchResult& r);
std::string render_html(const BenchResult& r);

}  // namespace chsync::bench
