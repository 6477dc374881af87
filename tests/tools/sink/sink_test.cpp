// Integration tests for chsync-sink: every test starts the real binary on 127.0.0.1 with a free
// port (--listen 127.0.0.1:0 --port-file), talks plain HTTP/1.1 over POSIX sockets with
// timeouts, and kills the sink on exit.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/compress.h"
#include "tests/support/loopback.h"
#include "tools/proto/otlp_trace.pb.h"

namespace {

namespace fs = std::filesystem;
namespace pb = chsync::otlp::v1;
using namespace std::chrono_literals;

constexpr auto kStartTimeout = 10s;
constexpr int kIoTimeoutMs = 10000;

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

struct HttpResult {
  int status = 0;                              // 0: no response (reset / closed)
  bool reset = false;                          // ECONNRESET seen
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

HttpResult http(std::uint16_t port, const std::string& method, const std::string& target,
                const std::string& body = {},
                const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  HttpResult r;
  const int fd = chsync::test::connect_loopback(port);
  if (fd < 0) {
    ADD_FAILURE() << "connect failed";
    return r;
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req.append(k).append(": ").append(v).append("\r\n");
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  std::size_t off = 0;
  while (off < req.size()) {
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      r.reset = errno == ECONNRESET || errno == EPIPE;
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, kIoTimeoutMs) <= 0) {
      ADD_FAILURE() << "timeout waiting for the response";
      break;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      r.reset = errno == ECONNRESET;
      break;
    }
    if (n == 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto hdr_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || hdr_end == std::string::npos) return r;
  r.status = std::stoi(raw.substr(9, 3));
  std::istringstream hs(raw.substr(0, hdr_end));
  std::string line;
  std::getline(hs, line);
  while (std::getline(hs, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    r.headers[k] = v;
  }
  r.body = raw.substr(hdr_end + 4);
  return r;
}

// The sink process; SIGTERM (then SIGKILL) in the destructor.
class Sink {
 public:
  explicit Sink(std::vector<std::string> extra = {}) {
    char tmpl[] = "/tmp/chsync-sink-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    const fs::path port_file = dir_ / "port";
    record_ = dir_ / "record.jsonl";
    std::vector<std::string> args = {std::string(CHSYNC_BINARY_DIR) + "/chsync-sink",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     port_file.string(),
                                     "--record",
                                     record_.string(),
                                     "--threads",
                                     "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    // Forked here, after its arguments are built (the child execs them), not in the initializer
    // list the check asks for.
    pid_ = ::fork();  // NOLINT(*-prefer-member-initializer): see above
    if (pid_ == 0) {
      std::vector<char*> argv;
      argv.reserve(args.size() + 1);
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(port_file)) {
        port_ = static_cast<std::uint16_t>(std::stoi(read_file(port_file)));
        return;
      }
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "sink did not start";
  }
  ~Sink() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      if (!wait_exit(5s)) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
      }
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // Waits for the process to exit; returns true and stores the exit status.
  bool wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        exit_status_ = st;
        pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  int exit_status() const { return exit_status_; }
  const fs::path& record() const { return record_; }
  const fs::path& dir() const { return dir_; }
  std::string stats() { return http(port_, "GET", "/stats").body; }

 private:
  fs::path dir_;
  fs::path record_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  int exit_status_ = -1;
};

// Pulls "key":<number> out of flat stats JSON (good enough for the counters we check).
long long stat(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto pos = json.find(needle);
  if (pos == std::string::npos) return -1;
  return std::stoll(json.substr(pos + needle.size()));
}

std::string bytes_of(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}

const std::string kTraceId = bytes_of({0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce,
                                       0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36});
const std::string kRootId = bytes_of({0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7});
const std::string kChildId = bytes_of({0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb8});

void add_span(pb::ScopeSpans* ss, const std::string& trace, const std::string& id,
              const std::string& parent, const std::string& name) {
  pb::Span* s = ss->add_spans();
  s->set_trace_id(trace);
  s->set_span_id(id);
  s->set_parent_span_id(parent);
  s->set_name(name);
  s->set_kind(pb::Span::SPAN_KIND_CLIENT);
  s->set_start_time_unix_nano(1747872000000000000ull);
  s->set_end_time_unix_nano(1747872003500000000ull);
  auto* kv = s->add_attributes();
  kv->set_key("gen_ai.usage.input_tokens");
  kv->mutable_value()->set_int_value(1234);
  kv = s->add_attributes();
  kv->set_key("flag");
  kv->mutable_value()->set_bool_value(false);  // oneof default value must survive
  kv = s->add_attributes();
  kv->set_key("text");
  kv->mutable_value()->set_string_value("héllo \"q\"\n");
}

pb::ExportTraceServiceRequest make_request(
    const std::vector<std::pair<std::string, std::string>>& spans,
    const std::string& trace = kTraceId) {
  pb::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* attr = rs->mutable_resource()->add_attributes();
  attr->set_key("service.name");
  attr->mutable_value()->set_string_value("claude-code-export");
  auto* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("cc-exporter");
  ss->mutable_scope()->set_version("0.1.0");
  for (const auto& [id, parent] : spans) {
    add_span(ss, trace, id, parent,
             "span " + std::to_string(static_cast<unsigned char>(id.back())));
  }
  return req;
}

const std::vector<std::pair<std::string, std::string>> kHeaderProto = {
    {"Content-Type", "application/x-protobuf"}};
const std::vector<std::pair<std::string, std::string>> kHeaderJson = {
    {"Content-Type", "application/json"}};

const std::string kJsonRequest =
    R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},)"
    R"("scopeSpans":[{"scope":{"name":"cc-exporter","version":"0.1.0"},"spans":[)"
    R"({"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","name":"chat","kind":3,)"
    R"("startTimeUnixNano":"1747872000000000000","endTimeUnixNano":1747872003500000000,)"
    R"("attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"d","value":{"doubleValue":1.5}},)"
    R"({"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"boolValue":true}]}}}],)"
    R"("status":{"code":2,"message":"boom"}}]}]}]})";

