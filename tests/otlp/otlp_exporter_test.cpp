// OtlpExporter against a fake Transport (the seam): batching, acks, retry, 413 halving, dead letters,
// fatal errors, partial success, stop().
#include "backends/otlp/otlp_exporter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <queue>
#include <set>
#include <thread>

#include "backends/otlp/gzip.h"
#include "otlp_trace.pb.h"

using namespace chsync;
using namespace std::chrono_literals;
using otlp::OtlpExporter;
using otlp::OtlpOptions;

namespace {

// Runs posts and timers on one worker thread, in time order; responses come from `handler`.
class FakeTransport final : public http::Transport {
 public:
  using Handler = std::function<http::Response(const http::Request&, int n)>;
  explicit FakeTransport(Handler h) : handler_(std::move(h)), worker_([this] { loop(); }) {}
  ~FakeTransport() override { shutdown(); }

  void post(http::Request req, http::ResponseFn done) override {
    add(0ms, [this, req = std::move(req), done = std::move(done)](bool cancelled) mutable {
      if (cancelled) {
        http::Response r;
        r.error = http::TransportError::kCancelled;
        return done(std::move(r));
      }
      const int n = posts_++;
      done(handler_(req, n));
    });
  }
  void schedule(std::chrono::milliseconds d, std::function<void(bool)> fn) override { add(d, std::move(fn)); }
  void cancel_all() override {
    std::lock_guard lock(mu_);
    cancel_ = true;
    cv_.notify_all();
  }
  void shutdown() noexcept override {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      stop_ = true;
      cancel_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  int posts() const { return posts_; }

 private:
  struct Task {
    std::chrono::steady_clock::time_point at;
    std::uint64_t seq;
    std::function<void(bool)> fn;
    bool operator>(const Task& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void add(std::chrono::milliseconds d, std::function<void(bool)> fn) {
    std::lock_guard lock(mu_);
    if (stop_) return;
    q_.push(Task{std::chrono::steady_clock::now() + d, seq_++, std::move(fn)});
    cv_.notify_all();
  }
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (q_.empty()) {
        if (stop_) return;
        cv_.wait(lock);
        continue;
      }
      if (!cancel_ && q_.top().at > std::chrono::steady_clock::now()) {
        cv_.wait_until(lock, q_.top().at);
        continue;
      }
      auto fn = q_.top().fn;
      q_.pop();
      const bool cancelled = cancel_;
      lock.unlock();
      fn(cancelled);
      lock.lock();
    }
  }
  Handler handler_;
  std::atomic<int> posts_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<>> q_;
  std::uint64_t seq_ = 0;
  bool stop_ = false, cancel_ = false;
  std::thread worker_;
};

std::vector<Span> make_spans(int n, int first = 0, std::size_t text = 10) {
  std::vector<Span> v;
  for (int i = first; i < first + n; ++i) {
    Span s;
    s.trace_id[0] = 9;
    s.span_id = span_id_from_key(static_cast<std::uint64_t>(i) + 1);
    s.kind = SpanKind::kSpan;
    s.tool_name = "Bash";
    s.name = "execute_tool Bash";
    s.start_ms = 1756860758373;
    s.end_ms = s.start_ms + 10;
    s.output = std::string(text, 'o');
    s.bundle_seq = static_cast<std::uint64_t>(i / 10);
    v.push_back(std::move(s));
  }
  return v;
}

std::vector<std::uint64_t> span_keys_in(const http::Request& req) {
  std::string raw;
  bool gz = false;
  for (auto& [k, v] : req.headers)
    if (k == "Content-Encoding" && v == "gzip") gz = true;
  if (gz) {
    EXPECT_TRUE(otlp::gunzip(*req.body, raw));
  } else {
    raw = *req.body;
  }
  otlp::v1::ExportTraceServiceRequest pb;
  EXPECT_TRUE(pb.ParseFromString(raw));
  std::vector<std::uint64_t> keys;
  for (const auto& rs : pb.resource_spans())
    for (const auto& ss : rs.scope_spans())
      for (const auto& sp : ss.spans()) {
        std::uint64_t k = 0;
        for (unsigned char c : sp.span_id()) k = (k << 8) | c;
        keys.push_back(k);
      }
  return keys;
}

http::Response status(int code, std::string body = {}, std::string ctype = {}, std::string retry_after = {}) {
  http::Response r;
  r.status = code;
  r.body = std::move(body);
  r.content_type = std::move(ctype);
  r.retry_after = std::move(retry_after);
  return r;
}

// Collects acks; checks each span gets exactly one.
struct AckLog {
  std::mutex mu;
  std::vector<Ack> acks;
  std::map<std::uint64_t, Ack::Outcome> by_span;
  int duplicates = 0;
  void operator()(Ack&& a) {
    std::lock_guard lock(mu);
    for (auto& r : a.spans)
      if (!by_span.emplace(r.span_key, a.outcome).second) ++duplicates;
    acks.push_back(std::move(a));
  }
  std::size_t count(Ack::Outcome o) {
    std::lock_guard lock(mu);
    std::size_t n = 0;
    for (auto& [k, v] : by_span) n += v == o;
    return n;
  }
};

struct Fixture {
  std::shared_ptr<AckLog> log = std::make_shared<AckLog>();
  FakeTransport* fake = nullptr;
  std::unique_ptr<OtlpExporter> exp;
  std::mutex mu;
  std::set<std::uint64_t> recorded;  // before_send
  std::atomic<int> unrecorded_posts{0};

