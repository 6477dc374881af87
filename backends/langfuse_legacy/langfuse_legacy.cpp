#include "backends/langfuse_legacy/langfuse_legacy.h"

#include "backends/otlp/message_json.h"

#include <openssl/evp.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <unordered_map>

#include "backends/otlp/otlp_exporter.h"
#include "backends/otlp/otlp_proto.h"

namespace chsync::langfuse {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr std::size_t kExcerptBytes = 512;
constexpr std::string_view kContentType = "application/json";
// {"batch":[ ... ]} framing plus the separating commas is accounted per event (+1).
constexpr std::size_t kFrameBytes = 16;

void jstr(std::string& out, std::string_view s) {
  out += '"';
  otlp::append_json_escaped(out, s);
  out += '"';
}

// A content field: raw JSON when the mapper says it holds JSON, else a JSON string.
void content(std::string& out, std::string_view key, const std::string& v, bool is_json) {
  out += ",\"";
  out += key;
  out += "\":";
  if (is_json && !v.empty()) {
    out += v;
  } else {
    jstr(out, v);
  }
}

void metadata(std::string& out, const Span& s) {
  out += ",\"metadata\":{";
  bool first = true;
  auto key = [&](std::string_view k) {
    if (!first) out += ',';
    first = false;
    jstr(out, k);
    out += ':';
  };
  for (const auto& a : s.metadata) {
    key(a.key);
    switch (a.type) {
      case Attr::Type::kString: jstr(out, a.str); break;
      case Attr::Type::kInt: out += std::to_string(a.num); break;
      case Attr::Type::kBool: out += a.flag ? "true" : "false"; break;
      case Attr::Type::kDouble: {
        if (!std::isfinite(a.dbl)) {
          out += "null";
        } else {
          char buf[32];
          std::snprintf(buf, sizeof(buf), "%.17g", a.dbl);
          out += buf;
        }
        break;
      }
      case Attr::Type::kJson: out += a.str.empty() ? "null" : a.str; break;
    }
  }
  auto has = [&](std::string_view k) {
    return std::any_of(s.metadata.begin(), s.metadata.end(), [&](const Attr& a) { return a.key == k; });
  };
  if (!s.finish_reason.empty()) {
    key("finish_reason");
    jstr(out, s.finish_reason);
  }
  if (s.tool_name) {
    key("tool_name");
    jstr(out, *s.tool_name);
  }
  if (!s.tool_use_id.empty() && !has("tool_use_id")) {
    key("tool_use_id");
    jstr(out, s.tool_use_id);
  }
  if (!s.agent_id.empty() && !has("agent_id")) {
    key("agent_id");
    jstr(out, s.agent_id);
  }
  if (!s.response_id.empty() && !has("message_id")) {
    key("message_id");
    jstr(out, s.response_id);
  }
  if (!s.stop_reason.empty() && !has("stop_reason")) {
    key("stop_reason");
    jstr(out, s.stop_reason);
  }
  if (!s.source_file.empty()) {
    key("source_file");
    jstr(out, s.source_file);
    key("source_line");
    out += std::to_string(s.source_line);
  }
  out += '}';
}

std::string envelope_id(std::string_view type, std::string_view body_id, std::string_view body) {
  std::string in;
  in.reserve(type.size() + body_id.size() + body.size() + 2);
  in.append(type).append("\n").append(body_id).append("\n").append(body);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(in.data(), in.size(), md, &n, EVP_sha256(), nullptr);
  return to_hex(md, 16);
}

std::string envelope(std::string_view type, const std::string& body_id, const std::string& body,
                     const std::string& export_time) {
  std::string e = "{\"id\":\"" + envelope_id(type, body_id, body) + "\",\"timestamp\":\"" + export_time +
                  "\",\"type\":\"";
  e += type;
  e += "\",\"body\":";
  e += body;
  e += '}';
  return e;
}

std::string export_time_now() {
  const auto now = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  return format_rfc3339_ms(now.count());
}

// The envelope id of an event JSON built by envelope(): {"id":"<32 hex>",...
std::string_view id_of(std::string_view ev) { return ev.substr(7, 32); }

}  // namespace