TEST(SinkTest, ProtobufRequestIsAcceptedAndRecorded) {
  Sink sink;
  const auto req = make_request({{kRootId, ""}, {kChildId, kRootId}});
  const auto r = http(sink.port(), "POST", "/v1/traces", req.SerializeAsString(), kHeaderProto);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-type"), "application/x-protobuf");
  EXPECT_TRUE(r.body.empty());
  const auto lines = read_lines(sink.record());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find(R"("trace_id":"4bf92f3577b34da6a3ce929d0e0e4736")"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("span_id":"00f067aa0ba902b7","parent_span_id":"")"),
            std::string::npos);
  EXPECT_NE(lines[1].find(R"("parent_span_id":"00f067aa0ba902b7")"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("gen_ai.usage.input_tokens":1234)"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("flag":false)"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("text":"héllo \"q\"\n")"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("start_unix_nano":"1747872000000000000")"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("resource":{"service.name":"claude-code-export"})"),
            std::string::npos);
  EXPECT_NE(lines[0].find(R"("scope":{"name":"cc-exporter","version":"0.1.0"})"),
            std::string::npos);
  EXPECT_NE(lines[0].find(R"("encoding":"protobuf","request":1})"), std::string::npos);
  const auto s = sink.stats();
  EXPECT_EQ(stat(s, "spans_accepted"), 2);
  EXPECT_EQ(stat(s, "spans_unique"), 2);
  EXPECT_EQ(stat(s, "orphans_open"), 0);
}

TEST(SinkTest, JsonRequestIsAcceptedAndRecorded) {
  Sink sink;
  const auto r = http(sink.port(), "POST", "/v1/traces", kJsonRequest, kHeaderJson);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "{}");
  const auto lines = read_lines(sink.record());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(R"("trace_id":"4bf92f3577b34da6a3ce929d0e0e4736")"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("attributes":{"n":42,"d":1.5,"a":["x",true]})"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("status":{"code":2,"message":"boom"})"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("end_unix_nano":"1747872003500000000")"), std::string::npos);
  EXPECT_NE(lines[0].find(R"("encoding":"json")"), std::string::npos);
}

TEST(SinkTest, LangfuseOtelPathAnswersJsonEvenForProtobuf) {
  Sink sink;
  const auto req = make_request({{kRootId, ""}});
  const auto r = http(sink.port(), "POST", "/api/public/otel/v1/traces", req.SerializeAsString(),
                      kHeaderProto);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
}

TEST(SinkTest, GzipBodyIsDecompressed) {
  Sink sink;
  const std::string plain = make_request({{kRootId, ""}, {kChildId, kRootId}}).SerializeAsString();
  const std::string gz = chsync::test::deflate_bytes(plain);
  auto headers = kHeaderProto;
  headers.emplace_back("Content-Encoding", "gzip");
  ASSERT_EQ(http(sink.port(), "POST", "/v1/traces", gz, headers).status, 200);
  auto jheaders = kHeaderJson;
  jheaders.emplace_back("Content-Encoding", "gzip");
  ASSERT_EQ(
      http(sink.port(), "POST", "/v1/traces", chsync::test::deflate_bytes(kJsonRequest), jheaders)
          .status,
      200);
  const auto s = sink.stats();
  EXPECT_EQ(stat(s, "bytes_received_wire"),
            static_cast<long long>(gz.size() + chsync::test::deflate_bytes(kJsonRequest).size()));
  EXPECT_EQ(stat(s, "bytes_received_decoded"),
            static_cast<long long>(plain.size() + kJsonRequest.size()));
  EXPECT_EQ(stat(s, "spans_accepted"), 3);
  EXPECT_EQ(stat(s, "spans_duplicate"), 1);  // the JSON span repeats the protobuf root
  // Corrupt gzip → 400, nothing recorded.
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", gz.substr(0, gz.size() / 2), headers).status,
            400);
  EXPECT_EQ(read_lines(sink.record()).size(), 3u);
}

