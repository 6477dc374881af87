// OtlpExporter: chsync::Exporter over OTLP/HTTP protobuf (protocols §B, design "HTTP behaviour").
//
// Contract (in addition to backends/exporter.h):
// * Batching: a request is cut at batch_spans spans or batch_bytes of encoded spans (before
//   compression); a span larger than batch_bytes goes alone. Each span is encoded once.
// * Slots: at most max_in_flight batches are in flight; send() blocks (time_blocked_ms) while all
//   slots are taken and a full batch is ready. Memory: at most max_in_flight + 1 batches.
// * before_send_ runs on the thread that calls send()/stop(), once per batch, before its first
//   request; retries and 413 halves of that batch do not call it again.
// * Outcomes (one Ack per span, from any thread): 2xx → kDelivered (partialSuccess is logged and
//   counted, not retried); 429/502/503/504, refused/reset/timeout → retried with full-jitter
//   backoff, Retry-After honoured fully (not capped at retry.max_backoff) but never beyond
//   retry.max_elapsed from the first attempt; 413 → halves (a single span → kDead);
//   other 4xx/5xx → kDead with status + response excerpt + the uncompressed body;
//   401/403/404, TLS verification failure, or retries exhausted → fatal: send() returns false and
//   every span not yet acknowledged comes back kFailed.
// * rate > 0 limits requests/s (or spans/s with rate_is_spans) with a token bucket (burst of one
//   request) on the send() thread; retries are not rate-limited.
// * For Profile::kLangfuse the header x-langfuse-ingestion-version: 4 is added unless given.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "backends/exporter.h"
#include "backends/http/http_client.h"
#include "backends/http/retry_policy.h"
#include "backends/otlp/otlp_proto.h"

namespace chsync::otlp {

class JsonSpanEncoder;

std::string_view chsync_version() noexcept;

struct OtlpOptions {
  enum class Encoding : std::uint8_t { kProtobuf, kJson };
  enum class Compression : std::uint8_t { kGzip, kNone };

  std::string instance = "otlp";  // state key
  std::string endpoint;           // full traces URL (see resolve_endpoint); empty: the default
  http::Headers headers;          // extra request headers (auth, x-honeycomb-team, ...)
  Encoding encoding = Encoding::kProtobuf;  // kJson: OTLP/JSON (§B.2); Phoenix rejects it (415)
  Compression compression = Compression::kGzip;
  int gzip_level = 1;  // libdeflate level: 1 is ~1.6x faster than 6 for ~8% larger bodies (bench)
  std::chrono::milliseconds timeout{10000};  // per request attempt; 0: none
  std::chrono::milliseconds connect_timeout{10000};
  std::size_t max_in_flight = 16;
  std::size_t batch_spans = 512;
  std::size_t batch_bytes = 4u << 20;
  http::RetryPolicy retry{};  // 1 s initial, 30 s max, 5 min max_elapsed, no attempt cap
  double rate = 0;  // 0: unlimited
  bool rate_is_spans = false;
  std::string ca_file;
  bool insecure = false;
  std::string client_cert, client_key;
  Profile profile = Profile::kGeneric;
  StringPairs resource_attributes;  // user-given; win over the defaults below
  std::string service_name = "claude-code";
  std::string service_version;  // empty: chsync version (not sent with the langfuse profile: Langfuse
                                // would show it as every trace's `version`)
  std::string environment;      // --environment: resource deployment.environment.name (Langfuse reads it)
  std::vector<std::string> tags;  // --tag: langfuse.trace.tags on roots, after "claude-code"
  std::string project_name;     // phoenix: openinference.project.name; empty: service_name
  std::string scope_name = "chsync";
  std::string scope_version;  // empty: chsync version
  std::size_t io_threads = 1;
};

class OtlpExporter final : public Exporter {
 public:
  // transport: the network seam (make_http_client in production, a fake in tests).
  OtlpExporter(OtlpOptions options, http::Url url, std::unique_ptr<http::Transport> transport);
  ~OtlpExporter() override;
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  std::string_view instance() const noexcept override { return options_.instance; }
  bool send(std::vector<Span>&& spans) override;
  bool stop(std::chrono::milliseconds drain_timeout) noexcept override;
  void flush() override;
  bool fatal() const noexcept override;
  std::string fatal_reason() const override;
  ExporterStats stats() const override;

  const std::string& resource_bytes() const noexcept { return resource_; }

 private:
  struct Part;
  struct Flight;
  struct Batch {
    std::string blob;               // concatenated ScopeSpans.spans slices
    std::vector<std::size_t> ends;  // end offset of each span's slice in blob
    std::vector<SpanRef> refs;
    bool empty() const noexcept { return refs.empty(); }
  };

  bool dispatch(Batch&& batch, std::chrono::steady_clock::time_point deadline);
  void start_part(std::uint64_t flight_id);
  void on_response(std::uint64_t flight_id, http::Response&& resp);
  void fail_all_locked(std::shared_ptr<Flight>& f, std::vector<Ack>& acks, const std::string& reason);
  void set_fatal_locked(std::string reason);
  std::string body_of(const Flight& f, std::size_t first, std::size_t last) const;
  void deliver(std::vector<Ack>& acks);

  OtlpOptions options_;
  http::Url url_;
  std::string endpoint_;
  std::string resource_, scope_;
  std::unique_ptr<http::Transport> transport_;
  SpanEncoder encoder_;
  std::unique_ptr<JsonSpanEncoder> json_encoder_;  // Encoding::kJson only
  bool json_ = false;
  std::string content_type_;
  std::string one_;  // scratch: one encoded span
  Batch cur_;
  std::chrono::steady_clock::time_point next_send_{};  // rate limiter (send thread only)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, std::shared_ptr<Flight>> flights_;
  std::uint64_t next_flight_id_ = 1;
  bool fatal_ = false;
  bool aborted_ = false;
  bool stopped_ = false;
  std::string fatal_reason_;
  ExporterStats stats_;
  std::mt19937_64 rng_;
};

// Builds an OtlpExporter with the Beast client. Returns nullptr and sets *error on a configuration
// error (bad URL, unreadable CA/cert/key) — the CLI exits 2 on it.
std::unique_ptr<Exporter> make_otlp_exporter(OtlpOptions options, std::string* error);

}  // namespace chsync::otlp