std::vector<std::string> legacy_events(const Span& s, const EventOptions& options, const std::string& export_time) {
  const std::string& environment = options.environment;
  std::vector<std::string> out;
  const std::string trace_id = to_hex(s.trace_id);
  const std::string span_id = to_hex(s.span_id);
  const bool is_tool = s.kind == SpanKind::kSpan && s.tool_name.has_value();
  const std::optional<std::string>& output = (is_tool && !s.output && s.tool_result) ? s.tool_result : s.output;
  auto common_tail = [&](std::string& b) {
    if (!environment.empty()) {
      b += ",\"environment\":";
      jstr(b, environment);
    }
  };
  // Every trace root gets its trace-create: without one, an unlinked subagent's observations count
  // in no trace or session total.
  const bool root = s.kind == SpanKind::kTrace || (s.kind == SpanKind::kAgent && !s.has_parent);
  if (root) {
    std::string b = "{\"id\":\"" + trace_id + "\",\"timestamp\":\"" + format_rfc3339_ms(s.start_ms) + "\",\"name\":";
    jstr(b, s.trace_name.empty() ? s.name : s.trace_name);
    if (!s.session_id.empty()) {
      b += ",\"sessionId\":";
      jstr(b, s.session_id);
    }
    if (!s.user_id.empty()) {
      b += ",\"userId\":";
      jstr(b, s.user_id);
    }
    if (s.input) content(b, "input", *s.input, s.input_is_json);
    if (output) content(b, "output", *output, s.output_is_json);
    metadata(b, s);
    b += ",\"tags\":[\"claude-code\"";
    for (std::size_t i = 0; i < options.tags.size(); ++i) {
      if (options.tags[i] == "claude-code" ||
          std::find(options.tags.begin(), options.tags.begin() + static_cast<std::ptrdiff_t>(i), options.tags[i]) !=
              options.tags.begin() + static_cast<std::ptrdiff_t>(i))
        continue;
      b += ',';
      jstr(b, options.tags[i]);
    }
    b += ']';
    for (const auto& a : s.metadata)
      if (a.key == "cc_version" && !a.str.empty()) {
        b += ",\"release\":";
        jstr(b, a.str);
      }
    common_tail(b);
    b += '}';
    out.push_back(envelope("trace-create", trace_id, b, export_time));
  }
  std::string_view type = "span-create";
  if (s.kind == SpanKind::kGeneration) type = "generation-create";
  if (s.kind == SpanKind::kEvent) type = "event-create";
  if (options.typed_observations && is_tool) type = "tool-create";
  if (options.typed_observations && (s.kind == SpanKind::kAgent || s.kind == SpanKind::kTrace)) type = "agent-create";
  std::string b = "{\"id\":\"" + span_id + "\",\"traceId\":\"" + trace_id + "\",\"name\":";
  jstr(b, s.name);
  if (s.has_parent) b += ",\"parentObservationId\":\"" + to_hex(s.parent_id) + '"';
  b += ",\"startTime\":\"" + format_rfc3339_ms(s.start_ms) + '"';
  if (s.kind != SpanKind::kEvent)
    b += ",\"endTime\":\"" + format_rfc3339_ms(std::max(s.end_ms, s.start_ms)) + '"';
  if (!s.input_messages.empty()) {  // generations: chat messages, as the OTel langfuse profile
    b += ",\"input\":";
    otlp::append_chat_messages(b, s.input_messages);
  } else if (s.input) {
    content(b, "input", *s.input, s.input_is_json);
  }
  if (!s.output_messages.empty()) {
    b += ",\"output\":";
    otlp::append_chat_messages(b, s.output_messages);
  } else if (output) {
    content(b, "output", *output, s.output_is_json);
  }
  metadata(b, s);
  if (s.is_error) {
    b += ",\"level\":\"ERROR\"";
    if (!s.status_message.empty()) {
      b += ",\"statusMessage\":";
      jstr(b, s.status_message);
    }
  }
  if (s.kind == SpanKind::kGeneration) {
    if (s.model) {
      b += ",\"model\":";
      jstr(b, *s.model);
    }
    const Usage& u = s.usage;
    if (u.present) {
      // §A.5: one synonym per bucket, input excludes the cache, no total.
      b += ",\"usageDetails\":{\"input\":" + std::to_string(u.input_tokens) +
           ",\"output\":" + std::to_string(u.output_tokens) +
           ",\"cache_read_input_tokens\":" + std::to_string(u.cache_read_input_tokens);
      if (u.cache_creation_5m >= 0 || u.cache_creation_1h >= 0) {
        b += ",\"input_cache_creation_5m\":" + std::to_string(std::max<std::int64_t>(0, u.cache_creation_5m));
        b += ",\"input_cache_creation_1h\":" + std::to_string(std::max<std::int64_t>(0, u.cache_creation_1h));
      } else {
        b += ",\"cache_creation_input_tokens\":" + std::to_string(u.cache_creation_input_tokens);
      }
      b += '}';
    } else if (s.tokens_in != 0 || s.tokens_out != 0) {
      b += ",\"usageDetails\":{\"input\":" + std::to_string(s.tokens_in) +
           ",\"output\":" + std::to_string(s.tokens_out) + '}';
    }
  }
  common_tail(b);
  b += '}';
  out.push_back(envelope(type, span_id, b, export_time));
  return out;
}

