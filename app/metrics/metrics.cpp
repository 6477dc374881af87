#include "app/metrics/metrics.h"

#include "pipeline/atomic_file.h"

#include <unistd.h>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <thread>

namespace chsync {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct Descriptor {
  std::string_view name;
  std::string_view type;
  std::string_view help;
};

// Rendering order and documentation; docs/operations.md lists the same names.
constexpr Descriptor kDescriptors[] = {
    {"chsync_run_start_timestamp_seconds", "gauge", "Unix time the run started"},
    {"chsync_files_total", "gauge", "Files this run has to read"},
    {"chsync_files_done", "gauge", "Files read and mapped so far (lag = total - done)"},
    {"chsync_bytes_read_total", "counter", "Transcript bytes read"},
    {"chsync_bad_lines_total", "counter", "Unusable input lines by kind"},
    {"chsync_redactions_total", "counter", "Secrets replaced by --redact, by kind"},
    {"chsync_spans_synced_total", "counter", "Spans acknowledged by the backend"},
    {"chsync_dead_letters_total", "counter", "Spans given up on (written to dead letters)"},
    {"chsync_requests_total", "counter", "HTTP requests by response status"},
    {"chsync_retries_total", "counter", "Retried requests by cause"},
    {"chsync_bytes_sent_total", "counter", "Request body bytes sent (after compression)"},
    {"chsync_in_flight_requests", "gauge", "Requests awaiting a response"},
    {"chsync_queue_bytes", "gauge", "Bytes held in an internal queue"},
    {"chsync_stage_blocked_seconds_total", "counter",
     "Time a stage waited on a full downstream (backpressure)"},
    {"chsync_last_run_exit_code", "gauge", "Exit code of the last finished run (textfile only)"},
    {"chsync_last_run_timestamp_seconds", "gauge",
     "Unix time the last run finished (textfile only)"},
    {"chsync_last_run_duration_seconds", "gauge", "Duration of the last run (textfile only)"},
};

std::string format_value(double v) {
  if (v == static_cast<double>(static_cast<std::int64_t>(v)))
    return fmt::format("{}", static_cast<std::int64_t>(v));
  return fmt::format("{:.6f}", v);
}

bool split_listen(const std::string& listen, std::string& host, std::string& port) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) return false;
  host = listen.substr(0, colon);
  port = listen.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return port.find_first_not_of("0123456789") == std::string::npos && port.size() <= 5 &&
         std::stoul(port) <= 65535;
}

// One connection: read a request, answer, close, all asynchronous with a deadline (5 s for the
// whole exchange), so an idle or slow client holds only its own socket: other scrapes are served
// meanwhile, and stop() ends the io thread at once (pending sessions are dropped with it).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, MetricsRegistry& registry)
      : stream_(std::move(socket)), registry_(registry) {}

  void start() {
    stream_.expires_after(kTimeout);
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->answer();
                     });
  }

 private:
  static constexpr auto kTimeout = std::chrono::seconds(5);

  void answer() {
    res_.version(req_.version());
    res_.keep_alive(false);
    res_.set(http::field::server, "chsync");
    const std::string_view target(req_.target().data(), req_.target().size());
    if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
      res_.result(http::status::method_not_allowed);
      res_.body() = "GET only\n";
    } else if (target == "/metrics" || target.rfind("/metrics?", 0) == 0) {
      registry_.scrapes.fetch_add(1, std::memory_order_relaxed);
      res_.result(http::status::ok);
      res_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      if (req_.method() == http::verb::get) res_.body() = registry_.render();
    } else {
      res_.result(http::status::not_found);
      res_.body() = "see /metrics\n";
    }
    res_.prepare_payload();
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  beast::tcp_stream stream_;
  MetricsRegistry& registry_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

}  // namespace

std::string metric_label(std::string_view key, std::string_view value) {
  std::string s(key);
  s += "=\"";
  for (char c : value) {
    if (c == '\\' || c == '"') {
      s += '\\';
      s += c;
    } else if (c == '\n') {
      s += "\\n";
    } else {
      s += c;
    }
  }
  s += '"';
  return s;
}

void MetricsRegistry::set_sampler(Sampler sampler) {
  std::lock_guard lock(mu_);
  sampler_ = std::move(sampler);
}

