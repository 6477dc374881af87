// BatchingHttpExporter: the one HTTP exporter core behind every network backend (OTLP in every
// profile, Langfuse legacy ingestion). It owns batching, the max_in_flight slots, the retry
// decision, 413 halving, drain and stop, and the stats; a backend supplies only an HttpCodec
// (how a span is encoded, how a request body is framed, how a 2xx answer is read).
//
// Contract (in addition to backends/exporter.h):
// * Batching: a request is cut at batch_spans spans or batch_bytes of encoded spans (before
//   compression); a span larger than batch_bytes goes alone. Each span is encoded once: on the
//   thread that calls send(), or ahead on a map worker (make_encoder, send_encoded: send() then
//   only copies its bytes).
// * Slots: at most max_in_flight batches are in flight; send() blocks (time_blocked_ms) while all
//   slots are taken. Memory: at most max_in_flight + 1 batches.
// * before_send_ runs on the send() thread once per batch, before its first request; retries and
//   413 halves do not call it again. When it returns false the batch never leaves and its spans
//   come back kFailed at once (work sharing: fenced); the exporter carries on.
// * Outcomes, one Ack per span, from any thread:
//   2xx → the codec's reading: kDelivered, or kDead for the spans it says the backend refused
//        (OTLP partialSuccess, a Langfuse per-event 4xx), or a resend for the spans it says may
//        be retried (a Langfuse per-event 429/5xx);
//   413 → halves (a single span → kDead);
//   401/403/404, TLS failure → fatal;
//   429/502/503/504 and connection failures (refused, reset, timeout, DNS, malformed answer) →
//        retried per RetryPolicy::next_delay (full jitter; Retry-After honoured, never beyond
//        retry.max_elapsed: a longer Retry-After ends the retries at once → fatal);
//   any other status → kDead with the status, an excerpt and the uncompressed request body.
//   Fatal: send() returns false and every span not yet acknowledged comes back kFailed.
// * interrupt() (a stop signal): retry waits end at once (their spans → kFailed), send()/flush()
//   stop sending, requests on the wire keep running until stop()'s drain deadline.
// * rate > 0 limits requests/s (or spans/s with rate_is_spans), token bucket with a burst of one
//   request, on the send() thread; retries are not rate-limited.
// * stats() may be called from any thread at any time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/log.h"

#include "backends/exporter.h"
#include "backends/http/http_client.h"
#include "backends/http/retry_policy.h"

namespace chsync::http {

// Backend text (bodies, header values) as it may appear in our messages: JSON-escaped (no raw
// control character, newline or escape sequence reaches a terminal or log line) and cut at 512
// bytes ("..." marks the cut).
std::string printable_excerpt(std::string_view s);

// What a backend makes of a 2xx answer to one request. Positions index the request's spans
// (0-based, in the order given to read_success). Spans named nowhere are delivered.
struct SuccessReading {
  std::vector<std::uint32_t> rejected;  // refused for good → kDead (and counted as rejected)
  // OTLP partialSuccess gives only a count: then every span of the request is in `rejected`
  // (none can be called delivered) and rejected_reason quotes the backend's number.
  int rejected_status = 0;  // per-span status when the backend gives one
  std::string rejected_reason;
  std::vector<std::uint32_t> retry;  // to send again after a backoff
  // Empty, or one per `retry` entry: the encoded bytes to send for that span instead (e.g. only
  // the events of it that failed), in the codec's own format.
  std::vector<std::string> retry_bytes;
  std::string retry_reason;
};

// The backend-specific part of an HTTP exporter. encode_span runs on the send() thread; the
// other methods run on io threads and must not touch mutable state.
class HttpCodec {
 public:
  virtual ~HttpCodec() = default;
  // Appends one span's encoded bytes (opaque to the core) to out.
  virtual void encode_span(const Span& span, std::string& out) = 0;
  // An encoder producing encode_span's bytes on another thread (map workers), or nullptr.
  // Called from any thread: must only read the codec's configuration.
  virtual std::unique_ptr<SpanBytesEncoder> make_encoder() const { return nullptr; }
  // The uncompressed request body holding these encoded spans, in order.
  virtual std::string request_body(const std::vector<std::string_view>& spans) const = 0;
  virtual std::string_view content_type() const = 0;
  // The Content-Encoding of compressed bodies ("": bodies go as they are, compress does nothing).
  virtual std::string_view content_encoding() const { return {}; }
  // Compresses a request body for the wire, in place.
  virtual void compress(std::string& body) const { (void)body; }
  // Reads a 2xx answer to a request of these encoded spans.
  virtual SuccessReading read_success(const Response& r,
                                      const std::vector<std::string_view>& spans) const = 0;
  // A short human-readable message from an error answer's body (unescaped; the caller escapes).
  virtual std::string error_message(const Response& r) const;
};

struct BatchingOptions {
  std::string instance;  // state key, also the log prefix "<kind>[<instance>]"
  std::string kind;      // "otlp", "langfuse-legacy"
  Headers headers;       // extra request headers
  std::size_t max_in_flight = 16;
  std::size_t batch_spans = 512;
  std::size_t batch_bytes = 4u << 20;
  RetryPolicy retry{};
  double rate = 0;  // 0: unlimited
  bool rate_is_spans = false;
  log::Logger logger{};  // failures, rejections (default: stderr)
};

// The batching options of a backend's options (any struct with the fields named below; rate and
// rate_is_spans where it has them). The backend adjusts what it must afterwards.
template <class BackendOptions>
BatchingOptions batching_options_of(const BackendOptions& o, std::string_view kind) {
  BatchingOptions b{.instance = o.instance,
                    .kind = std::string(kind),
                    .headers = o.headers,
                    .max_in_flight = o.max_in_flight,
                    .batch_spans = o.batch_spans,
                    .batch_bytes = o.batch_bytes,
                    .retry = o.retry};
  if constexpr (requires { o.rate; }) {
    b.rate = o.rate;
    b.rate_is_spans = o.rate_is_spans;
  }
  if constexpr (requires { o.logger; }) b.logger = o.logger;
  return b;
}

// The Beast client for an exporter's options (any struct with the fields named below), or
// nullptr and *error ("<kind>: why") on a TLS configuration error.
template <class BackendOptions>
std::unique_ptr<Transport> make_exporter_client(const BackendOptions& o, std::string_view kind,
                                                std::string_view version, std::string* error) {
  ClientOptions co;
  co.connect_timeout = o.connect_timeout;
  co.request_timeout = o.timeout;
  co.max_idle_per_endpoint = o.max_in_flight;
  co.ca_file = o.ca_file;
  co.insecure = o.insecure;
  co.client_cert = o.client_cert;
  co.client_key = o.client_key;
  co.user_agent = "chsync/" + std::string(version);
  if constexpr (requires { o.io_threads; }) co.io_threads = o.io_threads;
  try {
    return make_http_client(std::move(co));
  } catch (const std::exception& e) {
    if (error) *error = std::string(kind) + ": " + e.what();
    return nullptr;
  }
}

class BatchingHttpExporter : public Exporter {
 public:
  BatchingHttpExporter(BatchingOptions options, Url url, std::unique_ptr<Transport> transport,
                       std::unique_ptr<HttpCodec> codec);
  ~BatchingHttpExporter() override;
  BatchingHttpExporter(const BatchingHttpExporter&) = delete;
  BatchingHttpExporter& operator=(const BatchingHttpExporter&) = delete;