TEST(SinkTest, InvalidSpansAreRejectedWith400) {
  Sink sink;
  // Zero trace id, protobuf: the body is a google.rpc.Status.
  auto req = make_request({{kRootId, ""}}, std::string(16, '\0'));
  auto r = http(sink.port(), "POST", "/v1/traces", req.SerializeAsString(), kHeaderProto);
  ASSERT_EQ(r.status, 400);
  pb::RpcStatus st;
  ASSERT_TRUE(st.ParseFromString(r.body));
  EXPECT_NE(st.message().find("trace_id"), std::string::npos) << st.message();
  // Zero trace id, JSON.
  std::string bad = kJsonRequest;
  bad.replace(bad.find("4BF92F3577B34DA6A3CE929D0E0E4736"), 32, std::string(32, '0'));
  r = http(sink.port(), "POST", "/v1/traces", bad, kHeaderJson);
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(r.body.rfind(R"({"code":3,"message":)", 0), 0u) << r.body;
  // Short span id, empty name, end < start, bad parent length.
  auto mutate = [&](auto fn) {
    auto m = make_request({{kRootId, ""}});
    fn(m.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0));
    return http(sink.port(), "POST", "/v1/traces", m.SerializeAsString(), kHeaderProto).status;
  };
  EXPECT_EQ(mutate([](pb::Span* s) { s->set_span_id("1234"); }), 400);
  EXPECT_EQ(mutate([](pb::Span* s) { s->set_span_id(std::string(8, '\0')); }), 400);
  EXPECT_EQ(mutate([](pb::Span* s) { s->set_name(""); }), 400);
  EXPECT_EQ(mutate([](pb::Span* s) { s->set_end_time_unix_nano(1); }), 400);
  EXPECT_EQ(mutate([](pb::Span* s) {
              s->set_start_time_unix_nano(0);
              s->set_end_time_unix_nano(0);
            }),
            400);
  EXPECT_EQ(mutate([](pb::Span* s) { s->set_parent_span_id("abc"); }), 400);
  // Invalid UTF-8 in a proto3 string: libprotobuf's parse rejects it (expected log line).
  EXPECT_EQ(mutate([](pb::Span* s) { s->set_name("bad \xff name"); }), 400);
  // Not protobuf at all; snake_case JSON keys (invalid in OTLP/JSON); invalid UTF-8 in JSON.
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", "\xff\xff\xff", kHeaderProto).status, 400);
  std::string snake = kJsonRequest;
  snake.replace(snake.find("traceId"), 7, "trace_id");
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", snake, kHeaderJson).status, 400);
  std::string utf = kJsonRequest;
  utf.replace(utf.find("\"chat\""), 6, "\"ch\xc3\x28t\"");
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", utf, kHeaderJson).status, 400);
  // Unknown content type.
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", "x", {{"Content-Type", "text/plain"}}).status,
            415);
  EXPECT_TRUE(read_lines(sink.record()).empty());
  EXPECT_EQ(stat(sink.stats(), "spans_accepted"), 0);
}

