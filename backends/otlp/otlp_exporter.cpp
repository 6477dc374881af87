#include "backends/otlp/otlp_exporter.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cctype>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "backends/otlp/gzip.h"
#include "backends/otlp/otlp_json.h"

#ifndef CHSYNC_VERSION
#define CHSYNC_VERSION "0.0.0"
#endif

namespace chsync::otlp {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string_view chsync_version() noexcept { return CHSYNC_VERSION; }

namespace {
constexpr std::string_view kProtobufType = "application/x-protobuf";
constexpr std::size_t kExcerptBytes = 512;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return {};
  return buf;
}
bool contains_ci(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
  return it != hay.end();
}
}  // namespace

// A contiguous run of a batch's spans sent as one request (the whole batch, or a 413 half).
struct OtlpExporter::Part {
  std::size_t first = 0, last = 0;  // span indexes [first, last)
  std::shared_ptr<const std::string> wire;
  std::size_t raw_size = 0;
  std::uint32_t retries = 0;
  Clock::time_point first_attempt{};
};

// One max_in_flight slot: a batch and the parts of it still to be sent (front = in progress).
struct OtlpExporter::Flight {
  Batch batch;
  std::deque<Part> parts;
};

OtlpExporter::OtlpExporter(OtlpOptions options, http::Url url, std::unique_ptr<http::Transport> transport)
    : options_(std::move(options)), url_(std::move(url)), transport_(std::move(transport)),
      encoder_(EncoderOptions{options_.profile, true, options_.tags}), rng_(std::random_device{}()) {
  if (options_.max_in_flight == 0) options_.max_in_flight = 1;
  if (options_.batch_spans == 0) options_.batch_spans = 1;
  endpoint_ = (url_.tls ? "https://" : "http://") + url_.host_header() + url_.target;
  // Resource: defaults, then user-given attributes override by key.
  StringPairs res = {{"service.name", options_.service_name},
                     {"service.version", options_.service_version.empty() ? std::string(chsync_version())
                                                                          : options_.service_version},
                     {"telemetry.sdk.name", "chsync"},
                     {"telemetry.sdk.language", "cpp"},
                     {"telemetry.sdk.version", std::string(chsync_version())}};
  if (options_.profile == Profile::kLangfuse) res.erase(res.begin() + 1);  // service.version: see header
  if (!options_.environment.empty()) res.emplace_back("deployment.environment.name", options_.environment);
  if (auto h = host_name(); !h.empty()) res.emplace_back("host.name", h);
  if (options_.profile == Profile::kPhoenix)
    res.emplace_back("openinference.project.name",
                     options_.project_name.empty() ? options_.service_name : options_.project_name);
  for (const auto& kv : options_.resource_attributes) {
    // Not a structured binding: clang 14 (scripts/fuzz) cannot capture one in a lambda.
    const auto& k = kv.first;
    const auto& v = kv.second;
    auto it = std::find_if(res.begin(), res.end(), [&](const auto& p) { return p.first == k; });
    if (it != res.end()) {
      it->second = v;
    } else {
      res.emplace_back(k, v);
    }
  }
  const std::string_view scope_version =
      options_.scope_version.empty() ? chsync_version() : std::string_view(options_.scope_version);
  json_ = options_.encoding == OtlpOptions::Encoding::kJson;
  content_type_ = json_ ? "application/json" : std::string(kProtobufType);
  if (json_) json_encoder_ = std::make_unique<JsonSpanEncoder>(EncoderOptions{options_.profile, true, options_.tags});
  resource_ = json_ ? json_resource(res) : encode_resource(res);
  scope_ = json_ ? json_scope(options_.scope_name, scope_version) : encode_scope(options_.scope_name, scope_version);
  if (options_.profile == Profile::kLangfuse) {
    const bool has = std::any_of(options_.headers.begin(), options_.headers.end(), [](const auto& h) {
      return h.first.size() == 28 && contains_ci(h.first, "x-langfuse-ingestion-version");
    });
    if (!has) options_.headers.emplace_back("x-langfuse-ingestion-version", "4");
  }
}