namespace {

struct Event {
  std::string json;
  std::uint32_t span = 0;  // index into Batch::refs
};

struct Batch {
  std::vector<Event> events;
  std::vector<SpanRef> refs;
  std::size_t bytes = 0;
  bool empty() const noexcept { return refs.empty(); }
};

struct Flight {
  Batch batch;
  std::vector<std::uint32_t> pending;     // event indexes still to be sent
  std::vector<std::uint32_t> events_left;  // per span
  std::vector<std::uint8_t> dead;          // per span
  std::uint32_t retries = 0;
  Clock::time_point first_attempt{};
};

class LegacyExporter final : public Exporter {
 public:
  LegacyExporter(LegacyOptions o, http::Url url, std::unique_ptr<http::Transport> t)
      : options_(std::move(o)), url_(std::move(url)), transport_(std::move(t)), rng_(std::random_device{}()) {
    if (options_.max_in_flight == 0) options_.max_in_flight = 1;
    if (options_.batch_spans == 0) options_.batch_spans = 1;
    options_.batch_bytes = std::clamp<std::size_t>(options_.batch_bytes, 1024, kMaxBatchBytes);
    endpoint_ = (url_.tls ? "https://" : "http://") + url_.host_header() + url_.target;
  }
  ~LegacyExporter() override {
    bool stopped;
    {
      std::lock_guard lock(mu_);
      stopped = stopped_;
    }
    if (!stopped) stop(milliseconds(0));
  }

  std::string_view instance() const noexcept override { return options_.instance; }
  bool fatal() const noexcept override {
    std::lock_guard lock(mu_);
    return fatal_;
  }
  std::string fatal_reason() const override {
    std::lock_guard lock(mu_);
    return fatal_reason_;
  }
  ExporterStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

  bool send(std::vector<Span>&& spans) override {
    if (fatal()) {
      std::vector<Ack> acks(1);
      acks[0].outcome = Ack::Outcome::kFailed;
      for (const auto& s : spans) acks[0].spans.push_back({s.span_key(), s.bundle_seq});
      acks[0].reason = fatal_reason();
      deliver(acks);
      return false;
    }
    const auto forever = Clock::time_point::max();
    const std::string now = export_time_now();
    for (const auto& s : spans) {
      auto evs = legacy_events(s, EventOptions{options_.environment, options_.tags, options_.typed_observations}, now);
      std::size_t bytes = 0;
      for (const auto& e : evs) bytes += e.size() + 1;
      if (!cur_.empty() && cur_.bytes + bytes + kFrameBytes > options_.batch_bytes) {
        dispatch(std::move(cur_), forever);
        cur_ = Batch{};
      }
      const auto idx = static_cast<std::uint32_t>(cur_.refs.size());
      for (auto& e : evs) cur_.events.push_back({std::move(e), idx});
      cur_.bytes += bytes;
      cur_.refs.push_back({s.span_key(), s.bundle_seq});
      if (cur_.refs.size() >= options_.batch_spans) {
        dispatch(std::move(cur_), forever);
        cur_ = Batch{};
      }
    }
    return !fatal();
  }

  void flush() override {
    if (cur_.empty() || fatal()) return;
    dispatch(std::move(cur_), Clock::time_point::max());
    cur_ = Batch{};
  }