  Fixture(OtlpOptions o, FakeTransport::Handler h) {
    auto t = std::make_unique<FakeTransport>([this, h = std::move(h)](const http::Request& r, int n) {
      {
        std::lock_guard lock(mu);
        for (auto k : span_keys_in(r))
          if (!recorded.count(k)) ++unrecorded_posts;
      }
      return h(r, n);
    });
    fake = t.get();
    exp = std::make_unique<OtlpExporter>(std::move(o), *http::parse_url("http://127.0.0.1:4318/v1/traces"),
                                         std::move(t));
    exp->set_ack_fn([log = log](Ack&& a) { (*log)(std::move(a)); });
    exp->set_before_send([this](const std::vector<SpanRef>& refs) {
      std::lock_guard lock(mu);
      for (auto& r : refs) recorded.insert(r.span_key);
    });
  }
};

OtlpOptions fast_options() {
  OtlpOptions o;
  o.batch_spans = 10;
  o.max_in_flight = 2;
  o.retry.initial_backoff = 1ms;
  o.retry.max_backoff = 5ms;
  o.retry.max_elapsed = 2000ms;
  return o;
}

}  // namespace

TEST(OtlpExporterTest, DeliversEverySpanOnceInBatches) {
  Fixture fx(fast_options(), [](const http::Request& r, int) {
    EXPECT_LE(span_keys_in(r).size(), 10u);
    return status(200, "", "application/x-protobuf");
  });
  ASSERT_TRUE(fx.exp->send(make_spans(25)));
  ASSERT_TRUE(fx.exp->send(make_spans(20, 25)));
  EXPECT_TRUE(fx.exp->stop(5s));
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDelivered), 45u);
  EXPECT_EQ(fx.log->duplicates, 0);
  EXPECT_EQ(fx.unrecorded_posts, 0);
  auto st = fx.exp->stats();
  EXPECT_EQ(st.requests, 5u);
  EXPECT_EQ(st.requests_ok, 5u);
  EXPECT_EQ(st.spans_delivered, 45u);
  EXPECT_GT(st.bytes_raw, st.bytes_wire);  // gzip
  EXPECT_LE(st.max_in_flight_seen, 2u);
}

TEST(OtlpExporterTest, BatchBytesCutsRequests) {
  auto o = fast_options();
  o.batch_spans = 1000;
  o.batch_bytes = 5000;
  o.compression = OtlpOptions::Compression::kNone;
  std::atomic<std::size_t> max_body{0};
  Fixture fx(o, [&](const http::Request& r, int) {
    max_body = std::max(max_body.load(), r.body->size());
    return status(200);
  });
  fx.exp->send(make_spans(40, 0, 1000));
  EXPECT_TRUE(fx.exp->stop(5s));
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDelivered), 40u);
  EXPECT_LE(max_body.load(), 5000u + 200u);  // + request framing
  EXPECT_GE(fx.exp->stats().requests, 8u);
}

TEST(OtlpExporterTest, Splits413InHalvesAndDeadLettersASingleSpan) {
  auto o = fast_options();
  o.batch_spans = 8;
  // Too large when it holds more than 2 spans, or when it holds the span with key 5.
  Fixture fx(o, [](const http::Request& r, int) {
    auto keys = span_keys_in(r);
    if (keys.size() > 2 || std::count(keys.begin(), keys.end(), 5u)) return status(413, "too large");
    return status(200);
  });
  fx.exp->send(make_spans(8));
  EXPECT_TRUE(fx.exp->stop(5s));
  EXPECT_EQ(fx.log->duplicates, 0);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDelivered), 7u);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDead), 1u);
  EXPECT_EQ(fx.log->by_span[5], Ack::Outcome::kDead);
  auto st = fx.exp->stats();
  EXPECT_EQ(st.splits_413, 4u);  // 8 -> 4+4 -> 2+2+2+2, {5,6} -> 5 | 6
  EXPECT_EQ(st.spans_dead, 1u);
  for (auto& a : fx.log->acks)
    if (a.outcome == Ack::Outcome::kDead) {
      EXPECT_EQ(a.http_status, 413);
      EXPECT_NE(a.reason.find("413"), std::string::npos);
      http::Request fake;
      fake.body = std::make_shared<std::string>(a.body);  // uncompressed, decodable
      EXPECT_EQ(span_keys_in(fake), std::vector<std::uint64_t>{5});
    }
}

