#include "backends/http/batching_exporter.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "pipeline/json_escape.h"

namespace chsync::http {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {
constexpr std::size_t kExcerptBytes = 512;
}  // namespace

std::string printable_excerpt(std::string_view s) {
  std::string out;
  append_json_escaped(out, s.substr(0, kExcerptBytes));
  if (s.size() > kExcerptBytes) out += "...";
  return out;
}

std::string HttpCodec::error_message(const Response& r) const {
  return r.body.substr(0, kExcerptBytes);
}

// A set of a batch's spans sent as one request: the whole batch, a 413 half, or the spans a
// backend asked to have again.
struct BatchingHttpExporter::Part {
  std::vector<std::uint32_t> items;  // span indexes into the batch
  std::vector<std::string> bytes;    // empty, or per item: what to send instead of its encoding
  std::shared_ptr<const std::string> wire;
  std::size_t raw_size = 0;
  std::uint32_t retries = 0;
  Clock::time_point first_attempt{};
  bool waiting = false;  // a retry timer is set (interrupt() ends it)
};

// One max_in_flight slot: a batch and the parts of it still to be sent (front = in progress).
struct BatchingHttpExporter::Flight {
  std::uint64_t id = 0;
  Batch batch;
  std::deque<Part> parts;
};

BatchingHttpExporter::BatchingHttpExporter(BatchingOptions options, Url url,
                                           std::unique_ptr<Transport> transport,
                                           std::unique_ptr<HttpCodec> codec)
    : options_(std::move(options)),
      url_(std::move(url)),
      transport_(std::move(transport)),
      codec_(std::move(codec)),
      rng_(std::random_device{}()) {
  if (options_.max_in_flight == 0) options_.max_in_flight = 1;
  if (options_.batch_spans == 0) options_.batch_spans = 1;
  endpoint_ = (url_.tls ? "https://" : "http://") + url_.host_header() + url_.target;
}

BatchingHttpExporter::~BatchingHttpExporter() {
  bool stopped = false;
  {
    std::lock_guard lock(mu_);
    stopped = stopped_;
  }
  if (!stopped) stop(milliseconds(0));
}

bool BatchingHttpExporter::fatal() const noexcept {
  std::lock_guard lock(mu_);
  return fatal_;
}

std::string BatchingHttpExporter::fatal_reason() const {
  std::lock_guard lock(mu_);
  return fatal_reason_;
}

ExporterStats BatchingHttpExporter::stats() const {
  std::lock_guard lock(mu_);
  ExporterStats s = stats_;
  s.in_flight = flights_.size();
  return s;
}

void BatchingHttpExporter::deliver(std::vector<Ack>& acks) {
  for (auto& a : acks)
    if (ack_ && !a.spans.empty()) ack_(std::move(a));
  acks.clear();
}

void BatchingHttpExporter::fail_batch(Batch&& batch, std::string reason) {
  std::vector<Ack> acks(1);
  acks[0].outcome = Ack::Outcome::kFailed;
  acks[0].spans = std::move(batch.refs);
  acks[0].reason = std::move(reason);
  deliver(acks);
}

bool BatchingHttpExporter::send(std::vector<Span>&& spans) { return send_spans(spans, nullptr); }

bool BatchingHttpExporter::send_encoded(std::vector<Span>&& spans,
                                        const std::vector<std::string_view>& encoded) {
  if (encoded.size() != spans.size())
    throw std::logic_error("send_encoded: " + std::to_string(encoded.size()) + " encodings for " +
                           std::to_string(spans.size()) + " spans");
  return send_spans(spans, &encoded);
}

bool BatchingHttpExporter::send_spans(const std::vector<Span>& spans,
                                      const std::vector<std::string_view>* encoded) {
  {
    std::unique_lock lock(mu_);
    if (fatal_ || interrupted_) {
      Batch b;
      for (const auto& s : spans) b.refs.push_back({s.span_key(), s.bundle_seq});
      std::string reason = fatal_ ? fatal_reason_ : "stopped before sending";
      lock.unlock();
      fail_batch(std::move(b), std::move(reason));
      return false;
    }
  }
  const auto forever = Clock::time_point::max();
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    std::string_view bytes;
    if (encoded) {
      bytes = (*encoded)[i];
    } else {
      one_.clear();
      codec_->encode_span(s, one_);
      bytes = one_;
    }
    if (!cur_.empty() && cur_.blob.size() + bytes.size() > options_.batch_bytes) {
      dispatch(std::move(cur_), forever);
      cur_ = Batch{};
    }
    cur_.blob += bytes;
    cur_.ends.push_back(cur_.blob.size());
    cur_.refs.push_back({s.span_key(), s.bundle_seq});
    if (cur_.refs.size() >= options_.batch_spans || cur_.blob.size() >= options_.batch_bytes) {
      dispatch(std::move(cur_), forever);
      cur_ = Batch{};
    }
  }
  return !fatal();
}

