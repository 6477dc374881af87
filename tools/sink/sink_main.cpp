// chsync-sink: the HTTP receiver used by chsync's integration tests and benchmarks.
// See tools/sink/README.md for routes, the record format, /stats and /control.
#include <charconv>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <google/protobuf/stubs/common.h>
#include <CLI/CLI.hpp>

#include "tools/sink/sink_server.h"
#include "tools/sink/sink_state.h"

namespace {

constexpr int kExitUsage = 2;

std::vector<unsigned> parse_status_list(const std::string& s) {
  std::vector<unsigned> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t comma = std::min(s.find(',', pos), s.size());
    const std::string part = s.substr(pos, comma - pos);
    if (!part.empty()) {
      unsigned v = 0;
      const auto r = std::from_chars(part.data(), part.data() + part.size(), v);
      if (r.ec != std::errc() || r.ptr != part.data() + part.size() || v < 100 || v > 599) {
        throw CLI::ValidationError("--fail-status", "not an HTTP status list: " + s);
      }
      out.push_back(v);
    }
    pos = comma + 1;
  }
  if (out.empty()) throw CLI::ValidationError("--fail-status", "empty status list");
  return out;
}

}  // namespace

// CLI11 set-up throws only on a programming error (a duplicate option): terminating is right.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  CLI::App app{"chsync-sink: OTLP/HTTP + Langfuse receiver with fault injection"};
  chsync::sink::ServerOptions opts;
  chsync::sink::FaultConfig cfg;
  std::string listen = "127.0.0.1:0";
  std::string record;
  std::string fail_status = "503";
  std::uint64_t seed = 1;
  std::int64_t latency_ms = 0;
  std::int64_t stall_ms = 0;
  std::vector<std::string> require_headers;

  app.add_option("--listen", listen, "HOST:PORT to bind (port 0 = pick a free one)")
      ->capture_default_str();
  app.add_option("--port-file", opts.port_file, "write the bound port here (temp + rename)");
  app.add_option("--record", record,
                 "append every accepted span/event as a JSON line (truncated at start)");
  app.add_option("--threads", opts.threads, "io threads")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--tls-cert", opts.tls_cert, "PEM certificate: serve HTTPS")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", opts.tls_key, "PEM private key")->check(CLI::ExistingFile);
  app.add_option("--seed", seed, "seed of the fault RNG")->capture_default_str();
  app.add_option("--fail-rate", cfg.fail_rate, "fraction of data requests failed")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--fail-status", fail_status, "statuses for failures, round-robin, e.g. 503,429")
      ->capture_default_str();
  app.add_option("--fail-first", cfg.fail_first, "the first N data requests fail");
  app.add_option("--reject-all", cfg.reject_all, "answer every data request with this status")
      ->check(CLI::Range(100u, 599u));
  app.add_option("--retry-after", cfg.retry_after_s, "Retry-After seconds on injected failures");
  app.add_flag("--retry-after-date", cfg.retry_after_date, "send Retry-After as an HTTP-date");
  app.add_option("--latency-ms", latency_ms, "delay before every data response")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--stall-ms", stall_ms, "extra hold before responding (stall-rate fraction)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--stall-rate", cfg.stall_rate, "fraction of requests stalled")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--reset-rate", cfg.reset_rate, "fraction answered by a TCP RST")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--max-body-bytes", cfg.max_body_bytes,
                 "413 above this many bytes (checked on wire and decompressed size)")
      ->capture_default_str();
  app.add_option("--legacy-event-fail-rate", cfg.legacy_event_fail_rate,
                 "fraction of legacy events failed (by hash of event id)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--legacy-event-fail-status", cfg.legacy_event_fail_status,
                 "status of failed legacy events; 5xx fail only the first time an id is seen")
      ->capture_default_str();
  app.add_option("--require-basic-auth", cfg.require_basic_auth, "pk:sk; 401 otherwise");
  app.add_option("--require-header", require_headers, "NAME=VALUE; 400 when missing (repeatable)");
  app.add_flag("--no-decode", cfg.no_decode, "read and discard bodies, answer 200");
  app.add_flag("--protobuf-only", cfg.protobuf_only, "OTLP JSON gets 415 (like Phoenix)");
  app.add_option("--partial-rejected", cfg.partial_rejected,
                 "answer OTLP success with partial_success.rejected_spans = N");
  CLI11_PARSE(app, argc, argv);

  try {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) {
      throw CLI::ValidationError("--listen", "expected HOST:PORT");
    }
    opts.host = listen.substr(0, colon);
    if (opts.host.size() >= 2 && opts.host.front() == '[' && opts.host.back() == ']') {
      opts.host = opts.host.substr(1, opts.host.size() - 2);
    }
    const std::string port = listen.substr(colon + 1);
    const auto r = std::from_chars(port.data(), port.data() + port.size(), opts.port);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size()) {
      throw CLI::ValidationError("--listen", "bad port: " + port);
    }
    if (opts.tls_cert.empty() != opts.tls_key.empty()) {
      throw CLI::ValidationError("--tls-cert/--tls-key", "give both or neither");
    }
    cfg.fail_status = parse_status_list(fail_status);
    cfg.latency = std::chrono::milliseconds(latency_ms);
    cfg.stall = std::chrono::milliseconds(stall_ms);
    for (const auto& h : require_headers) {
      const auto eq = h.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw CLI::ValidationError("--require-header", "expected NAME=VALUE: " + h);
      }
      cfg.require_headers.emplace_back(h.substr(0, eq), h.substr(eq + 1));
    }
  } catch (const CLI::Error& e) {
    return app.exit(e);
  }

  try {
    chsync::sink::SinkState state(std::move(cfg), seed, record);
    const int rc = chsync::sink::run_sink_server(opts, state);
    google::protobuf::ShutdownProtobufLibrary();
    return rc;
  } catch (const std::exception& e) {
    fmt::print(stderr, "chsync-sink: {}\n", e.what());
    return kExitUsage;
  }
}