TEST(OtlpExporterTest, BadRequestIsDeadWithExcerptAndBody) {
  Fixture fx(fast_options(), [](const http::Request&, int) {
    return status(400, std::string(2000, 'e'), "text/plain");
  });
  fx.exp->send(make_spans(3));
  EXPECT_TRUE(fx.exp->stop(5s));
  ASSERT_EQ(fx.log->acks.size(), 1u);
  const auto& a = fx.log->acks[0];
  EXPECT_EQ(a.outcome, Ack::Outcome::kDead);
  EXPECT_EQ(a.http_status, 400);
  EXPECT_EQ(a.reason.rfind("HTTP 400: eee", 0), 0u);
  EXPECT_LE(a.reason.size(), 600u);
  EXPECT_EQ(a.endpoint, "http://127.0.0.1:4318/v1/traces");
  EXPECT_EQ(a.content_type, "application/x-protobuf");
  http::Request fake;
  fake.body = std::make_shared<std::string>(a.body);
  EXPECT_EQ(span_keys_in(fake).size(), 3u);
  EXPECT_FALSE(fx.exp->fatal());
}

TEST(OtlpExporterTest, RetriesTransientThenDelivers) {
  Fixture fx(fast_options(), [](const http::Request&, int n) {
    if (n == 0) return status(503, "", "", "0");
    if (n == 1) {
      http::Response r;
      r.error = http::TransportError::kReset;
      return r;
    }
    if (n == 2) return status(429);
    return status(200);
  });
  fx.exp->send(make_spans(5));
  EXPECT_TRUE(fx.exp->stop(5s));
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDelivered), 5u);
  auto st = fx.exp->stats();
  EXPECT_EQ(st.retries["503"], 1u);
  EXPECT_EQ(st.retries["reset"], 1u);
  EXPECT_EQ(st.retries["429"], 1u);
  EXPECT_EQ(st.requests, 4u);
}

TEST(OtlpExporterTest, AuthErrorIsFatalAndFailsTheRest) {
  Fixture fx(fast_options(), [](const http::Request&, int) { return status(401, "bad key"); });
  fx.exp->send(make_spans(10));  // one full batch goes out
  for (int i = 0; i < 200 && !fx.exp->fatal(); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(fx.exp->fatal());
  EXPECT_NE(fx.exp->fatal_reason().find("401"), std::string::npos);
  EXPECT_FALSE(fx.exp->send(make_spans(5, 10)));
  fx.exp->stop(1s);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kFailed), 15u);
  EXPECT_EQ(fx.log->duplicates, 0);
}

TEST(OtlpExporterTest, RetriesExhaustedWithinMaxElapsedIsFatal) {
  auto o = fast_options();
  o.retry.max_elapsed = 100ms;
  o.retry.initial_backoff = 10ms;
  o.retry.max_backoff = 20ms;
  Fixture fx(o, [](const http::Request&, int) {
    http::Response r;
    r.error = http::TransportError::kRefused;
    return r;
  });
  const auto t0 = std::chrono::steady_clock::now();
  fx.exp->send(make_spans(10));
  while (!fx.exp->fatal() && std::chrono::steady_clock::now() - t0 < 3s) std::this_thread::sleep_for(2ms);
  EXPECT_TRUE(fx.exp->fatal());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_NE(fx.exp->fatal_reason().find("retries exhausted"), std::string::npos);
  fx.exp->stop(1s);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kFailed), 10u);
  EXPECT_GT(fx.exp->stats().retries["refused"], 0u);
}

TEST(OtlpExporterTest, PartialSuccessIsDeliveredAndCounted) {
  Fixture fx(fast_options(), [](const http::Request&, int) {
    otlp::v1::ExportTraceServiceResponse resp;
    resp.mutable_partial_success()->set_rejected_spans(2);
    resp.mutable_partial_success()->set_error_message("old");
    return status(200, resp.SerializeAsString(), "application/x-protobuf");
  });
  fx.exp->send(make_spans(4));
  fx.exp->stop(5s);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDelivered), 4u);
  EXPECT_EQ(fx.exp->stats().spans_partial_rejected, 2u);
  EXPECT_EQ(fx.exp->stats().requests, 1u);
}