void BatchingHttpExporter::flush() {
  if (cur_.empty()) return;
  dispatch(std::move(cur_), Clock::time_point::max());
  cur_ = Batch{};
}

void BatchingHttpExporter::interrupt() noexcept {
  std::vector<Ack> acks;
  {
    std::lock_guard lock(mu_);
    if (interrupted_) return;
    interrupted_ = true;
    // Retry waits end now: their spans have no outcome, the next run sends them.
    for (auto it = flights_.begin(); it != flights_.end();) {
      if (!it->second->parts.empty() && it->second->parts.front().waiting) {
        fail_all_locked(*it->second, acks, "stopped while waiting to retry");
        it = flights_.erase(it);
      } else {
        ++it;
      }
    }
    cv_.notify_all();
  }
  try {
    deliver(acks);
  } catch (...) {  // the ack function records state; a failure there is reported by its owner
  }
}

void BatchingHttpExporter::rate_limit(std::size_t spans, Clock::time_point deadline) {
  if (options_.rate <= 0) return;
  const double cost = options_.rate_is_spans ? static_cast<double>(spans) : 1.0;
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(cost / options_.rate));
  const auto now = Clock::now();
  const auto at = std::max(now, next_send_);
  next_send_ = at + interval;
  if (at <= now) return;
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, std::min(at, deadline), [&] { return interrupted_ || fatal_; });
}

void BatchingHttpExporter::dispatch(Batch&& batch, Clock::time_point deadline) {
  if (batch.empty()) return;
  const auto t0 = Clock::now();
  rate_limit(batch.refs.size(), deadline);
  std::unique_lock lock(mu_);
  const bool got_slot = cv_.wait_until(lock, deadline, [&] {
    return fatal_ || aborted_ || interrupted_ || flights_.size() < options_.max_in_flight;
  });
  stats_.time_blocked_ms += static_cast<std::uint64_t>(
      std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count());
  if (!got_slot || fatal_ || aborted_ || interrupted_) {
    std::string reason = fatal_ ? fatal_reason_ : "stopped before sending";
    lock.unlock();
    fail_batch(std::move(batch), std::move(reason));
    return;
  }
  auto flight = std::make_shared<Flight>();
  flight->id = next_flight_id_++;
  flight->batch = std::move(batch);
  Part part;
  part.items.resize(flight->batch.refs.size());
  for (std::uint32_t i = 0; i < part.items.size(); ++i) part.items[i] = i;
  flight->parts.push_back(std::move(part));
  const std::uint64_t id = flight->id;
  flights_.emplace(id, flight);
  stats_.max_in_flight_seen = std::max<std::uint64_t>(stats_.max_in_flight_seen, flights_.size());
  lock.unlock();
  // Record "in flight" before the request can leave (a crash leaves a record of possible
  // repeats). If that record cannot be written (disk full), the request must not leave at all.
  if (before_send_) {
    try {
      if (!before_send_(flight->batch.refs)) {
        // Refused (fenced: the work unit changed hands): this request must not leave, but the
        // exporter carries on.
        std::vector<Ack> refused;
        {
          std::lock_guard relock(mu_);
          if (auto it = flights_.find(id); it != flights_.end()) {
            fail_all_locked(*it->second, refused, "not sent: the work unit changed hands");
            flights_.erase(it);
          }
          cv_.notify_all();
        }
        deliver(refused);
        return;
      }
    } catch (const std::exception& e) {
      std::vector<Ack> failed;
      {
        std::lock_guard relock(mu_);
        set_fatal_locked(std::string("cannot record the request before sending: ") + e.what());
        if (auto it = flights_.find(id); it != flights_.end()) {
          fail_all_locked(*it->second, failed, fatal_reason_);
          flights_.erase(it);
        }
        cv_.notify_all();
      }
      deliver(failed);
      return;
    }
  }
  // Body assembly and compression run on an io thread, off the pipeline.
  transport_->schedule(milliseconds(0), [this, id](bool cancelled) {
    if (!cancelled) start_part(id);
  });
}