  bool stop(milliseconds drain_timeout) noexcept override {
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
        for (auto& [fid, f] : flights_) fail_all_locked(*f, acks, "not acknowledged before the drain timeout");
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

 private:
  void deliver(std::vector<Ack>& acks) {
    for (auto& a : acks)
      if (ack_ && !a.spans.empty()) ack_(std::move(a));
    acks.clear();
  }

  void set_fatal_locked(std::string reason) {
    if (fatal_) return;
    fatal_ = true;
    fatal_reason_ = std::move(reason);
    spdlog::error("langfuse-legacy[{}]: {}", options_.instance, fatal_reason_);
    cv_.notify_all();
  }

  // Every span of f still without an outcome → kFailed.
  void fail_all_locked(Flight& f, std::vector<Ack>& acks, const std::string& reason) {
    Ack a;
    a.outcome = Ack::Outcome::kFailed;
    a.reason = reason;
    for (std::size_t i = 0; i < f.batch.refs.size(); ++i)
      if (f.events_left[i] > 0) {
        a.spans.push_back(f.batch.refs[i]);
        f.events_left[i] = 0;
      }
    f.pending.clear();
    acks.push_back(std::move(a));
  }

  bool dispatch(Batch&& batch, Clock::time_point deadline) {
    if (batch.empty()) return true;
    const auto t0 = Clock::now();
    std::unique_lock lock(mu_);
    const bool got = cv_.wait_until(lock, deadline, [&] {
      return fatal_ || aborted_ || flights_.size() < options_.max_in_flight;
    });
    stats_.time_blocked_ms +=
        static_cast<std::uint64_t>(std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count());
    if (!got || fatal_ || aborted_) {
      std::vector<Ack> acks(1);
      acks[0].outcome = Ack::Outcome::kFailed;
      acks[0].spans = std::move(batch.refs);
      acks[0].reason = fatal_ ? fatal_reason_ : "stopped before sending";
      lock.unlock();
      deliver(acks);
      return false;
    }
    const std::uint64_t id = next_id_++;
    auto f = std::make_shared<Flight>();
    f->batch = std::move(batch);
    f->events_left.assign(f->batch.refs.size(), 0);
    f->dead.assign(f->batch.refs.size(), 0);
    for (std::uint32_t i = 0; i < f->batch.events.size(); ++i) {
      f->pending.push_back(i);
      ++f->events_left[f->batch.events[i].span];
    }
    flights_.emplace(id, f);
    stats_.max_in_flight_seen = std::max<std::uint64_t>(stats_.max_in_flight_seen, flights_.size());
    lock.unlock();
    // As in the OTLP exporter: a request whose in-flight record cannot be written never leaves.
    if (before_send_) {
      try {
        if (!before_send_(f->batch.refs)) {
          // Refused (fenced): this request must not leave, but the exporter carries on.
          std::vector<Ack> refused;
          {
            std::lock_guard relock(mu_);
            auto it = flights_.find(id);
            if (it != flights_.end()) {
              fail_all_locked(*it->second, refused, "not sent: the work unit changed hands");
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
            fail_all_locked(*it->second, failed, fatal_reason_);
            flights_.erase(it);
          }
          cv_.notify_all();
        }
        deliver(failed);
        return false;
      }
    }
    transport_->schedule(milliseconds(0), [this, id](bool cancelled) {
      if (!cancelled) start(id);
    });
    return true;
  }

  static std::string body_of(const Flight& f, const std::vector<std::uint32_t>& events) {
    std::string body = "{\"batch\":[";
    bool first = true;
    for (auto i : events) {
      if (!first) body += ',';
      first = false;
      body += f.batch.events[i].json;
    }
    body += "]}";
    return body;
  }

  void start(std::uint64_t id) {
    std::shared_ptr<const std::string> body;
    {
      std::lock_guard lock(mu_);
      auto it = flights_.find(id);
      if (it == flights_.end() || aborted_) return;
      Flight& f = *it->second;
      if (f.first_attempt == Clock::time_point{}) f.first_attempt = Clock::now();
      body = std::make_shared<const std::string>(body_of(f, f.pending));
      ++stats_.requests;
      stats_.bytes_raw += body->size();
      stats_.bytes_wire += body->size();
    }
    http::Request req;
    req.url = url_;
    req.headers.emplace_back("Content-Type", std::string(kContentType));
    for (const auto& h : options_.headers) req.headers.push_back(h);
    req.body = std::move(body);
    transport_->post(std::move(req), [this, id](http::Response&& r) { on_response(id, std::move(r)); });
  }

  void on_response(std::uint64_t id, http::Response&& r) {
    std::vector<Ack> acks;
    milliseconds retry_delay{-1};
    {
      std::lock_guard lock(mu_);
      auto it = flights_.find(id);
      if (it == flights_.end()) return;
      std::shared_ptr<Flight> fp = it->second;
      Flight& f = *fp;
      Ack ok;
      ok.outcome = Ack::Outcome::kDelivered;
      ok.http_status = r.status;
      std::vector<std::uint32_t> dead_spans;
      std::string dead_reason;
      int dead_status = 0;
      auto resolve = [&](std::uint32_t ev, bool is_dead) {
        const std::uint32_t sp = f.batch.events[ev].span;
        if (is_dead) f.dead[sp] = 1;
        if (f.events_left[sp] == 0 || --f.events_left[sp] > 0) return;
        if (f.dead[sp]) {
          dead_spans.push_back(sp);
        } else {
          ok.spans.push_back(f.batch.refs[sp]);
        }
      };
      auto note_error = [&](const std::string& what) {
        stats_.last_error = what;
        spdlog::debug("langfuse-legacy[{}]: request failed: {}", options_.instance, what);
      };
      auto all_dead = [&](std::string reason) {
        note_error(reason);
        dead_reason = std::move(reason);
        dead_status = r.status;
        for (auto ev : f.pending) resolve(ev, true);
        f.pending.clear();
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
        milliseconds delay = options_.retry.backoff(f.retries, rng_);
        if (!r.retry_after.empty())
          if (auto ra = http::parse_retry_after(r.retry_after)) delay = *ra;
        const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - f.first_attempt);
        const auto& pol = options_.retry;
        if ((pol.max_attempts > 0 && f.retries + 1 >= pol.max_attempts) ||
            (pol.max_elapsed.count() > 0 && elapsed + delay > pol.max_elapsed)) {
          return fatal_now("retries exhausted after " + std::to_string(elapsed.count()) + " ms (" +
                           std::to_string(f.retries + 1) + " attempts), last: " + detail);
        }
        ++f.retries;
        ++stats_.retries[cause];
        retry_delay = delay;
      };
      auto excerpt = [&] {
        return "HTTP " + std::to_string(r.status) + (r.body.empty() ? "" : ": " + r.body.substr(0, kExcerptBytes));
      };

      if (r.error != http::TransportError::kNone) {
        const std::string detail =
            std::string(http::to_string(r.error)) + " (" + r.error_message + ") to " + endpoint_;
        switch (r.error) {
          case http::TransportError::kCancelled: fail_all_locked(f, acks, "cancelled"); break;
          case http::TransportError::kTls: fatal_now("TLS failure: " + detail); break;
          default: retry_or_fatal(std::string(http::to_string(r.error)), detail); break;
        }
      } else {
        ++stats_.status_counts[r.status];
        const int st = r.status;
        if (st >= 200 && st < 300) {
          ++stats_.requests_ok;
          // 207 {"successes":[{id,status}],"errors":[{id,status,message,error}]}
          std::unordered_map<std::string, std::pair<int, std::string>> errors;
          simdjson::dom::parser parser;
          simdjson::dom::element doc;
          if (!parser.parse(r.body).get(doc)) {
            simdjson::dom::array arr;
            if (!doc["errors"].get_array().get(arr)) {
              for (auto e : arr) {
                std::string_view eid;
                std::int64_t est = 500;
                if (e["id"].get_string().get(eid)) continue;
                if (e["status"].get_int64().get(est)) est = 500;
                std::string msg;
                std::string_view m;
                if (!e["message"].get_string().get(m)) msg = std::string(m);
                if (!e["error"].get_string().get(m)) msg += (msg.empty() ? "" : ": ") + std::string(m);
                errors[std::string(eid)] = {static_cast<int>(est), msg};
              }
            }
          }
          std::vector<std::uint32_t> again;
          std::string last_5xx;
          for (auto ev : f.pending) {
            auto e = errors.find(std::string(id_of(f.batch.events[ev].json)));
            if (e == errors.end()) {
              resolve(ev, false);
            } else if (e->second.first >= 500 || e->second.first == 429) {
              again.push_back(ev);
              last_5xx = "event status " + std::to_string(e->second.first) + ": " + e->second.second;
            } else {
              if (dead_reason.empty()) {
                dead_reason = "event status " + std::to_string(e->second.first) + ": " + e->second.second;
                note_error(dead_reason);
                dead_status = e->second.first;
              }
              resolve(ev, true);
            }
          }
          f.pending = std::move(again);
          if (!f.pending.empty()) {
            retry_or_fatal("event_5xx", last_5xx);
          }
        } else if (st == 401 || st == 403 || st == 404) {
          fatal_now(excerpt() + " from " + endpoint_);
        } else if (http::is_retryable_status(st) || st == 500) {
          retry_or_fatal(std::to_string(st), excerpt());
        } else {
          all_dead(excerpt());
        }
      }
      stats_.spans_delivered += ok.spans.size();
      if (!ok.spans.empty()) acks.push_back(std::move(ok));
      if (!dead_spans.empty()) {
        Ack d;
        d.outcome = Ack::Outcome::kDead;
        d.http_status = dead_status;
        d.reason = dead_reason;
        d.endpoint = endpoint_;
        d.content_type = std::string(kContentType);
        std::vector<std::uint32_t> evs;
        for (std::uint32_t i = 0; i < f.batch.events.size(); ++i)
          if (std::find(dead_spans.begin(), dead_spans.end(), f.batch.events[i].span) != dead_spans.end())
            evs.push_back(i);
        d.body = body_of(f, evs);
        for (auto sp : dead_spans) d.spans.push_back(f.batch.refs[sp]);
        stats_.spans_dead += dead_spans.size();
        acks.push_back(std::move(d));
      }
      if (retry_delay.count() < 0) {
        if (!f.pending.empty()) fail_all_locked(f, acks, aborted_ ? "stopped" : fatal_reason_);
        flights_.erase(id);
        cv_.notify_all();
      }
    }
    deliver(acks);
    if (retry_delay.count() >= 0) {
      transport_->schedule(retry_delay, [this, id](bool cancelled) {
        if (!cancelled) return start(id);
        http::Response c;
        c.error = http::TransportError::kCancelled;
        on_response(id, std::move(c));
      });
    }
  }

  LegacyOptions options_;
  http::Url url_;
  std::string endpoint_;
  std::unique_ptr<http::Transport> transport_;
  Batch cur_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, std::shared_ptr<Flight>> flights_;
  std::uint64_t next_id_ = 1;
  bool fatal_ = false;
  bool aborted_ = false;
  bool stopped_ = false;
  std::string fatal_reason_;
  ExporterStats stats_;
  std::mt19937_64 rng_;
};

}  // namespace

std::unique_ptr<Exporter> make_langfuse_legacy_exporter(LegacyOptions options,
                                                        std::unique_ptr<http::Transport> transport,
                                                        std::string* error) {
  auto url = http::parse_url(options.endpoint);
  if (!url) {
    if (error) *error = "langfuse-legacy: invalid URL: " + options.endpoint;
    return nullptr;
  }
  return std::make_unique<LegacyExporter>(std::move(options), std::move(*url), std::move(transport));
}

std::unique_ptr<Exporter> make_langfuse_legacy_exporter(LegacyOptions options, std::string* error) {
  if (!http::parse_url(options.endpoint)) {
    if (error) *error = "langfuse-legacy: invalid URL: " + options.endpoint;
    return nullptr;
  }
  http::ClientOptions co;
  co.connect_timeout = options.connect_timeout;
  co.request_timeout = options.timeout;
  co.max_idle_per_endpoint = options.max_in_flight;
  co.ca_file = options.ca_file;
  co.insecure = options.insecure;
  co.client_cert = options.client_cert;
  co.client_key = options.client_key;
  co.user_agent = "chsync/" + std::string(otlp::chsync_version());
  std::unique_ptr<http::Transport> t;
  try {
    t = http::make_http_client(std::move(co));
  } catch (const std::exception& e) {
    if (error) *error = std::string("langfuse-legacy: ") + e.what();
    return nullptr;
  }
  return make_langfuse_legacy_exporter(std::move(options), std::move(t), error);
}

}  // namespace chsync::langfuse
