// Beast implementation of chsync::http::Transport (style rule 8: one shared_from_this class per
// connection, a strand each, a timeout before every operation, early return on error).
#include "backends/http/http_client.h"
#include "backends/http/settings_check.h"
#include "pipeline/base64.h"
#include "pipeline/text.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace chsync::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {
// A response body kept up to a limit; the rest is read and discarded. A 2xx answer is a success
// whatever its size (the exporter needs at most a few KiB of it); refusing a big one would
// dead-letter spans the backend has, and a replay would send them twice. The request deadline
// bounds how long an endless body can be read.
struct BoundedStringBody {
  struct value_type {
    std::string data;
    std::size_t limit = 4u << 20;
    bool truncated = false;
  };
  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>& /*unused*/, value_type& body) : body_(body) {}
    void init(const boost::optional<std::uint64_t>& length, beast::error_code& ec) {
      if (length)
        body_.data.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*length, body_.limit)));
      ec = {};
    }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      std::size_t n = 0;
      // NOLINTNEXTLINE(readability-qualified-auto): a pointer for one buffer type, not for all
      for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
           ++it) {
        const asio::const_buffer b = *it;
        const std::size_t room =
            body_.limit > body_.data.size() ? body_.limit - body_.data.size() : 0;
        const std::size_t keep = std::min(room, b.size());
        body_.data.append(static_cast<const char*>(b.data()), keep);
        if (keep < b.size()) body_.truncated = true;
        n += b.size();
      }
      ec = {};
      return n;
    }
    // NOLINTNEXTLINE(readability-convert-member-functions-to-static): Beast BodyReader interface
    void finish(beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};
}  // namespace

std::string_view to_string(TransportError e) noexcept {
  switch (e) {
    case TransportError::kNone: return "none";
    case TransportError::kResolve: return "resolve";
    case TransportError::kRefused: return "refused";
    case TransportError::kConnect: return "connect";
    case TransportError::kTimeout: return "timeout";
    case TransportError::kReset: return "reset";
    case TransportError::kTls: return "tls";
    case TransportError::kProtocol: return "protocol";
    case TransportError::kTooLarge: return "too_large";
    case TransportError::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string Url::host_header() const {
  const bool default_port = (tls && port == "443") || (!tls && port == "80");
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (!default_port) h += ":" + port;
  return h;
}

std::optional<Url> parse_url(std::string_view s) {
  Url u;
  auto lower_prefix = [&](std::string_view p) {
    if (s.size() < p.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)  // NOLINT(modernize-loop-convert): indexes s too
      if (std::tolower(static_cast<unsigned char>(s[i])) != p[i]) return false;
    return true;
  };
  if (lower_prefix("https://")) {
    u.tls = true;
    s.remove_prefix(8);
  } else if (lower_prefix("http://")) {
    s.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  const auto slash = s.find_first_of("/?#");
  std::string_view authority = s.substr(0, slash);
  std::string_view rest = slash == std::string_view::npos ? std::string_view{} : s.substr(slash);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos)
    authority.remove_prefix(at + 1);
  if (authority.empty()) return std::nullopt;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    u.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      u.port = std::string(after.substr(1));
    }
  } else {
    const auto colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      u.host = std::string(authority.substr(0, colon));
      u.port = std::string(authority.substr(colon + 1));
    } else {
      u.host = std::string(authority);
    }
  }
  if (u.host.empty()) return std::nullopt;
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  for (char c : u.port)
    if (c < '0' || c > '9') return std::nullopt;
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  u.target = rest.empty() ? "/" : std::string(rest);
  if (u.target.front() == '?') u.target.insert(0, "/");
  return u;
}

