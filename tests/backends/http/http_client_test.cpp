// The Beast client and the OTLP exporter end to end against a loopback Beast server written here
// (plain and TLS with a self-signed certificate made by the openssl CLI). 127.0.0.1 only; every
// test is bounded in time and cleans up its server threads and temp files.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "backends/http/http_client.h"
#include "backends/otlp/otlp_exporter.h"
#include "tests/support/spans.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace chsync;

namespace {

struct Action {
  int status = 200;
  std::string body;
  std::string content_type = "application/x-protobuf";
  std::map<std::string, std::string> headers;
  std::chrono::milliseconds delay{0};
  bool reset = false;  // close the connection without answering
};
using Script = std::function<Action(int n, const bhttp::request<bhttp::string_body>&)>;

class TestServer {
 public:
  explicit TestServer(Script script, ssl::context* tls = nullptr)
      : script_(std::move(script)),
        tls_(tls),
        acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    acceptor_.non_blocking(true);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~TestServer() { stop(); }
  TestServer(const TestServer&) = delete;  // owns the accept and connection threads
  TestServer& operator=(const TestServer&) = delete;
  void stop() {
    if (stop_.exchange(true)) return;
    accept_thread_.join();
    {
      std::lock_guard lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : conn_threads_) t.join();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::string url(bool https = false) const {
    return std::string(https ? "https" : "http") + "://127.0.0.1:" + std::to_string(port()) +
           "/v1/traces";
  }

  std::atomic<int> connections{0}, requests{0}, concurrent{0}, max_concurrent{0};
  std::mutex mu_;
  std::vector<std::string> user_agents;

 private:
  void accept_loop() {
    while (!stop_) {
      beast::error_code ec;
      tcp::socket s(ioc_);
      acceptor_.accept(s, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        std::this_thread::sleep_for(2ms);
        continue;
      }
      if (ec) continue;
      ++connections;
      std::lock_guard lock(mu_);
      fds_.push_back(s.native_handle());
      conn_threads_.emplace_back([this, s = std::move(s)]() mutable { serve(std::move(s)); });
    }
  }
  template <typename Stream>
  void serve_stream(Stream& stream, tcp::socket& sock) {
    beast::flat_buffer buf;
    for (;;) {
      bhttp::request<bhttp::string_body> req;
      beast::error_code ec;
      bhttp::read(stream, buf, req, ec);
      if (ec) return;
      const int n = requests++;
      {
        std::lock_guard lock(mu_);
        user_agents.emplace_back(req[bhttp::field::user_agent]);
      }
      const int c = ++concurrent;
      int m = max_concurrent.load();
      while (c > m && !max_concurrent.compare_exchange_weak(m, c)) {
      }
      Action a = script_(n, req);
      if (a.delay.count()) std::this_thread::sleep_for(a.delay);
      --concurrent;
      if (a.reset) {
        sock.set_option(asio::socket_base::linger(true, 0));
        sock.close(ec);
        return;
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(a.status), 11};
      res.set(bhttp::field::content_type, a.content_type);
      for (auto& [k, v] : a.headers) res.set(k, v);
      res.body() = a.body;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      bhttp::write(stream, res, ec);
      if (ec || !req.keep_alive()) return;
    }
  }
  void serve(tcp::socket s) {
    if (tls_) {
      ssl::stream<tcp::socket&> stream(s, *tls_);
      beast::error_code ec;
      stream.handshake(ssl::stream_base::server, ec);
      if (ec) return;
      serve_stream(stream, s);
    } else {
      serve_stream(s, s);
    }
  }

  Script script_;
  ssl::context* tls_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::vector<std::thread> conn_threads_;
  std::vector<int> fds_;
};

std::vector<Span> make_spans(int n, int first = 0) { return test::tool_spans(n, first); }

struct Acks {
  std::mutex mu;
  std::map<Ack::Outcome, std::size_t> n;
  std::vector<Ack> all;
  void add(Ack&& a) {
    std::lock_guard lock(mu);
    n[a.outcome] += a.spans.size();
    all.push_back(std::move(a));
  }
};

otlp::OtlpOptions opts(const std::string& url) {
  otlp::OtlpOptions o;
  o.endpoint = url;
  o.batch_spans = 5;
  o.max_in_flight = 2;
  o.timeout = 3000ms;
  o.connect_timeout = 1000ms;
  o.retry.initial_backoff = 10ms;
  o.retry.max_backoff = 50ms;
  o.retry.max_elapsed = 5000ms;
  o.io_threads = 2;
  return o;
}

std::unique_ptr<Exporter> build(otlp::OtlpOptions o, Acks& acks) {
  std::string err;
  auto e = otlp::make_otlp_exporter(std::move(o), &err);
  EXPECT_TRUE(e) << err;
  if (e) e->set_ack_fn([&acks](Ack&& a) { acks.add(std::move(a)); });
  return e;
}

}  // namespace

TEST(HttpClientTest, RetryAfter503ThenSuccessOnOneKeepAliveConnection) {
  TestServer srv([](int n, const auto& req) {
    Action a;
    EXPECT_EQ(req[bhttp::field::content_type], "application/x-protobuf");
    EXPECT_EQ(req[bhttp::field::content_encoding], "gzip");
    if (n == 0) {
      a.status = 503;
      a.headers["Retry-After"] = "1";
    }
    return a;
  });
  Acks acks;
  auto o = opts(srv.url());
  o.max_in_flight = 1;
  auto e = build(o, acks);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(e->send(make_spans(12)));
  EXPECT_TRUE(e->stop(10s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 900ms);  // Retry-After: 1 honoured
  EXPECT_EQ(acks.n[Ack::Outcome::kDelivered], 12u);
  EXPECT_EQ(srv.requests, 4);
  EXPECT_EQ(srv.connections, 1);  // keep-alive reuse
  EXPECT_EQ(e->stats().retries.at("503"), 1u);
  srv.stop();
  ASSERT_FALSE(srv.user_agents.empty());
  EXPECT_EQ(srv.user_agents[0].rfind("chsync/", 0), 0u);
}

TEST(HttpClientTest, ResetThenSuccess) {
  TestServer srv([](int n, const auto&) {
    Action a;
    a.reset = n == 0;
    return a;
  });
  Acks acks;
  auto e = build(opts(srv.url()), acks);
  e->send(make_spans(5));
  EXPECT_TRUE(e->stop(10s));
  EXPECT_EQ(acks.n[Ack::Outcome::kDelivered], 5u);
  EXPECT_EQ(e->stats().retries.at("reset"), 1u);
}

TEST(HttpClientTest, BadRequestIsDead) {
  TestServer srv([](int, const auto&) {
    Action a;
    a.status = 400;
    a.body = "Failed to parse OTel Protobuf";
    a.content_type = "text/plain";
    return a;
  });
  Acks acks;
  auto e = build(opts(srv.url()), acks);
  e->send(make_spans(5));
  EXPECT_TRUE(e->stop(10s));
  ASSERT_EQ(acks.n[Ack::Outcome::kDead], 5u);
  EXPECT_NE(acks.all[0].reason.find("Failed to parse"), std::string::npos);
  EXPECT_FALSE(acks.all[0].body.empty());
  EXPECT_FALSE(e->fatal());
}

TEST(HttpClientTest, DownBackendIsFatalWithinMaxElapsed) {
  // A port bound but never listened on, held for the whole test: connections are refused. A
  // port found free and closed again could be bound meanwhile by a test running beside this one.
  asio::io_context ioc;
  tcp::acceptor held(ioc);
  held.open(tcp::v4());
  held.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const unsigned short port = held.local_endpoint().port();
  Acks acks;
  auto o = opts("http://127.0.0.1:" + std::to_string(port) + "/v1/traces");
  o.retry.max_elapsed = 300ms;
  auto e = build(o, acks);
  const auto t0 = std::chrono::steady_clock::now();
  e->send(make_spans(7));
  while (!e->fatal() && std::chrono::steady_clock::now() - t0 < 5s)
    std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(e->fatal());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_FALSE(e->send(make_spans(1, 100)));
  e->stop(2s);
  EXPECT_EQ(acks.n[Ack::Outcome::kFailed], 8u);
  EXPECT_GT(e->stats().retries.at("refused"), 0u);
}

TEST(HttpClientTest, MaxInFlightRespectedWithSlowServer) {
  TestServer srv([](int, const auto&) {
    Action a;
    a.delay = 80ms;
    return a;
  });
  Acks acks;
  auto o = opts(srv.url());
  o.batch_spans = 1;
  o.max_in_flight = 3;
  auto e = build(o, acks);
  e->send(make_spans(12));
  EXPECT_TRUE(e->stop(10s));
  EXPECT_EQ(acks.n[Ack::Outcome::kDelivered], 12u);
  EXPECT_LE(srv.max_concurrent, 3);
  EXPECT_GE(srv.max_concurrent, 2);
  const auto st = e->stats();
  EXPECT_EQ(st.max_in_flight_seen, 3u);
  EXPECT_GT(st.time_blocked_ms, 100u);
  EXPECT_LE(srv.connections, 3);
}

TEST(HttpClientTest, RequestTimeoutIsRetried) {
  TestServer srv([](int n, const auto&) {
    Action a;
    if (n == 0) a.delay = 700ms;
    return a;
  });
  Acks acks;
  auto o = opts(srv.url());
  o.timeout = 300ms;
  auto e = build(o, acks);
  e->send(make_spans(5));
  EXPECT_TRUE(e->stop(10s));
  EXPECT_EQ(acks.n[Ack::Outcome::kDelivered], 5u);
  EXPECT_EQ(e->stats().retries.at("timeout"), 1u);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("chsync_tls_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-addext subjectAltName=DNS:localhost -keyout " +
        (dir_ / "key.pem").string() + " -out " + (dir_ / "cert.pem").string() + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    ctx_.use_certificate_chain_file((dir_ / "cert.pem").string());
    ctx_.use_private_key_file((dir_ / "key.pem").string(), ssl::context::pem);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  ssl::context ctx_{ssl::context::tls_server};
};

TEST_F(TlsTest, SelfSignedFailsWithoutCaFileAndWorksWithIt) {
  TestServer srv([](int, const auto&) { return Action{}; }, &ctx_);
  const std::string by_name = "https://localhost:" + std::to_string(srv.port()) + "/v1/traces";
  {
    Acks acks;
    auto e = build(opts(by_name), acks);
    e->send(make_spans(5));
    EXPECT_TRUE(e->stop(5s));
    EXPECT_TRUE(e->fatal());
    EXPECT_NE(e->fatal_reason().find("TLS"), std::string::npos) << e->fatal_reason();
    EXPECT_EQ(acks.n[Ack::Outcome::kFailed], 5u);
  }
  {
    Acks acks;
    auto o = opts(by_name);
    o.ca_file = (dir_ / "cert.pem").string();
    auto e = build(o, acks);
    e->send(make_spans(5));
    EXPECT_TRUE(e->stop(5s));
    EXPECT_FALSE(e->fatal()) << e->fatal_reason();
    EXPECT_EQ(acks.n[Ack::Outcome::kDelivered], 5u);
  }
  {
    Acks acks;
    auto o = opts(srv.url(true));
    o.insecure = true;
    auto e = build(o, acks);
    e->send(make_spans(5));
    EXPECT_TRUE(e->stop(5s));
    EXPECT_EQ(acks.n[Ack::Outcome::kDelivered], 5u);
  }
  {
    // Host verification: the certificate names localhost only, not 127.0.0.1.
    Acks acks;
    auto o = opts(srv.url(true));
    o.ca_file = (dir_ / "cert.pem").string();
    auto e = build(o, acks);
    e->send(make_spans(1));
    e->stop(5s);
    EXPECT_TRUE(e->fatal());
    EXPECT_NE(e->fatal_reason().find("TLS"), std::string::npos) << e->fatal_reason();
    EXPECT_EQ(acks.n[Ack::Outcome::kFailed], 1u);
  }
}

TEST(HttpClientTest, BadConfigIsReportedByTheFactory) {
  std::string err;
  otlp::OtlpOptions o;
  o.endpoint = "ftp://x";
  EXPECT_FALSE(otlp::make_otlp_exporter(o, &err));
  EXPECT_NE(err.find("invalid endpoint"), std::string::npos);
  o.endpoint = "https://127.0.0.1:1/v1/traces";
  o.ca_file = "/nonexistent/ca.pem";
  EXPECT_FALSE(otlp::make_otlp_exporter(o, &err));
  EXPECT_NE(err.find("CA file"), std::string::npos);
}