OtlpExporter::~OtlpExporter() {
  bool stopped;
  {
    std::lock_guard lock(mu_);
    stopped = stopped_;
  }
  if (!stopped) stop(milliseconds(0));
}

bool OtlpExporter::fatal() const noexcept {
  std::lock_guard lock(mu_);
  return fatal_;
}

std::string OtlpExporter::fatal_reason() const {
  std::lock_guard lock(mu_);
  return fatal_reason_;
}

ExporterStats OtlpExporter::stats() const {
  std::lock_guard lock(mu_);
  ExporterStats s = stats_;
  s.in_flight = flights_.size();
  return s;
}

void OtlpExporter::deliver(std::vector<Ack>& acks) {
  for (auto& a : acks)
    if (ack_ && !a.spans.empty()) ack_(std::move(a));
  acks.clear();
}

bool OtlpExporter::send(std::vector<Span>&& spans) {
  std::vector<Ack> acks;
  if (fatal()) {
    Ack a;
    a.outcome = Ack::Outcome::kFailed;
    for (const auto& s : spans) a.spans.push_back({s.span_key(), s.bundle_seq});
    a.reason = fatal_reason();
    acks.push_back(std::move(a));
    deliver(acks);
    return false;
  }
  const auto forever = Clock::time_point::max();
  for (const auto& s : spans) {
    one_.clear();
    if (json_) {
      json_encoder_->append_span(s, one_);
    } else {
      encoder_.append_span(s, one_);
    }
    if (!cur_.empty() && cur_.blob.size() + one_.size() > options_.batch_bytes) {
      dispatch(std::move(cur_), forever);
      cur_ = Batch{};
    }
    cur_.blob += one_;
    cur_.ends.push_back(cur_.blob.size());
    cur_.refs.push_back({s.span_key(), s.bundle_seq});
    if (cur_.refs.size() >= options_.batch_spans || cur_.blob.size() >= options_.batch_bytes) {
      dispatch(std::move(cur_), forever);
      cur_ = Batch{};
    }
  }
  return !fatal();
}

void OtlpExporter::flush() {
  if (cur_.empty() || fatal()) return;
  dispatch(std::move(cur_), Clock::time_point::max());
  cur_ = Batch{};
}

bool OtlpExporter::dispatch(Batch&& batch, Clock::time_point deadline) {
  if (batch.empty()) return true;
  std::vector<Ack> acks;
  const auto t0 = Clock::now();
  // Rate limit (token bucket with a burst of one request): send thread only.
  if (options_.rate > 0) {
    const double cost = options_.rate_is_spans ? static_cast<double>(batch.refs.size()) : 1.0;
    const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cost / options_.rate));
    const auto now = Clock::now();
    const auto at = std::max(now, next_send_);
    next_send_ = at + interval;
    if (at > now) std::this_thread::sleep_until(std::min(at, deadline));
  }
  std::unique_lock lock(mu_);
  const bool got_slot = cv_.wait_until(lock, deadline, [&] {
    return fatal_ || aborted_ || flights_.size() < options_.max_in_flight;
  });
  stats_.time_blocked_ms +=
      static_cast<std::uint64_t>(std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count());
  if (!got_slot || fatal_ || aborted_) {
    Ack a;
    a.outcome = Ack::Outcome::kFailed;
    a.spans = std::move(batch.refs);
    a.reason = fatal_ ? fatal_reason_ : "stopped before sending";
    acks.push_back(std::move(a));
    lock.unlock();
    deliver(acks);
    return false;
  }
  const std::uint64_t id = next_flight_id_++;
  auto flight = std::make_shared<Flight>();
  flight->batch = std::move(batch);
  Part part;
  part.last = flight->batch.refs.size();
  flight->parts.push_back(part);
  flights_.emplace(id, flight);
  stats_.max_in_flight_seen = std::max<std::uint64_t>(stats_.max_in_flight_seen, flights_.size());
  lock.unlock();
  // Record "in flight" before the request can leave (crash leaves a record of possible repeats).
  // If that record cannot be written (disk full), the request must not leave at all.
  if (before_send_) {
    try {
      if (!before_send_(flight->batch.refs)) {
        // Refused (fenced): this request must not leave, but the exporter carries on.
        std::vector<Ack> refused;
        {
          std::lock_guard relock(mu_);
          auto it = flights_.find(id);
          if (it != flights_.end()) {
            fail_all_locked(it->second, refused, "not sent: the work unit changed hands");
            flights_.erase(it);
          }
          cv_.notify_all();
        }
        deliver(refused);
        return true;
      }
    } catch (const std::exception& e) {
      std::vector<Ack> failed;
      {
        std::lock_guard relock(mu_);
        set_fatal_locked(std::string("cannot record the request before sending: ") + e.what());
        auto it = flights_.find(id);
        if (it != flights_.end()) {
          fail_all_locked(it->second, failed, fatal_reason_);
          flights_.erase(it);
        }
        cv_.notify_all();
      }
      deliver(failed);
      return false;
    }
  }
  // Body assembly and gzip run on an io thread, off the pipeline.
  transport_->schedule(milliseconds(0), [this, id](bool cancelled) {
    if (!cancelled) start_part(id);
  });
  return true;
}