namespace {

TransportError classify(const beast::error_code& ec, bool cancelled) {
  if (cancelled || ec == asio::error::operation_aborted) return TransportError::kCancelled;
  if (ec == beast::error::timeout) return TransportError::kTimeout;
  if (ec == asio::error::connection_refused) return TransportError::kRefused;
  if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again ||
      ec == asio::error::no_data)
    return TransportError::kResolve;
  if (ec == bhttp::error::body_limit || ec == bhttp::error::header_limit)
    return TransportError::kTooLarge;
  if (ec == asio::error::connection_reset || ec == asio::error::eof ||
      ec == asio::error::broken_pipe || ec == bhttp::error::end_of_stream ||
      ec == bhttp::error::partial_message || ec == ssl::error::stream_truncated ||
      ec == asio::error::connection_aborted)
    return TransportError::kReset;
  if (ec.category() == asio::error::get_ssl_category() ||
      ec.category() == ssl::error::get_stream_category())
    return TransportError::kTls;
  if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category())
    return TransportError::kProtocol;
  return TransportError::kConnect;
}

bool is_ip_literal(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string getenv_str(const char* a, const char* b) {
  const char* v = std::getenv(a);
  if (!v || !*v) v = std::getenv(b);
  return v ? std::string(v) : std::string();
}

}  // namespace

ProxyEnv proxy_env_from_process() {
  ProxyEnv e;
  e.http_proxy = getenv_str("HTTP_PROXY", "http_proxy");
  e.https_proxy = getenv_str("HTTPS_PROXY", "https_proxy");
  e.no_proxy = getenv_str("NO_PROXY", "no_proxy");
  return e;
}

bool host_excluded(const std::string& host, const std::vector<std::string>& no_proxy) {
  std::string h = host;
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  for (std::string pat : no_proxy) {
    if (pat == "*") return true;
    if (!pat.empty() && pat.front() == '.') pat.erase(0, 1);
    if (h == pat) return true;
    if (h.size() > pat.size() && h.compare(h.size() - pat.size(), pat.size(), pat) == 0 &&
        h[h.size() - pat.size() - 1] == '.')
      return true;
  }
  return false;
}

std::string proxy_for(const Url& target, const ProxyEnv& env) {
  const std::string& p = target.tls ? env.https_proxy : env.http_proxy;
  if (p.empty()) return "";
  if (host_excluded(target.host, split_list(env.no_proxy, /*lowercase=*/true))) return "";
  return p;
}

namespace {

class ClientImpl;

class ConnBase : public std::enable_shared_from_this<ConnBase> {
 public:
  virtual ~ConnBase() = default;
  virtual void run(Request req, ResponseFn done, bool reused, bool retried) = 0;
  virtual void cancel() = 0;
};

template <bool kTls>
class Connection final : public ConnBase {
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

 public:
  template <typename... StreamArgs>
  Connection(ClientImpl& client, std::string key,
             asio::strand<asio::io_context::executor_type> strand, StreamArgs&&... args)
      : client_(client),
        key_(std::move(key)),
        strand_(strand),
        resolver_(strand),
        stream_(strand, std::forward<StreamArgs>(args)...) {}

  void run(Request req, ResponseFn done, bool reused, bool retried) override {
    asio::dispatch(strand_, [self = shared(), req = std::move(req), done = std::move(done), reused,
                             retried]() mutable {
      self->start(std::move(req), std::move(done), reused, retried);
    });
  }

  void cancel() override {
    asio::post(strand_, [self = shared()] {
      self->cancelled_ = true;
      self->resolver_.cancel();
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().close(ignored);
    });
  }

 private:
  std::shared_ptr<Connection> shared() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }

  void start(Request req, ResponseFn done, bool reused, bool retried);
  void on_resolve(const beast::error_code& ec, const tcp::resolver::results_type& results);
  void on_connect(const beast::error_code& ec);
  void on_handshake(const beast::error_code& ec);
  void start_tls();
  void on_tunnel(const beast::error_code& ec);
  void write();
  void on_write(const beast::error_code& ec);
  void on_read(const beast::error_code& ec);
  void fail(const beast::error_code& ec, std::string_view what);