  std::string_view instance() const noexcept override { return options_.instance; }
  bool send(std::vector<Span>&& spans) override;
  std::unique_ptr<SpanBytesEncoder> make_encoder() const override { return codec_->make_encoder(); }
  bool send_encoded(std::vector<Span>&& spans,
                    const std::vector<std::string_view>& encoded) override;
  void flush() override;
  void interrupt() noexcept override;
  bool stop(std::chrono::milliseconds drain_timeout) noexcept override;
  bool fatal() const noexcept override;
  std::string fatal_reason() const override;
  ExporterStats stats() const override;

  const std::string& endpoint() const noexcept { return endpoint_; }

 protected:
  const HttpCodec& codec() const noexcept { return *codec_; }

 private:
  struct Batch {
    std::string blob;               // concatenated encoded spans
    std::vector<std::size_t> ends;  // end offset of each span in blob
    std::vector<SpanRef> refs;
    bool empty() const noexcept { return refs.empty(); }
  };
  struct Part;
  struct Flight;

  // send() and send_encoded(): encoded null, or one view per span.
  bool send_spans(const std::vector<Span>& spans, const std::vector<std::string_view>* encoded);
  void dispatch(Batch&& batch, std::chrono::steady_clock::time_point deadline);
  void rate_limit(std::size_t spans, std::chrono::steady_clock::time_point deadline);
  void start_part(std::uint64_t flight_id);
  void on_response(std::uint64_t flight_id, Response&& r);
  void on_success_locked(Flight& f, const Response& r, std::vector<Ack>& acks);
  void schedule_retry(std::uint64_t flight_id, std::chrono::milliseconds delay);
  bool retry_or_fatal_locked(Flight& f, const Response& r, const std::string& cause,
                             const std::string& detail, std::vector<Ack>& acks);
  // kDead for positions `which` of part p (all when empty).
  void dead_locked(const Flight& f, const Part& p, const std::vector<std::uint32_t>& which,
                   int status, std::string reason, std::vector<Ack>& acks);
  static void fail_all_locked(Flight& f, std::vector<Ack>& acks, const std::string& reason);
  void set_fatal_locked(std::string reason);
  void note_error_locked(const std::string& what);  // stats_.last_error + a debug line
  const log::Logger& logger() const { return options_.logger; }
  static std::vector<std::string_view> views_of(const Flight& f, const Part& p);
  std::string excerpt(const Response& r) const;
  void deliver(std::vector<Ack>& acks);
  void fail_batch(Batch&& batch, std::string reason);

  BatchingOptions options_;
  Url url_;
  std::string endpoint_;  // for messages and dead letters (no userinfo)
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<HttpCodec> codec_;
  std::string one_;                                    // scratch: one encoded span (send thread)
  Batch cur_;                                          // send thread only
  std::chrono::steady_clock::time_point next_send_{};  // rate limiter (send thread only)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, std::shared_ptr<Flight>> flights_;
  std::uint64_t next_flight_id_ = 1;
  bool fatal_ = false;
  bool interrupted_ = false;  // interrupt(): no new requests, no retries
  bool aborted_ = false;      // stop() gave up on what was left
  bool stopped_ = false;
  std::string fatal_reason_;
  ExporterStats stats_;
  std::mt19937_64 rng_;
};

}  // namespace chsync::http