TEST(SinkTest, TooLargeBodyGets413OnWireAndDecompressedSize) {
  Sink sink({"--max-body-bytes", "1000"});
  const std::string big(2000, 'x');
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", big, kHeaderProto).status, 413);
  auto headers = kHeaderProto;
  headers.emplace_back("Content-Encoding", "gzip");
  const std::string bomb = chsync::test::deflate_bytes(std::string(100000, '\0'));
  ASSERT_LT(bomb.size(), 1000u);
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", bomb, headers).status, 413);
  const auto s = sink.stats();
  EXPECT_NE(s.find(R"("413":2)"), std::string::npos) << s;
}

TEST(SinkTest, FailRateAnswersStatusesWithRetryAfter) {
  Sink sink({"--fail-rate", "1", "--fail-status", "503,429", "--retry-after", "2"});
  const std::string body = make_request({{kRootId, ""}}).SerializeAsString();
  auto r = http(sink.port(), "POST", "/v1/traces", body, kHeaderProto);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "2");
  r = http(sink.port(), "POST", "/v1/traces", body, kHeaderProto);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers["retry-after"], "2");
  // HTTP-date form, switched at runtime.
  ASSERT_EQ(http(sink.port(), "POST", "/control", R"({"retry_after_date":true})").status, 200);
  r = http(sink.port(), "POST", "/v1/traces", body, kHeaderProto);
  EXPECT_NE(r.headers["retry-after"].find(" GMT"), std::string::npos) << r.headers["retry-after"];
  EXPECT_TRUE(read_lines(sink.record()).empty());  // faulted requests record nothing
  const auto s = sink.stats();
  EXPECT_EQ(stat(s, "status_5xx"), 2);
  EXPECT_EQ(stat(s, "status_429"), 1);
  // Turn faults off: the next request succeeds.
  ASSERT_EQ(http(sink.port(), "POST", "/control", R"({"fail-rate":0})").status, 200);
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status, 200);
}

TEST(SinkTest, FailFirstThenSucceeds) {
  Sink sink({"--fail-first", "2", "--fail-status", "502"});
  const std::string body = make_request({{kRootId, ""}}).SerializeAsString();
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status, 502);
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status, 502);
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status, 200);
  EXPECT_EQ(read_lines(sink.record()).size(), 1u);
}

TEST(SinkTest, ResetClosesWithoutResponse) {
  Sink sink({"--reset-rate", "1"});
  const std::string body = make_request({{kRootId, ""}}).SerializeAsString();
  const auto r = http(sink.port(), "POST", "/v1/traces", body, kHeaderProto);
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.reset);
  EXPECT_TRUE(read_lines(sink.record()).empty());
  EXPECT_EQ(stat(sink.stats(), "resets"), 1);
}