  ClientImpl& client_;
  std::string key_;
  asio::strand<asio::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  Stream stream_;
  beast::flat_buffer buffer_;  // kept across reads: Beast may read past the current message
  bhttp::request<bhttp::span_body<const char>> http_req_;
  std::optional<bhttp::response_parser<BoundedStringBody>> parser_;
  Request req_;
  ResponseFn done_;
  std::optional<Url> proxy_;  // set when this connection goes through a forward proxy
  std::string proxy_auth_;    // "Basic …" from the proxy URL's user:pass, or ""
  bhttp::request<bhttp::empty_body> connect_req_;
  std::optional<bhttp::response_parser<bhttp::empty_body>> connect_parser_;
  bool connected_ = false;
  bool written_ = false;  // the current request was written completely
  bool reused_ = false;
  bool retried_ = false;
  bool cancelled_ = false;
};

class ClientImpl final : public Transport {
 public:
  explicit ClientImpl(ClientOptions opts)
      : opts_(std::move(opts)),
        ssl_ctx_(ssl::context::tls_client),
        work_(asio::make_work_guard(ioc_)) {
    if (auto e = proxy_scheme_error(opts_.proxy_url); !e.empty()) throw std::runtime_error(e);
    if (opts_.insecure) {
      ssl_ctx_.set_verify_mode(ssl::verify_none);
    } else {
      ssl_ctx_.set_verify_mode(ssl::verify_peer);
      if (!opts_.ca_file.empty()) {
        beast::error_code ec;
        ssl_ctx_.load_verify_file(opts_.ca_file, ec);
        if (ec)
          throw std::runtime_error("cannot load CA file " + opts_.ca_file + ": " + ec.message());
      } else {
        ssl_ctx_.set_default_verify_paths();
      }
    }
    if (!opts_.client_cert.empty()) {
      beast::error_code ec;
      ssl_ctx_.use_certificate_chain_file(opts_.client_cert, ec);
      if (ec)
        throw std::runtime_error("cannot load client certificate " + opts_.client_cert + ": " +
                                 ec.message());
      ssl_ctx_.use_private_key_file(opts_.client_key.empty() ? opts_.client_cert : opts_.client_key,
                                    ssl::context::pem, ec);
      if (ec) throw std::runtime_error("cannot load client key: " + ec.message());
    }
    const std::size_t n = opts_.io_threads == 0 ? 1 : opts_.io_threads;
    for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  ~ClientImpl() override { shutdown(); }
  ClientImpl(const ClientImpl&) = delete;
  ClientImpl& operator=(const ClientImpl&) = delete;

  void post(Request req, ResponseFn done) override {
    start(std::move(req), std::move(done), false);
  }

  // The forward proxy for a target ("" for none): the explicit option wins over the environment.
  std::string proxy_url_for(const Url& target) const {
    if (!opts_.proxy_url.empty())
      return host_excluded(target.host, opts_.no_proxy) ? std::string() : opts_.proxy_url;
    return proxy_for(target, proxy_env_);
  }

  void start(Request req, ResponseFn done, bool retried) {
    const std::string key =
        (req.url.tls ? "https://" : "http://") + req.url.host + ":" + req.url.port;
    std::shared_ptr<ConnBase> conn;
    bool reused = false;
    {
      std::unique_lock lock(mu_);
      if (stopped_) {
        lock.unlock();
        Response r;
        r.error = TransportError::kCancelled;
        r.error_message = "client stopped";
        done(std::move(r));
        return;
      }
      if (!retried) {
        auto it = idle_.find(key);
        if (it != idle_.end() && !it->second.empty()) {
          conn = std::move(it->second.back());
          it->second.pop_back();
          reused = true;
        }
      }
      if (!conn) {
        auto strand = asio::make_strand(ioc_);
        if (req.url.tls) {
          conn = std::make_shared<Connection<true>>(*this, key, strand, ssl_ctx_);
        } else {
          conn = std::make_shared<Connection<false>>(*this, key, strand);
        }
      }
      active_.insert(conn);
    }
    conn->run(std::move(req), std::move(done), reused, retried);
  }

  // A connection finished its request: keep it for reuse (keep_alive) or forget it.
  void release(const std::shared_ptr<ConnBase>& conn, const std::string& key, bool keep_alive) {
    std::lock_guard lock(mu_);
    active_.erase(conn);
    if (!keep_alive || stopped_) return;
    auto& list = idle_[key];
    if (list.size() < opts_.max_idle_per_endpoint) list.push_back(conn);
  }

  void schedule(std::chrono::milliseconds delay, std::function<void(bool)> fn) override {
    auto timer = std::make_shared<asio::steady_timer>(ioc_);
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      timers_.insert(timer);
    }
    timer->expires_after(delay);
    timer->async_wait([this, timer, fn = std::move(fn)](const beast::error_code& ec) {
      {
        std::lock_guard lock(mu_);
        timers_.erase(timer);
      }
      fn(ec == asio::error::operation_aborted);
    });
  }

