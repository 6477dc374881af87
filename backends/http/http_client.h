// Async HTTP/1.1 client (Beast, keep-alive pool per endpoint, TLS via OpenSSL), behind a small
// Transport interface so exporters can be tested with a fake.
//
// Contract: post() never blocks; `done` runs exactly once on an io thread (or, after shutdown(),
// possibly not at all: callers must track their own outstanding work). Connections are reused
// (keep-alive); a request that fails on a *reused* connection before any response byte is sent
// again once on a fresh connection (the server may have closed it while idle). The client does not
// bound concurrency: the exporter owns the max_in_flight slots; the pool keeps at most max_idle
// connections per endpoint. No Beast header here (one Beast TU costs ~35 s to compile).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chsync::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Url {
  bool tls = false;
  std::string host;                 // without brackets for IPv6
  std::string port;                 // always set (default 80/443)
  std::string target;               // path + query, at least "/"
  std::string host_header() const;  // host[:port] when the port is not the default
};
// Parses http:// and https:// URLs. nullopt when malformed or another scheme.
[[nodiscard]] std::optional<Url> parse_url(std::string_view s);

struct Request {
  Url url;
  std::string method = "POST";
  Headers headers;                          // Content-Type, Content-Encoding, auth, ...
  std::shared_ptr<const std::string> body;  // shared so retries do not copy
};

// Why a request produced no HTTP response.
enum class TransportError : std::uint8_t {
  kNone,       // an HTTP response arrived (any status)
  kResolve,    // DNS failure
  kRefused,    // connection refused
  kConnect,    // other connect failure (unreachable, ...)
  kTimeout,    // connect or request timeout
  kReset,      // connection reset / closed before a full response
  kTls,        // handshake or certificate verification failed
  kProtocol,   // malformed response
  kTooLarge,   // response header over the parser's limit (bodies are cut, not refused)
  kCancelled,  // shutdown() / cancel_all()
};
std::string_view to_string(TransportError e) noexcept;

struct Response {
  TransportError error = TransportError::kNone;
  std::string error_message;  // transport error detail
  int status = 0;
  std::string body;             // at most ClientOptions::max_response_bytes of it
  bool body_truncated = false;  // the body was longer: the rest was read and dropped
  std::string content_type;
  std::string retry_after;  // raw Retry-After header value, empty if absent
  bool reused_connection = false;
  // The request was written completely before the failure: the server may have processed it
  // (an unknown outcome; a resend may be a repeat).
  bool request_written = false;
  // The client already resent this request once on a fresh connection after a reused one failed
  // with the request written: the response is the resend's, and the first may have arrived too.
  bool resent_after_unknown = false;
  // How many times the client resent this request on its own on a fresh connection (0 or 1):
  // the exporter counts each as a request and a "reset" retry, so the report's retry count
  // matches what the server saw.
  std::uint32_t client_resends = 0;
};

using ResponseFn = std::function<void(Response&&)>;

// The seam between exporters and the network.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void post(Request req, ResponseFn done) = 0;
  // Runs fn on an io thread after delay (0: as soon as possible). fn(false) normally; fn(true) when
  // cancelled by cancel_all()/shutdown() (it may also never run after shutdown()).
  virtual void schedule(std::chrono::milliseconds delay,
                        std::function<void(bool cancelled)> fn) = 0;
  // Aborts every in-flight request (their callbacks get kCancelled) and every pending timer.
  virtual void cancel_all() = 0;
  // cancel_all(), then stops and joins the io threads. Idempotent.
  virtual void shutdown() noexcept = 0;
};

struct ClientOptions {
  std::size_t io_threads = 1;
  std::chrono::milliseconds connect_timeout{10000};  // TCP connect + TLS handshake
  std::chrono::milliseconds request_timeout{10000};  // write + read of one request; 0: none
  std::size_t max_idle_per_endpoint = 16;
  std::size_t max_response_bytes = 4u << 20;  // body bytes kept; the rest is read and dropped
  std::string ca_file;    // PEM bundle; empty: the system store (set_default_verify_paths)
  bool insecure = false;  // skip certificate and host verification
  std::string client_cert, client_key;  // PEM, mTLS
  std::string user_agent;
  // Forward proxy (http://[user:pass@]host:port). Plain HTTP requests go to it in absolute form;
  // HTTPS requests open a CONNECT tunnel through it, then TLS end to end with the origin.
  std::string proxy_url;
  // Hosts that bypass the proxy: exact names, ".suffix"/"suffix" domain matches, or "*".
  std::vector<std::string> no_proxy;
};

// Proxy settings from the environment the way curl reads them: HTTPS_PROXY/https_proxy for https
// URLs, HTTP_PROXY/http_proxy for http URLs, NO_PROXY/no_proxy (comma-separated). Pure function
// of the values so it can be tested.
struct ProxyEnv {
  std::string http_proxy, https_proxy, no_proxy;
};
ProxyEnv proxy_env_from_process();
// The proxy URL for a target, or "" when none applies (no proxy set, or the host is excluded).
std::string proxy_for(const Url& target, const ProxyEnv& env);
bool host_excluded(const std::string& host, const std::vector<std::string>& no_proxy);

// Builds the Beast client. Throws std::runtime_error on a TLS configuration error (unreadable
// ca_file, cert or key) — a startup error.
std::unique_ptr<Transport> make_http_client(ClientOptions options);

}  // namespace chsync::http