TEST(SinkTest, RejectAllViaControlAndBadControl) {
  Sink sink;
  const std::string body = make_request({{kRootId, ""}}).SerializeAsString();
  ASSERT_EQ(http(sink.port(), "POST", "/control", R"({"reject-all":400})").status, 200);
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status, 400);
  ASSERT_EQ(http(sink.port(), "POST", "/control", R"({"reject-all":0})").status, 200);
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status, 200);
  EXPECT_EQ(http(sink.port(), "POST", "/control", R"({"no-such-knob":1})").status, 400);
  EXPECT_EQ(http(sink.port(), "POST", "/control", "not json").status, 400);
  const auto cfg = http(sink.port(), "GET", "/control");
  EXPECT_NE(cfg.body.find(R"("reject-all":0)"), std::string::npos) << cfg.body;
  ASSERT_EQ(http(sink.port(), "POST", "/control", R"({"clear-stats":true})").status, 200);
  EXPECT_EQ(stat(sink.stats(), "spans_accepted"), 0);
}

TEST(SinkTest, OrphansAreTrackedAcrossRequests) {
  Sink sink;
  ASSERT_EQ(http(sink.port(), "POST", "/v1/traces",
                 make_request({{kChildId, kRootId}}).SerializeAsString(), kHeaderProto)
                .status,
            200);
  EXPECT_EQ(stat(sink.stats(), "orphans_open"), 1);
  // Same parent id under another trace does not close it.
  std::string other_trace = kTraceId;
  other_trace[0] = 0x11;
  ASSERT_EQ(http(sink.port(), "POST", "/v1/traces",
                 make_request({{kRootId, ""}}, other_trace).SerializeAsString(), kHeaderProto)
                .status,
            200);
  EXPECT_EQ(stat(sink.stats(), "orphans_open"), 1);
  ASSERT_EQ(http(sink.port(), "POST", "/v1/traces",
                 make_request({{kRootId, ""}}).SerializeAsString(), kHeaderProto)
                .status,
            200);
  const auto s = sink.stats();
  EXPECT_EQ(stat(s, "orphans_open"), 0);
  EXPECT_EQ(stat(s, "spans_unique"), 3);
  EXPECT_EQ(stat(s, "requests_total"), 3);
}

TEST(SinkTest, LatencyOverlapsAndMaxConcurrentIsCounted) {
  // 1 s each: all four must be in flight at once (max_concurrent_requests), so each client's
  // request must arrive while the first is still held; a loaded box may start a thread late.
  Sink sink({"--latency-ms", "1000"});
  const std::string body = make_request({{kRootId, ""}}).SerializeAsString();
  constexpr int kClients = 4;
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  std::vector<int> statuses(kClients);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      statuses[i] = http(sink.port(), "POST", "/v1/traces", body, kHeaderProto).status;
    });
  }
  for (auto& t : threads) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  for (const int st : statuses) EXPECT_EQ(st, 200);
  EXPECT_LT(elapsed, 3800ms);  // timers do not block the two io threads (serial: 4 s)
  const auto s = sink.stats();
  EXPECT_EQ(stat(s, "max_concurrent_requests"), kClients) << s;
  EXPECT_EQ(stat(s, "spans_duplicate"), kClients - 1);
}