  void cancel_all() override {
    std::vector<std::shared_ptr<ConnBase>> conns;
    std::vector<std::shared_ptr<asio::steady_timer>> timers;
    {
      std::lock_guard lock(mu_);
      conns.assign(active_.begin(), active_.end());
      for (auto& [k, list] : idle_)
        for (auto& c : list) conns.push_back(c);
      idle_.clear();
      timers.assign(timers_.begin(), timers_.end());
    }
    for (auto& c : conns) c->cancel();
    for (auto& t : timers) asio::post(ioc_, [t] { t->cancel(); });
  }

  void shutdown() noexcept override {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    try {
      cancel_all();
      work_.reset();
      // Give cancelled handlers a moment to run, then stop whatever is left (a resolve in
      // progress).
      ioc_.stop();
    } catch (...) {
    }
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    std::lock_guard lock(mu_);
    active_.clear();
    idle_.clear();
    timers_.clear();
  }

  const ClientOptions& options() const { return opts_; }
  ssl::context& ssl_ctx() { return ssl_ctx_; }

 private:
  ClientOptions opts_;
  asio::io_context ioc_;  // first: destroyed last
  ssl::context ssl_ctx_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  ProxyEnv proxy_env_ = proxy_env_from_process();
  std::vector<std::thread> threads_;
  std::mutex mu_;
  bool stopped_ = false;
  std::set<std::shared_ptr<ConnBase>> active_;
  std::map<std::string, std::vector<std::shared_ptr<ConnBase>>> idle_;
  std::set<std::shared_ptr<asio::steady_timer>> timers_;
};