void MetricsRegistry::clear_sampler() {
  std::lock_guard lock(mu_);
  sampler_ = nullptr;
}

std::string MetricsRegistry::render(const std::vector<MetricSample>& extra) const {
  std::vector<MetricSample> samples;
  {
    std::lock_guard lock(mu_);
    if (sampler_) sampler_(samples);
  }
  samples.insert(samples.end(), extra.begin(), extra.end());
  std::map<std::string_view, std::vector<const MetricSample*>> by_name;
  for (const auto& s : samples) by_name[s.name].push_back(&s);
  std::string out;
  auto emit = [&](std::string_view name, std::string_view type, std::string_view help) {
    auto it = by_name.find(name);
    if (it == by_name.end()) return;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const MetricSample* s : it->second) {
      out += s->name;
      if (!s->labels.empty()) out += "{" + s->labels + "}";
      out += ' ';
      out += format_value(s->value);
      out += '\n';
    }
    by_name.erase(it);
  };
  for (const Descriptor& d : kDescriptors) emit(d.name, d.type, d.help);
  while (!by_name.empty()) emit(by_name.begin()->first, "untyped", "chsync metric");
  return out;
}

std::string check_metrics_listen(const std::string& listen) {
  std::string host, port;
  if (!split_listen(listen, host, port)) return "expected HOST:PORT, e.g. 127.0.0.1:9464";
  if (host != "127.0.0.1" && host != "::1" && host != "localhost")
    return "only loopback addresses (127.0.0.1, ::1, localhost): put a proxy in front to expose it";
  return {};
}

struct MetricsServer::Impl {
  MetricsRegistry& registry;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::atomic<bool> stopped{false};
  std::mutex exit_mu;
  std::condition_variable exited_cv;
  bool exited = false;  // io.run() returned (under exit_mu)
  std::mutex join_mu;   // two stop() calls must not both join

  explicit Impl(MetricsRegistry& r) : registry(r) {}

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
        return accept();  // e.g. EMFILE: try the next one
      }
      std::make_shared<Session>(std::move(socket), registry)->start();
      accept();
    });
  }
};

MetricsServer::MetricsServer(MetricsRegistry& registry, const std::string& listen)
    : impl_(std::make_unique<Impl>(registry)) {
  if (auto err = check_metrics_listen(listen); !err.empty())
    throw std::runtime_error("--metrics-listen " + listen + ": " + err);
  std::string host, port;
  split_listen(listen, host, port);
  if (host == "localhost") host = "127.0.0.1";
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("--metrics-listen " + listen + ": " + ec.message());
  const tcp::endpoint ep(addr, static_cast<std::uint16_t>(std::stoul(port)));
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("--metrics-listen " + listen + ": cannot listen: " + ec.message());
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] {
    try {
      impl->io.run();
    } catch (...) {  // a handler's exception ends the endpoint, not the run
    }
    std::lock_guard lock(impl->exit_mu);
    impl->exited = true;
    impl->exited_cv.notify_all();
  });
}

MetricsServer::~MetricsServer() { stop(std::chrono::steady_clock::time_point::max()); }

std::uint16_t MetricsServer::port() const noexcept {
  beast::error_code ec;
  const auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

bool MetricsServer::stop(std::chrono::steady_clock::time_point deadline) noexcept {
  if (!impl_->stopped.exchange(true)) impl_->io.stop();  // the acceptor closes with Impl
  {
    // The io thread returns once the handler running now does (a scrape blocked in the sampler,
    // a slow write); past the deadline it is left to the destructor.
    std::unique_lock lock(impl_->exit_mu);
    if (deadline == std::chrono::steady_clock::time_point::max())
      impl_->exited_cv.wait(lock, [this] { return impl_->exited; });
    else if (!impl_->exited_cv.wait_until(lock, deadline, [this] { return impl_->exited; }))
      return false;
  }
  std::lock_guard lock(impl_->join_mu);
  if (impl_->thread.joinable()) impl_->thread.join();
  return true;
}

bool write_metrics_textfile(const std::string& path, const std::string& text, std::string& error) {
  // node-exporter reads *.prom files whole (fresh temp file, then rename), as another user: 0644.
  return replace_file(path, text, 0644, error);
}

}  // namespace chsync
