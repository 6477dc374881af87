// Exporter: the seam between the pipeline and a backend (console, file, null, otlp, langfuse...).
//
// Contract: the pipeline calls send() from one thread with spans in order. The exporter batches
// (--batch-spans / --batch-bytes), encodes, sends, retries, and reports each span's outcome exactly
// once through the AckFn (from any thread). send() blocks while the exporter holds its maximum of
// in-flight work: that is the backpressure that slows every upstream stage.
// Before a request goes out, on_before_send (if set) is called with its span keys and must return
// only once they are recorded as "in flight" (so a crash leaves a record of possible repeats);
// if it throws, the request does not leave: the exporter turns fatal and fails its spans. If it
// returns false, the request does not leave either, but the exporter carries on: its spans come
// back as kFailed acks at once (work sharing: the worker no longer holds their unit, so another
// worker sends them; docs/scaleout.md "Fencing").
// Errors: transient failures are retried inside; final rejections come back as kDead acks; a fatal
// condition (unreachable, retries exhausted, 401/403/404) makes fatal() true, send() returns false,
// and the spans not delivered come back as kFailed acks (nothing marked in the state).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/span.h"

namespace chsync {

struct SpanRef {
  std::uint64_t span_key = 0;    // Span::span_key()
  std::uint64_t bundle_seq = 0;  // Span::bundle_seq
};

struct Ack {
  enum class Outcome : std::uint8_t {
    kDelivered,  // the backend accepted the spans (2xx)
    kDead,       // rejected for good: goes to the dead-letter file, marked dead
    kFailed,     // not delivered, not marked: the next run sends them again
  };
  Outcome outcome = Outcome::kDelivered;
  std::vector<SpanRef> spans;
  int http_status = 0;
  std::string reason;  // human-readable, with a response excerpt for kDead
  // kDead only: what is needed to replay the request (replay-dead-letters).
  std::string endpoint;
  std::string content_type;
  std::string body;  // uncompressed request body
};
using AckFn = std::function<void(Ack&&)>;

struct ExporterStats {
  std::uint64_t requests = 0;  // HTTP requests attempted (including retries)
  std::uint64_t requests_ok = 0;
  std::map<std::string, std::uint64_t> retries;  // by cause: "429", "503", "reset", "timeout", ...
  std::map<int, std::uint64_t> status_counts;    // by HTTP status
  std::uint64_t spans_delivered = 0;
  std::uint64_t spans_dead = 0;
  // Spans the backend answered and refused (4xx, a single span over 413, a Langfuse per-event
  // 4xx, OTLP partialSuccess.rejected_spans): never recorded as delivered.
  std::uint64_t spans_rejected = 0;
  // Spans resent after an unknown outcome (connection reset or timeout after the request was
  // written): the backend may have them twice.
  std::uint64_t spans_maybe_repeated = 0;
  std::uint64_t bytes_raw = 0;   // encoded bodies before compression
  std::uint64_t bytes_wire = 0;  // bodies as sent
  std::uint64_t splits_413 = 0;
  std::uint64_t max_in_flight_seen = 0;
  std::uint64_t time_blocked_ms = 0;  // send() waiting for a free slot
  std::uint64_t in_flight = 0;        // requests awaiting a response now (sampled)
  // The latest failed request's reason ("HTTP 503: overloaded", "refused (...) to URL"), for the
  // progress line and the summary; every failure is also logged at debug level (-v).
  std::string last_error;
};

// Encoding ahead: an exporter that encodes each span on its own (the HTTP exporters) lets the map
// workers do it in parallel, so that its send() only copies bytes. make_encoder() may be called
// from any thread; the encoder it returns belongs to one thread.
class SpanBytesEncoder {
 public:
  virtual ~SpanBytesEncoder() = default;
  // Appends the span's bytes, exactly as the exporter's own send() would have encoded it.
  virtual void encode(const Span& span, std::string& out) = 0;
};

// A bundle's spans encoded ahead for one exporter: span i is blob[ends[i-1], ends[i]).
struct EncodedSpans {
  std::string blob;
  std::vector<std::size_t> ends;
  std::string_view span(std::size_t i) const noexcept {
    const std::size_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(blob).substr(begin, ends[i] - begin);
  }
  // Encodes one more span at the end.
  void add(SpanBytesEncoder& encoder, const Span& s) {
    encoder.encode(s, blob);
    ends.push_back(blob.size());
  }
  // One view per span, as send_encoded() takes them.
  std::vector<std::string_view> views() const {
    std::vector<std::string_view> v;
    v.reserve(ends.size());
    for (std::size_t i = 0; i < ends.size(); ++i) v.push_back(span(i));
    return v;
  }
};

class Exporter {
 public:
  virtual ~Exporter() = default;
  virtual std::string_view instance() const noexcept = 0;  // state key, e.g. "otlp" or config name
  // Takes ownership of spans. Returns false once the exporter is fatal (caller stops feeding).
  virtual bool send(std::vector<Span>&& spans) = 0;
  // An encoder for map workers, or nullptr when this exporter encodes in send() only.
  virtual std::unique_ptr<SpanBytesEncoder> make_encoder() const { return nullptr; }
  // send() with each span's bytes made by one of this exporter's encoders (encoded[i] is
  // spans[i]'s; the views stay valid until the call returns).
  virtual bool send_encoded(std::vector<Span>&& spans,
                            const std::vector<std::string_view>& encoded) {
    (void)encoded;
    return send(std::move(spans));
  }
  // Sends the partial batch now (same thread as send()), so its spans get an outcome without
  // waiting for more input; used when the input pauses (work sharing waits for claims).
  virtual void flush() {}
  // A stop was requested (SIGINT/SIGTERM), from any thread: nothing new is sent, retry waits end
  // at once (their spans come back kFailed), requests already on the wire may finish until
  // stop()'s drain deadline. Synchronous exporters have nothing to do.
  virtual void interrupt() noexcept {}
  // Sends any partial batch, waits for in-flight requests up to drain_timeout, then stops.
  // Spans still not acknowledged come back as kFailed. Returns false on timeout.
  virtual bool stop(std::chrono::milliseconds drain_timeout) noexcept = 0;
  virtual bool fatal() const noexcept = 0;
  virtual std::string fatal_reason() const = 0;
  // Any thread, any time (the progress line and the metrics endpoint read it during the run).
  virtual ExporterStats stats() const = 0;

  void set_ack_fn(AckFn fn) { ack_ = std::move(fn); }
  using BeforeSendFn = std::function<bool(const std::vector<SpanRef>&)>;
  void set_before_send(BeforeSendFn fn) { before_send_ = std::move(fn); }

 protected:
  AckFn ack_;
  BeforeSendFn before_send_;
};

}  // namespace chsync
