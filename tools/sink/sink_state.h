// Shared state of chsync-sink: fault settings, counters for /stats, the span dedupe/orphan
// sets and the record file. Thread: every method may be called from any io thread; one mutex
// guards everything (requests are coarse, the lock is held for microseconds per request).
// Errors: the constructor throws std::runtime_error when the record file cannot be opened
// (startup only); apply_control returns false with a message for bad JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tools/sink/sink_decode.h"

namespace chsync::sink {

// Every field is settable by a CLI flag of the same name (dashes) and by POST /control.
struct FaultConfig {
  double fail_rate = 0.0;                  // fraction of data requests failed with fail_status
  std::vector<unsigned> fail_status{503};  // statuses used round-robin by fail-rate/fail-first
  std::uint64_t fail_first = 0;            // the first N data requests fail
  unsigned reject_all = 0;                 // 0 = off; else every data request gets this status
  double reset_rate = 0.0;                 // fraction answered by an RST after reading
  std::chrono::milliseconds latency{0};    // delay before every data response
  std::chrono::milliseconds stall{0};      // extra hold on a stall_rate fraction of requests
  double stall_rate = 1.0;
  int retry_after_s = -1;                      // <0: no Retry-After header on fault responses
  bool retry_after_date = false;               // send Retry-After as an HTTP-date
  std::uint64_t max_body_bytes = 64ull << 20;  // 413 above this (decompressed and wire size)
  double legacy_event_fail_rate = 0.0;         // per-event failures on /api/public/ingestion
  unsigned legacy_event_fail_status = 500;
  bool no_decode = false;          // read and discard bodies, answer 200
  bool protobuf_only = false;      // OTLP JSON → 415 (Phoenix behaviour)
  std::string require_basic_auth;  // "pk:sk" or empty
  std::vector<std::pair<std::string, std::string>> require_headers;
  std::int64_t partial_rejected = 0;  // >0: 200 with partial_success.rejected_spans
};

enum class FaultKind : std::uint8_t {
  kNone,    // handle normally
  kStatus,  // answer `status` without decoding or recording
  kReset,   // close with SO_LINGER 0 (RST) without responding
};

struct FaultDecision {
  FaultKind kind = FaultKind::kNone;
  unsigned status = 0;
  std::chrono::milliseconds delay{0};  // latency + stall to wait before responding
};

enum class Encoding : std::uint8_t { kProtobuf, kJson };

class SinkState {
 public:
  SinkState(FaultConfig cfg, std::uint64_t seed, const std::string& record_path);
  ~SinkState();
  SinkState(const SinkState&) = delete;
  SinkState& operator=(const SinkState&) = delete;

  [[nodiscard]] FaultConfig config() const;

  // A data request (OTLP or legacy ingestion) was fully read: counts it and tracks
  // concurrency. Returns its number (1-based). /stats, /control etc. are not counted.
  std::uint64_t request_started();
  // The response was written (status) or the connection was reset (status 0).
  void request_finished(unsigned status);

  // Fault decision for one data request (OTLP or legacy); counts injected faults.
  [[nodiscard]] FaultDecision decide_fault();
  void add_bytes(std::uint64_t wire, std::uint64_t decoded);

  // Dedupe/orphan bookkeeping and record lines for an accepted OTLP request.
  void commit_spans(const std::vector<DecodedSpan>& spans, std::uint64_t request_no);
  // Per-event fault for a legacy event id: 0 = accept, else the status to report.
  [[nodiscard]] unsigned legacy_event_fault(const std::string& event_id);
  // Records accepted legacy events and counts failed ones.
  void commit_legacy(const std::vector<const LegacyEvent*>& accepted, std::size_t failed,
                     std::uint64_t request_no);

  [[nodiscard]] std::string stats_json() const;
  [[nodiscard]] std::string config_json() const;
  // Applies a /control JSON object (same names as the CLI flags, '-' or '_').
  // `{"clear-stats": true}` also resets counters and seen sets. False + error on bad input.
  [[nodiscard]] bool apply_control(std::string_view body, std::string& error);

 private:
  struct SpanKey {
    std::uint64_t t0, t1, s;
    bool operator==(const SpanKey&) const = default;
  };
  struct SpanKeyHash {
    std::size_t operator()(const SpanKey& k) const noexcept {
      return static_cast<std::size_t>(k.t0 * 0x9E3779B97F4A7C15ull ^ k.t1 ^
                                      (k.s * 0xC2B2AE3D27D4EB4Full));
    }
  };
  static SpanKey key_of(const std::array<std::uint8_t, 16>& t,
                        const std::array<std::uint8_t, 8>& s);
  unsigned next_fail_status_locked();
  void write_record_locked(const std::string& lines);
  void clear_stats_locked();

  mutable std::mutex mu_;
  FaultConfig cfg_;
  std::mt19937_64 rng_;
  int record_fd_ = -1;
  std::size_t fail_status_next_ = 0;
  std::uint64_t fail_first_used_ = 0;

  std::uint64_t requests_total_ = 0;
  std::map<unsigned, std::uint64_t> requests_by_status_;
  std::uint64_t in_flight_ = 0;
  std::uint64_t max_concurrent_ = 0;
  std::uint64_t spans_accepted_ = 0;
  std::uint64_t spans_duplicate_ = 0;
  std::uint64_t bytes_wire_ = 0;
  std::uint64_t bytes_decoded_ = 0;
  std::map<std::string, std::uint64_t> faults_;
  std::uint64_t orphans_total_ = 0;
  std::uint64_t legacy_accepted_ = 0;
  std::uint64_t legacy_failed_ = 0;
  std::uint64_t legacy_duplicate_ = 0;
  std::unordered_set<SpanKey, SpanKeyHash> seen_;
  std::unordered_set<SpanKey, SpanKeyHash> open_parents_;  // (trace, parent) never seen yet
  std::unordered_set<std::string> legacy_seen_;            // accepted event ids
  std::unordered_set<std::string> legacy_failed_once_;     // ids already failed with 5xx
};

}  // namespace chsync::sink