std::string OtlpExporter::body_of(const Flight& f, std::size_t first, std::size_t last) const {
  const auto& ends = f.batch.ends;
  const std::size_t begin = first == 0 ? 0 : ends[first - 1];
  const std::size_t end = ends[last - 1];
  std::string body;
  const auto spans = std::string_view(f.batch.blob).substr(begin, end - begin);
  if (json_) {
    build_json_request(resource_, scope_, spans, body);
  } else {
    build_request(resource_, scope_, spans, body);
  }
  return body;
}

void OtlpExporter::start_part(std::uint64_t id) {
  std::shared_ptr<Flight> f;
  std::size_t first = 0, last = 0, raw_size = 0;
  std::shared_ptr<const std::string> wire;
  {
    std::lock_guard lock(mu_);
    auto it = flights_.find(id);
    if (it == flights_.end() || aborted_ || it->second->parts.empty()) return;
    f = it->second;
    Part& p = f->parts.front();
    first = p.first;
    last = p.last;
    wire = p.wire;
    raw_size = p.raw_size;
    if (p.first_attempt == Clock::time_point{}) p.first_attempt = Clock::now();
  }
  // The batch is immutable once dispatched: build and compress outside the lock.
  if (!wire) {
    std::string raw = body_of(*f, first, last);
    raw_size = raw.size();
    if (options_.compression == OtlpOptions::Compression::kGzip) {
      std::string z;
      if (!gzip_libdeflate(raw, z, options_.gzip_level)) z = std::move(raw);  // cannot happen short of OOM
      wire = std::make_shared<const std::string>(std::move(z));
    } else {
      wire = std::make_shared<const std::string>(std::move(raw));
    }
  }
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
  http::Request req;
  req.url = url_;
  req.headers.reserve(options_.headers.size() + 2);
  req.headers.emplace_back("Content-Type", content_type_);
  if (options_.compression == OtlpOptions::Compression::kGzip) req.headers.emplace_back("Content-Encoding", "gzip");
  for (const auto& h : options_.headers) req.headers.push_back(h);
  req.body = std::move(wire);
  transport_->post(std::move(req), [this, id](http::Response&& r) { on_response(id, std::move(r)); });
}

void OtlpExporter::set_fatal_locked(std::string reason) {
  if (fatal_) return;
  fatal_ = true;
  fatal_reason_ = std::move(reason);
  spdlog::error("otlp[{}]: {}", options_.instance, fatal_reason_);
  cv_.notify_all();
}

void OtlpExporter::fail_all_locked(std::shared_ptr<Flight>& f, std::vector<Ack>& acks, const std::string& reason) {
  Ack a;
    a.outcome = Ack::Outcome::kFailed;
  for (const auto& p : f->parts)
    for (std::size_t i = p.first; i < p.last; ++i) a.spans.push_back(f->batch.refs[i]);
  a.reason = reason;
  acks.push_back(std::move(a));
  f->parts.clear();
}