template <bool kTls>
void Connection<kTls>::start(Request req, ResponseFn done, bool reused, bool retried) {
  req_ = std::move(req);
  done_ = std::move(done);
  written_ = false;
  reused_ = reused;
  retried_ = retried;
  const auto& o = client_.options();
  http_req_ = {};
  http_req_.method(req_.method == "GET" ? bhttp::verb::get : bhttp::verb::post);
  if (!connected_) {
    proxy_.reset();
    proxy_auth_.clear();
    std::string purl = client_.proxy_url_for(req_.url);
    if (!purl.empty()) {
      // Strip user:pass@ (parse_url does not take userinfo) and keep it for Proxy-Authorization.
      auto scheme_end = purl.find("://");
      auto at = purl.find('@', scheme_end == std::string::npos ? 0 : scheme_end + 3);
      auto slash = purl.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
      if (scheme_end != std::string::npos && at != std::string::npos &&
          (slash == std::string::npos || at < slash)) {
        proxy_auth_ = "Basic " + base64_encode(purl.substr(scheme_end + 3, at - scheme_end - 3));
        purl.erase(scheme_end + 3, at - scheme_end - 2);
      }
      proxy_ = parse_url(purl);
      if (!proxy_) return fail(asio::error::invalid_argument, "proxy url");
    }
  }
  if (proxy_ && !kTls) {
    http_req_.target("http://" + req_.url.host_header() + req_.url.target);
    if (!proxy_auth_.empty()) http_req_.set(bhttp::field::proxy_authorization, proxy_auth_);
  } else {
    http_req_.target(req_.url.target);
  }
  http_req_.version(11);
  http_req_.set(bhttp::field::host, req_.url.host_header());
  if (!o.user_agent.empty()) http_req_.set(bhttp::field::user_agent, o.user_agent);
  for (const auto& [k, v] : req_.headers) http_req_.insert(k, v);
  static const std::string kEmpty;
  const std::string& body = req_.body ? *req_.body : kEmpty;
  http_req_.body() = boost::span<const char>(body.data(), body.size());
  http_req_.keep_alive(true);
  http_req_.prepare_payload();
  if (cancelled_) return fail(asio::error::operation_aborted, "start");
  if (connected_) return write();
  const Url& peer = proxy_ ? *proxy_ : req_.url;
  resolver_.async_resolve(peer.host, peer.port,
                          beast::bind_front_handler(&Connection::on_resolve, shared()));
}

template <bool kTls>
void Connection<kTls>::on_resolve(const beast::error_code& ec,
                                  const tcp::resolver::results_type& results) {
  if (ec) return fail(ec, "resolve");
  auto& lowest = beast::get_lowest_layer(stream_);
  lowest.expires_after(client_.options().connect_timeout);
  lowest.async_connect(results, [self = shared()](const beast::error_code& e,
                                                  const tcp::endpoint&) { self->on_connect(e); });
}

template <bool kTls>
void Connection<kTls>::on_connect(const beast::error_code& ec) {
  if (ec) return fail(ec, proxy_ ? "connect to proxy" : "connect");
  beast::get_lowest_layer(stream_).socket().set_option(tcp::no_delay(true));
  if constexpr (kTls) {
    if (proxy_) {
      // HTTPS through a proxy: CONNECT host:port, then TLS with the origin inside the tunnel.
      const std::string authority = req_.url.host + ":" + req_.url.port;
      connect_req_ = {};
      connect_req_.method(bhttp::verb::connect);
      connect_req_.target(authority);
      connect_req_.version(11);
      connect_req_.set(bhttp::field::host, authority);
      if (!proxy_auth_.empty()) connect_req_.set(bhttp::field::proxy_authorization, proxy_auth_);
      auto& lowest = beast::get_lowest_layer(stream_);
      lowest.expires_after(client_.options().connect_timeout);
      bhttp::async_write(
          lowest, connect_req_, [self = shared()](const beast::error_code& e, std::size_t) {
            if (e) return self->fail(e, "proxy CONNECT write");
            self->connect_parser_.emplace();
            self->connect_parser_->skip(true);  // a CONNECT response has no body
            bhttp::async_read(
                beast::get_lowest_layer(self->stream_), self->buffer_, *self->connect_parser_,
                [self](const beast::error_code& e2, std::size_t) { self->on_tunnel(e2); });
          });
      return;
    }
    start_tls();
  } else {
    connected_ = true;
    write();
  }
}

template <bool kTls>
void Connection<kTls>::on_tunnel(const beast::error_code& ec) {
  if (ec) return fail(ec, "proxy CONNECT read");
  const unsigned status = connect_parser_->get().result_int();
  if (status / 100 != 2) {
    return fail(asio::error::connection_refused,
                "proxy refused CONNECT with HTTP " + std::to_string(status));
  }
  buffer_.consume(buffer_.size());
  start_tls();
}