std::vector<std::string_view> BatchingHttpExporter::views_of(const Flight& f, const Part& p) {
  std::vector<std::string_view> v;
  v.reserve(p.items.size());
  const auto& ends = f.batch.ends;
  const std::string_view blob(f.batch.blob);
  for (std::size_t k = 0; k < p.items.size(); ++k) {
    if (!p.bytes.empty()) {
      v.emplace_back(p.bytes[k]);
      continue;
    }
    const auto i = p.items[k];
    const std::size_t begin = i == 0 ? 0 : ends[i - 1];
    v.push_back(blob.substr(begin, ends[i] - begin));
  }
  return v;
}

void BatchingHttpExporter::start_part(std::uint64_t id) {
  std::shared_ptr<Flight> f;
  Part part;  // a copy of what to send (the front part may change while the body is built)
  std::shared_ptr<const std::string> wire;
  std::size_t raw_size = 0;
  {
    std::lock_guard lock(mu_);
    auto it = flights_.find(id);
    if (it == flights_.end() || aborted_ || it->second->parts.empty()) return;
    f = it->second;
    Part& p = f->parts.front();
    p.waiting = false;
    if (!p.wire) {
      part.items = p.items;
      part.bytes = p.bytes;
    }
    wire = p.wire;
    raw_size = p.raw_size;
    if (p.first_attempt == Clock::time_point{}) p.first_attempt = Clock::now();
  }
  // The batch is immutable once dispatched: build and compress outside the lock.
  if (!wire) {
    std::string body = codec_->request_body(views_of(*f, part));
    raw_size = body.size();
    codec_->compress(body);
    wire = std::make_shared<const std::string>(std::move(body));
  }
  const std::string_view encoding = codec_->content_encoding();
  {
    std::lock_guard lock(mu_);
    auto it = flights_.find(id);
    if (it == flights_.end() || it->second->parts.empty()) return;
    Part& p = it->second->parts.front();
    p.wire = wire;
    p.raw_size = raw_size;
    ++stats_.requests;
    stats_.bytes_raw += raw_size;
    stats_.bytes_wire += wire->size();
  }
  Request req;
  req.url = url_;
  req.headers.reserve(options_.headers.size() + 2);
  req.headers.emplace_back("Content-Type", std::string(codec_->content_type()));
  if (!encoding.empty()) req.headers.emplace_back("Content-Encoding", std::string(encoding));
  for (const auto& h : options_.headers) req.headers.push_back(h);
  req.body = std::move(wire);
  transport_->post(std::move(req), [this, id](Response&& r) { on_response(id, std::move(r)); });
}

void BatchingHttpExporter::note_error_locked(const std::string& what) {
  stats_.last_error = what;
  if (logger().enabled(log::Level::kDebug))
    logger().debug(
        fmt::format("{}[{}]: request failed: {}", options_.kind, options_.instance, what));
}

void BatchingHttpExporter::set_fatal_locked(std::string reason) {
  note_error_locked(reason);
  if (fatal_) return;
  fatal_ = true;
  fatal_reason_ = std::move(reason);
  logger().error(fmt::format("{}[{}]: {}", options_.kind, options_.instance, fatal_reason_));
  cv_.notify_all();
}

void BatchingHttpExporter::fail_all_locked(Flight& f, std::vector<Ack>& acks,
                                           const std::string& reason) {
  Ack a;
  a.outcome = Ack::Outcome::kFailed;
  for (const auto& p : f.parts)
    for (auto i : p.items) a.spans.push_back(f.batch.refs[i]);
  a.reason = reason;
  acks.push_back(std::move(a));
  f.parts.clear();
}

void BatchingHttpExporter::dead_locked(const Flight& f, const Part& p,
                                       const std::vector<std::uint32_t>& which, int status,
                                       std::string reason, std::vector<Ack>& acks) {
  Part dead;
  if (which.empty()) {
    dead.items = p.items;
    dead.bytes = p.bytes;
  } else {
    for (auto pos : which) {
      dead.items.push_back(p.items[pos]);
      if (!p.bytes.empty()) dead.bytes.push_back(p.bytes[pos]);
    }
  }
  if (dead.items.empty()) return;
  Ack a;
  a.outcome = Ack::Outcome::kDead;
  a.http_status = status;
  a.reason = std::move(reason);
  note_error_locked(a.reason);
  a.endpoint = endpoint_;
  a.content_type = std::string(codec_->content_type());
  a.body = codec_->request_body(views_of(f, dead));
  for (auto i : dead.items) a.spans.push_back(f.batch.refs[i]);
  stats_.spans_dead += dead.items.size();
  acks.push_back(std::move(a));
}