void OtlpExporter::on_response(std::uint64_t id, http::Response&& r) {
  std::vector<Ack> acks;
  bool next = false;
  std::chrono::milliseconds retry_delay{-1};
  {
    std::unique_lock lock(mu_);
    auto it = flights_.find(id);
    if (it == flights_.end()) return;  // aborted by stop(): already acknowledged
    std::shared_ptr<Flight> f = it->second;
    Part& part = f->parts.front();
    auto refs_of = [&](const Part& p) {
      return std::vector<SpanRef>(f->batch.refs.begin() + static_cast<std::ptrdiff_t>(p.first),
                                  f->batch.refs.begin() + static_cast<std::ptrdiff_t>(p.last));
    };
    auto finish_part = [&](Ack&& a) {
      a.spans = refs_of(part);
      acks.push_back(std::move(a));
      f->parts.pop_front();
    };
    auto note_error = [&](const std::string& what) {
      stats_.last_error = what;
      spdlog::debug("otlp[{}]: request failed: {}", options_.instance, what);
    };
    auto dead = [&](std::string reason) {
      note_error(reason);
      Ack a;
    a.outcome = Ack::Outcome::kDead;
      a.http_status = r.status;
      a.reason = std::move(reason);
      a.endpoint = endpoint_;
      a.content_type = content_type_;
      a.body = body_of(*f, part.first, part.last);
      stats_.spans_dead += part.last - part.first;
      finish_part(std::move(a));
    };
    auto fatal_now = [&](std::string reason) {
      note_error(reason);
      set_fatal_locked(reason);
      fail_all_locked(f, acks, reason);
    };
    auto retry_or_fatal = [&](std::string cause, std::string detail) {
      note_error(detail);
      if (aborted_) return fail_all_locked(f, acks, "stopped");
      if (fatal_) return fail_all_locked(f, acks, fatal_reason_);
      milliseconds delay = options_.retry.backoff(part.retries, rng_);
      if (!r.retry_after.empty()) {
        if (auto ra = http::parse_retry_after(r.retry_after)) delay = *ra;
      }
      const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - part.first_attempt);
      const auto& pol = options_.retry;
      if ((pol.max_attempts > 0 && part.retries + 1 >= pol.max_attempts) ||
          (pol.max_elapsed.count() > 0 && elapsed + delay > pol.max_elapsed)) {
        return fatal_now("retries exhausted after " + std::to_string(elapsed.count()) + " ms (" +
                         std::to_string(part.retries + 1) + " attempts), last: " + detail);
      }
      ++part.retries;
      ++stats_.retries[cause];
      retry_delay = delay;
    };

    if (r.resent_after_unknown) stats_.spans_maybe_repeated += part.last - part.first;
    if (r.error != http::TransportError::kNone) {
      if (r.request_written && r.error != http::TransportError::kCancelled)
        stats_.spans_maybe_repeated += part.last - part.first;
      const std::string detail = std::string(http::to_string(r.error)) + " (" + r.error_message + ") to " + endpoint_;
      switch (r.error) {
        case http::TransportError::kCancelled: fail_all_locked(f, acks, "cancelled"); break;
        case http::TransportError::kTls: fatal_now("TLS failure: " + detail); break;
        case http::TransportError::kTooLarge: dead("response over the size limit: " + r.error_message); break;
        default: retry_or_fatal(std::string(http::to_string(r.error)), detail); break;
      }
    } else {
      ++stats_.status_counts[r.status];
      const int st = r.status;
      auto excerpt = [&] {
        std::string msg;
        if (contains_ci(r.content_type, "protobuf")) msg = decode_rpc_status_message(r.body);
        if (msg.empty()) msg = r.body.substr(0, kExcerptBytes);
        return "HTTP " + std::to_string(st) + (msg.empty() ? std::string() : ": " + msg.substr(0, kExcerptBytes));
      };
      if (st >= 200 && st < 300) {
        ++stats_.requests_ok;
        PartialSuccess ps;
        if (contains_ci(r.content_type, "protobuf")) {
          decode_partial_success_proto(r.body, ps);
        } else if (contains_ci(r.content_type, "json")) {
          decode_partial_success_json(r.body, ps);
        }
        if (ps.rejected_spans > 0 || !ps.error_message.empty()) {
          stats_.spans_partial_rejected += static_cast<std::uint64_t>(std::max<std::int64_t>(0, ps.rejected_spans));
          spdlog::warn("otlp[{}]: partial success: {} spans rejected: {}", options_.instance, ps.rejected_spans,
                       ps.error_message);
        }
        stats_.spans_delivered += part.last - part.first;
        Ack a;
    a.outcome = Ack::Outcome::kDelivered;
        a.http_status = st;
        finish_part(std::move(a));
      } else if (st == 413) {
        if (part.last - part.first > 1) {
          ++stats_.splits_413;
          const std::size_t mid = part.first + (part.last - part.first) / 2;
          Part a, b;
          a.first = part.first;
          a.last = mid;
          b.first = mid;
          b.last = part.last;
          f->parts.pop_front();
          f->parts.push_front(b);
          f->parts.push_front(a);
        } else {
          dead(excerpt() + " (a single span is over the backend's request size limit)");
        }
      } else if (st == 401 || st == 403 || st == 404) {
        std::string hint;
        std::string base = endpoint_;
        while (!base.empty() && base.back() == '/') base.pop_back();
        // An OTLP/HTTP collector serves traces at /v1/traces: a 404 elsewhere is a missing path.
        if (st == 404 && (base.size() < 10 || base.compare(base.size() - 10, 10, "/v1/traces") != 0))
          hint = " (did you mean " + base + "/v1/traces?)";
        fatal_now(excerpt() + " from " + endpoint_ + hint);
      } else if (http::is_retryable_status(st)) {
        retry_or_fatal(std::to_string(st), excerpt());
      } else {
        dead(excerpt());
      }
    }
    if (retry_delay.count() < 0) {
      if (f->parts.empty()) {
        flights_.erase(id);
        cv_.notify_all();
      } else if (aborted_ || fatal_) {
        fail_all_locked(f, acks, aborted_ ? "stopped" : fatal_reason_);
        flights_.erase(id);
        cv_.notify_all();
      } else {
        next = true;
      }
    }
  }
  deliver(acks);
  if (retry_delay.count() >= 0) {
    transport_->schedule(retry_delay, [this, id](bool cancelled) {
      if (!cancelled) return start_part(id);
      http::Response cancelled_resp;
      cancelled_resp.error = http::TransportError::kCancelled;
      on_response(id, std::move(cancelled_resp));
    });
  } else if (next) {
    start_part(id);
  }
}