TEST(SinkTest, LegacyBatchWithPerEventFailures) {
  Sink sink({"--legacy-event-fail-rate", "1", "--legacy-event-fail-status", "500"});
  const std::string batch =
      R"({"batch":[{"id":"ev-1","timestamp":"2025-05-22T00:00:00.000Z","type":"trace-create","body":{"id":"t1","name":"turn"}},)"
      R"({"id":"ev-2","timestamp":"2025-05-22T00:00:00.000+02:00","type":"span-create","body":{"traceId":"t1"}},)"
      R"({"id":"ev-3","timestamp":"2025-05-22T00:00:00.000Z","type":"bogus-create","body":{"id":"x"}}]})";
  auto r = http(sink.port(), "POST", "/api/public/ingestion", batch, kHeaderJson);
  ASSERT_EQ(r.status, 207);
  EXPECT_NE(r.body.find(R"({"id":"ev-1","status":500)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"({"id":"ev-2","status":400)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"({"id":"ev-3","status":400)"), std::string::npos) << r.body;
  // A 500 fails only the first time an id is seen: the retry succeeds.
  r = http(sink.port(), "POST", "/api/public/ingestion", batch, kHeaderJson);
  ASSERT_EQ(r.status, 207);
  EXPECT_NE(r.body.find(R"("successes":[{"id":"ev-1","status":201}])"), std::string::npos)
      << r.body;
  const auto lines = read_lines(sink.record());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(
      lines[0].find(R"("event_id":"ev-1","type":"trace-create","body_id":"t1","trace_id":"t1")"),
      std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(R"("encoding":"langfuse-legacy","request":2})"), std::string::npos);
  const auto s = sink.stats();
  EXPECT_EQ(stat(s, "legacy_events_accepted"), 1);
  EXPECT_EQ(stat(s, "legacy_events_failed"), 5);
  // Whole-request error.
  EXPECT_EQ(
      http(sink.port(), "POST", "/api/public/ingestion", R"({"batch":{}})", kHeaderJson).status,
      400);
}

TEST(SinkTest, BasicAuthAndRequiredHeader) {
  Sink sink({"--require-basic-auth", "pk-lf-1:sk-lf-2", "--require-header",
             "x-langfuse-ingestion-version=4"});
  const std::string body = make_request({{kRootId, ""}}).SerializeAsString();
  const std::string path = "/api/public/otel/v1/traces";
  auto h = kHeaderProto;
  EXPECT_EQ(http(sink.port(), "POST", path, body, h).status, 401);
  h.emplace_back("Authorization", "Basic cGstbGYtMTpzay1sZi0y");  // base64("pk-lf-1:sk-lf-2")
  EXPECT_EQ(http(sink.port(), "POST", path, body, h).status, 400);
  h.emplace_back("x-langfuse-ingestion-version", "4");
  EXPECT_EQ(http(sink.port(), "POST", path, body, h).status, 200);
}

TEST(SinkTest, NoDecodeAcceptsAnything) {
  Sink sink({"--no-decode"});
  EXPECT_EQ(http(sink.port(), "POST", "/v1/traces", "garbage", kHeaderProto).status, 200);
  EXPECT_TRUE(read_lines(sink.record()).empty());
  EXPECT_EQ(stat(sink.stats(), "bytes_received_wire"), 7);
}

TEST(SinkTest, ShutdownEndpointAndSigtermExitCleanly) {
  {
    Sink sink;
    EXPECT_EQ(http(sink.port(), "GET", "/healthz").status, 200);
    EXPECT_EQ(http(sink.port(), "POST", "/shutdown").status, 200);
    ASSERT_TRUE(sink.wait_exit(5s));
    EXPECT_TRUE(WIFEXITED(sink.exit_status()));
    EXPECT_EQ(WEXITSTATUS(sink.exit_status()), 0);
  }
  {
    Sink sink;
    ::kill(sink.pid(), SIGTERM);
    ASSERT_TRUE(sink.wait_exit(5s));
    EXPECT_TRUE(WIFEXITED(sink.exit_status()));
    EXPECT_EQ(WEXITSTATUS(sink.exit_status()), 0);
  }
}

TEST(SinkTest, ServesHttpsWithSelfSignedCert) {
  if (std::system("command -v openssl >/dev/null && command -v curl >/dev/null") != 0) {
    GTEST_SKIP() << "openssl or curl not installed";
  }
  char tmpl[] = "/tmp/chsync-sink-tls-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string gen =
      "timeout 60 openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(gen.c_str()), 0);
  {
    Sink sink({"--tls-cert", cert, "--tls-key", key});
    const std::string body_file = (dir / "body.bin").string();
    std::ofstream(body_file, std::ios::binary) << make_request({{kRootId, ""}}).SerializeAsString();
    const std::string curl =
        "curl -sS --max-time 10 --cacert " + cert +
        " -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-protobuf'"
        " --data-binary @" +
        body_file + " https://127.0.0.1:" + std::to_string(sink.port()) + "/v1/traces > " +
        (dir / "code").string();
    ASSERT_EQ(std::system(curl.c_str()), 0);
    EXPECT_EQ(read_file(dir / "code"), "200");
    EXPECT_EQ(read_lines(sink.record()).size(), 1u);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