TEST(OtlpExporterTest, StopTimesOutAndFailsWhatIsInFlight) {
  auto o = fast_options();
  o.retry.max_elapsed = 0ms;  // retry forever
  Fixture fx(o, [](const http::Request&, int) { return status(503, "", "", "1"); });
  fx.exp->send(make_spans(15));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(fx.exp->stop(200ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kFailed), 15u);
  EXPECT_EQ(fx.log->duplicates, 0);
}

TEST(OtlpExporterTest, RateLimitSpacesRequests) {
  auto o = fast_options();
  o.rate = 20;  // requests/s -> 50 ms apart
  o.batch_spans = 1;
  Fixture fx(o, [](const http::Request&, int) { return status(200); });
  const auto t0 = std::chrono::steady_clock::now();
  fx.exp->send(make_spans(5));
  fx.exp->stop(5s);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 190ms);
  EXPECT_EQ(fx.log->count(Ack::Outcome::kDelivered), 5u);
}

TEST(OtlpExporterTest, LangfuseProfileAddsIngestionHeader) {
  auto o = fast_options();
  o.profile = otlp::Profile::kLangfuse;
  o.headers = {{"Authorization", "Basic x"}};
  std::atomic<bool> ok{false};
  Fixture fx(o, [&](const http::Request& r, int) {
    bool has = false;
    for (auto& [k, v] : r.headers) has |= (k == "x-langfuse-ingestion-version" && v == "4");
    ok = has;
    return status(200, "{}", "application/json");
  });
  fx.exp->send(make_spans(1));
  fx.exp->stop(5s);
  EXPECT_TRUE(ok);
}

TEST(OtlpExporterTest, JsonEncodingFollowsOtlpJsonRules) {
  auto o = fast_options();
  o.encoding = OtlpOptions::Encoding::kJson;
  o.compression = OtlpOptions::Compression::kNone;
  o.batch_spans = 3;
  std::mutex mu;
  std::vector<std::string> bodies;
  Fixture* fxp = nullptr;
  (void)fxp;
  auto t = std::make_unique<FakeTransport>([&](const http::Request& r, int) {
    std::lock_guard lock(mu);
    bodies.push_back(*r.body);
    bool json = false;
    for (auto& [k, v] : r.headers) json |= (k == "Content-Type" && v == "application/json");
    EXPECT_TRUE(json);
    return status(200, "{\"partialSuccess\":{\"rejectedSpans\":\"1\"}}", "application/json");
  });
  OtlpExporter exp(o, *http::parse_url("http://127.0.0.1:4318/v1/traces"), std::move(t));
  AckLog log;
  exp.set_ack_fn([&](Ack&& a) { log(std::move(a)); });
  auto spans = make_spans(4);
  spans[1].has_parent = true;
  spans[1].parent_id = span_id_from_key(0xabcdef);
  spans[2].is_error = true;
  spans[2].status_message = "boom \"x\"";
  spans[3].metadata.push_back(Attr::integer("n", -3));
  exp.send(std::move(spans));
  EXPECT_TRUE(exp.stop(5s));
  EXPECT_EQ(log.count(Ack::Outcome::kDelivered), 4u);
  EXPECT_EQ(exp.stats().spans_partial_rejected, 2u);
  ASSERT_EQ(bodies.size(), 2u);
  const std::string& b = bodies[0];
  EXPECT_EQ(b.rfind("{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\"", 0), 0u) << b;
  EXPECT_NE(b.find("\"spans\":[{\"traceId\":\"09"), std::string::npos) << b.substr(0, 400);
  EXPECT_NE(b.find("\"spanId\":\"0000000000000001\""), std::string::npos);
  EXPECT_NE(b.find("\"parentSpanId\":\"0000000000abcdef\""), std::string::npos);
  EXPECT_NE(b.find("\"kind\":1"), std::string::npos);
  EXPECT_NE(b.find("\"startTimeUnixNano\":\"1756860758373000000\""), std::string::npos);
  EXPECT_NE(b.find("\"status\":{\"code\":2,\"message\":\"boom \\\"x\\\"\"}"), std::string::npos);
  EXPECT_NE(b.find("},{\"traceId\""), std::string::npos);  // slices joined by commas
  EXPECT_EQ(b.substr(b.size() - 6), "]}]}]}");
  EXPECT_NE(bodies[1].find("{\"key\":\"chsync.n\",\"value\":{\"intValue\":\"-3\"}}"), std::string::npos);
  EXPECT_EQ(bodies[1].find("\"spans\":[,"), std::string::npos);
}