bool OtlpExporter::stop(std::chrono::milliseconds drain_timeout) noexcept {
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
    bool ok;
    {
      std::unique_lock lock(mu_);
      ok = cv_.wait_until(lock, deadline, [&] { return flights_.empty(); });
      aborted_ = true;
      stopped_ = true;
      for (auto& [fid, f] : flights_) fail_all_locked(f, acks, "not acknowledged before the drain timeout");
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

std::unique_ptr<Exporter> make_otlp_exporter(OtlpOptions options, std::string* error) {
  auto fail = [&](std::string e) -> std::unique_ptr<Exporter> {
    if (error) *error = std::move(e);
    return nullptr;
  };
  if (options.endpoint.empty()) options.endpoint = "http://127.0.0.1:4318/v1/traces";
  auto url = http::parse_url(options.endpoint);
  if (!url) return fail("otlp: invalid endpoint URL: " + options.endpoint);
  http::ClientOptions co;
  co.io_threads = options.io_threads;
  co.connect_timeout = options.connect_timeout;
  co.request_timeout = options.timeout;
  co.max_idle_per_endpoint = options.max_in_flight;
  co.ca_file = options.ca_file;
  co.insecure = options.insecure;
  co.client_cert = options.client_cert;
  co.client_key = options.client_key;
  co.user_agent = "chsync/" + std::string(chsync_version());
  std::unique_ptr<http::Transport> transport;
  try {
    transport = http::make_http_client(std::move(co));
  } catch (const std::exception& e) {
    return fail(std::string("otlp: ") + e.what());
  }
  return std::make_unique<OtlpExporter>(std::move(options), std::move(*url), std::move(transport));
}

}  // namespace chsync::otlp