std::string BatchingHttpExporter::excerpt(const Response& r) const {
  const std::string msg = codec_->error_message(r);
  return "HTTP " + std::to_string(r.status) +
         (msg.empty() ? std::string() : ": " + printable_excerpt(msg));
}

// Decides a retry of the front part. Returns true when a retry is scheduled (caller sets the
// timer), false when the flight ended (its spans are in acks).
bool BatchingHttpExporter::retry_or_fatal_locked(Flight& f, const Response& r,
                                                 const std::string& cause,
                                                 const std::string& detail,
                                                 std::vector<Ack>& acks) {
  note_error_locked(detail);
  if (aborted_ || interrupted_) {
    fail_all_locked(f, acks, "stopped (last answer: " + detail + ")");
    return false;
  }
  if (fatal_) {
    fail_all_locked(f, acks, fatal_reason_);
    return false;
  }
  Part& part = f.parts.front();
  std::optional<milliseconds> retry_after;
  if (!r.retry_after.empty()) retry_after = parse_retry_after(r.retry_after);
  const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - part.first_attempt);
  const auto delay = options_.retry.next_delay(part.retries, elapsed, retry_after, rng_);
  if (!delay) {
    std::string why = "retries exhausted after " + std::to_string(elapsed.count()) + " ms (" +
                      std::to_string(part.retries + 1) + " attempts)";
    if (retry_after)
      why += "; the backend asked to wait " + printable_excerpt(r.retry_after) +
             " s (Retry-After), beyond the retry budget";
    set_fatal_locked(why + ", last: " + detail);
    fail_all_locked(f, acks, fatal_reason_);
    return false;
  }
  ++part.retries;
  ++stats_.retries[cause];
  part.waiting = true;
  schedule_retry(f.id, *delay);
  return true;
}

void BatchingHttpExporter::schedule_retry(std::uint64_t id, milliseconds delay) {
  transport_->schedule(delay, [this, id](bool cancelled) {
    if (!cancelled) return start_part(id);
    Response c;
    c.error = TransportError::kCancelled;
    on_response(id, std::move(c));
  });
}

void BatchingHttpExporter::on_success_locked(Flight& f, const Response& r, std::vector<Ack>& acks) {
  ++stats_.requests_ok;
  Part part = std::move(f.parts.front());
  f.parts.pop_front();
  SuccessReading rd = codec_->read_success(r, views_of(f, part));
  std::vector<std::uint8_t> mark(part.items.size(), 0);  // 1 rejected, 2 retry
  std::vector<std::uint32_t> rejected;
  for (auto pos : rd.rejected)
    if (pos < mark.size() && mark[pos] == 0) {
      mark[pos] = 1;
      rejected.push_back(pos);
    }
  Part again;
  again.retries = part.retries;
  again.first_attempt = part.first_attempt;
  const bool own_bytes = !rd.retry_bytes.empty() && rd.retry_bytes.size() == rd.retry.size();
  for (std::size_t k = 0; k < rd.retry.size(); ++k) {
    const auto pos = rd.retry[k];
    if (pos >= mark.size() || mark[pos] != 0) continue;
    mark[pos] = 2;
    again.items.push_back(part.items[pos]);
    if (own_bytes) {
      again.bytes.push_back(std::move(rd.retry_bytes[k]));
    } else if (!part.bytes.empty()) {
      again.bytes.push_back(part.bytes[pos]);
    }
  }
  Ack ok;
  ok.outcome = Ack::Outcome::kDelivered;
  ok.http_status = r.status;
  for (std::size_t i = 0; i < mark.size(); ++i)
    if (mark[i] == 0) ok.spans.push_back(f.batch.refs[part.items[i]]);
  stats_.spans_delivered += ok.spans.size();
  acks.push_back(std::move(ok));
  if (!rejected.empty()) {
    // Every span recorded as rejected is counted, also when the backend only gave a number
    // (its number is in the reason): the report's counts then add up to the spans sent.
    stats_.spans_rejected += rejected.size();
    logger().warn(fmt::format("{}[{}]: the backend rejected spans of a {}-span request: {}",
                              options_.kind, options_.instance, part.items.size(),
                              printable_excerpt(rd.rejected_reason)));
    dead_locked(f, part, rejected, rd.rejected_status != 0 ? rd.rejected_status : r.status,
                "rejected: " + printable_excerpt(rd.rejected_reason), acks);
  }
  if (!again.items.empty()) {
    f.parts.push_front(std::move(again));
    retry_or_fatal_locked(f, r, "partial", printable_excerpt(rd.retry_reason), acks);
  }
}