template <bool kTls>
void Connection<kTls>::start_tls() {
  if constexpr (kTls) {
    const auto& host = req_.url.host;
    if (!is_ip_literal(host) && !SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str())) {
      return fail(
          beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()),
          "sni");
    }
    if (!client_.options().insecure) stream_.set_verify_callback(ssl::host_name_verification(host));
    beast::get_lowest_layer(stream_).expires_after(client_.options().connect_timeout);
    stream_.async_handshake(ssl::stream_base::client,
                            beast::bind_front_handler(&Connection::on_handshake, shared()));
  }
}

template <bool kTls>
void Connection<kTls>::on_handshake(const beast::error_code& ec) {
  if (ec) return fail(ec, "tls handshake");
  connected_ = true;
  write();
}

template <bool kTls>
void Connection<kTls>::write() {
  auto& lowest = beast::get_lowest_layer(stream_);
  const auto t = client_.options().request_timeout;
  if (t.count() > 0) {
    lowest.expires_after(t);  // covers write and read
  } else {
    lowest.expires_never();
  }
  bhttp::async_write(
      stream_, http_req_,
      [self = shared()](const beast::error_code& ec, std::size_t) { self->on_write(ec); });
}

template <bool kTls>
void Connection<kTls>::on_write(const beast::error_code& ec) {
  if (ec) return fail(ec, "write");
  written_ = true;
  parser_.emplace();
  parser_->body_limit(boost::none);  // BoundedStringBody keeps max_response_bytes, drops the rest
  parser_->get().body().limit = client_.options().max_response_bytes;
  bhttp::async_read(
      stream_, buffer_, *parser_,
      [self = shared()](const beast::error_code& e, std::size_t) { self->on_read(e); });
}

template <bool kTls>
void Connection<kTls>::on_read(const beast::error_code& ec) {
  if (ec) return fail(ec, "read");
  auto msg = parser_->release();
  Response r;
  r.status = static_cast<int>(msg.result_int());
  r.reused_connection = reused_;
  if (auto it = msg.find(bhttp::field::content_type); it != msg.end())
    r.content_type = std::string(it->value());
  if (auto it = msg.find(bhttp::field::retry_after); it != msg.end())
    r.retry_after = std::string(it->value());
  r.body = std::move(msg.body().data);
  r.body_truncated = msg.body().truncated;
  const bool keep = msg.keep_alive() && !cancelled_;
  parser_.reset();
  if (!keep) {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
    connected_ = false;
  } else {
    beast::get_lowest_layer(stream_).expires_never();
  }
  auto done = std::move(done_);
  req_ = {};
  client_.release(shared_from_this(), key_, keep);
  done(std::move(r));
}

template <bool kTls>
void Connection<kTls>::fail(const beast::error_code& ec, std::string_view what) {
  const auto kind = classify(ec, cancelled_);
  const bool got_bytes = parser_ && parser_->got_some();
  beast::error_code ignored;
  beast::get_lowest_layer(stream_).socket().close(ignored);
  connected_ = false;
  parser_.reset();
  buffer_.clear();
  auto self = shared_from_this();
  client_.release(self, key_, false);
  auto done = std::move(done_);
  const bool written = written_;
  written_ = false;
  if (reused_ && !retried_ && !got_bytes && kind == TransportError::kReset) {
    // The server closed the idle keep-alive connection: send once more on a fresh one. If the
    // request had been written, it may have been processed: the caller is told, so that it
    // counts the resend as a possible repeat.
    done = [inner = std::move(done), written](Response&& r) mutable {
      r.resent_after_unknown = r.resent_after_unknown || written;
      ++r.client_resends;
      inner(std::move(r));
    };
    client_.start(std::move(req_), std::move(done), true);
    return;
  }
  Response r;
  r.error = kind;
  r.request_written = written;
  r.reused_connection = reused_;
  r.error_message = std::string(what) + ": " + ec.message();
  req_ = {};
  done(std::move(r));
}

}  // namespace

std::unique_ptr<Transport> make_http_client(ClientOptions options) {
  return std::make_unique<ClientImpl>(std::move(options));
}

}  // namespace chsync::http