void BatchingHttpExporter::on_response(std::uint64_t id, Response&& r) {
  std::vector<Ack> acks;
  bool next = false;
  {
    std::lock_guard lock(mu_);
    auto it = flights_.find(id);
    if (it == flights_.end() || it->second->parts.empty()) return;  // already acknowledged
    std::shared_ptr<Flight> fp = it->second;
    Flight& f = *fp;
    Part& part = f.parts.front();
    const std::size_t n = part.items.size();
    bool retrying = false;
    if (r.resent_after_unknown) stats_.spans_maybe_repeated += n;
    if (r.client_resends != 0) {  // the client's own resend after a reset on a reused connection
      stats_.requests += r.client_resends;
      stats_.retries["reset"] += r.client_resends;
    }
    if (r.error != TransportError::kNone) {
      if (r.request_written && r.error != TransportError::kCancelled)
        stats_.spans_maybe_repeated += n;
      const std::string detail =
          std::string(to_string(r.error)) + " (" + r.error_message + ") to " + endpoint_;
      if (r.error == TransportError::kCancelled) {
        fail_all_locked(f, acks, "cancelled");
      } else if (r.error == TransportError::kTls) {
        set_fatal_locked("TLS failure: " + detail);
        fail_all_locked(f, acks, fatal_reason_);
      } else {  // refused, reset, timeout, DNS, malformed answer: connection failures
        retrying = retry_or_fatal_locked(f, r, std::string(to_string(r.error)), detail, acks);
      }
    } else {
      ++stats_.status_counts[r.status];
      const int st = r.status;
      if (st >= 200 && st < 300) {
        on_success_locked(f, r, acks);
        retrying = !f.parts.empty() && f.parts.front().waiting;
      } else if (st == 413 && n > 1) {
        ++stats_.splits_413;
        Part a, b;
        const auto half = static_cast<std::ptrdiff_t>(n / 2);
        a.items.assign(part.items.begin(), part.items.begin() + half);
        b.items.assign(part.items.begin() + half, part.items.end());
        if (!part.bytes.empty()) {
          a.bytes.assign(part.bytes.begin(), part.bytes.begin() + half);
          b.bytes.assign(part.bytes.begin() + half, part.bytes.end());
        }
        f.parts.pop_front();
        f.parts.push_front(std::move(b));
        f.parts.push_front(std::move(a));
      } else if (st == 401 || st == 403 || st == 404) {
        std::string hint, base = endpoint_;
        while (!base.empty() && base.back() == '/') base.pop_back();
        // An OTLP/HTTP collector serves traces at /v1/traces: a 404 elsewhere is a missing path.
        if (st == 404 && options_.kind == "otlp" &&
            (base.size() < 10 || base.compare(base.size() - 10, 10, "/v1/traces") != 0))
          hint = " (did you mean " + base + "/v1/traces?)";
        set_fatal_locked(excerpt(r) + " from " + endpoint_ + hint);
        fail_all_locked(f, acks, fatal_reason_);
      } else if (is_retryable_status(st)) {
        retrying = retry_or_fatal_locked(f, r, std::to_string(st), excerpt(r), acks);
      } else {
        std::string reason = excerpt(r);
        if (st == 413) reason += " (a single span is over the backend's request size limit)";
        stats_.spans_rejected += n;
        dead_locked(f, part, {}, st, std::move(reason), acks);
        f.parts.pop_front();
      }
    }
    if (!retrying) {
      if (!f.parts.empty() && (aborted_ || fatal_ || interrupted_)) {
        fail_all_locked(f, acks, fatal_ ? fatal_reason_ : "stopped");
      }
      if (f.parts.empty()) {
        flights_.erase(id);
        cv_.notify_all();
      } else {
        next = true;
      }
    }
  }
  deliver(acks);
  if (next) start_part(id);
}

bool BatchingHttpExporter::stop(milliseconds drain_timeout) noexcept {
  try {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return true;
    }
    const auto deadline = Clock::now() + drain_timeout;
    if (!cur_.empty()) {
      dispatch(std::move(cur_), deadline);
      cur_ = Batch{};
    }
    std::vector<Ack> acks;
    bool ok = false;
    {
      std::unique_lock lock(mu_);
      ok = cv_.wait_until(lock, deadline, [&] { return flights_.empty(); });
      aborted_ = true;
      stopped_ = true;
      for (auto& [fid, f] : flights_)
        fail_all_locked(*f, acks, "not acknowledged before the drain timeout");
      flights_.clear();
      cv_.notify_all();
    }
    deliver(acks);
    transport_->shutdown();
    return ok;
  } catch (...) {
    return false;
  }
}

}  // namespace chsync::http
