// `chsync bench` (bench.h): the load run. Its input (spans mapped and encoded once, re-salted
// per pass) is bench_input.h; the table, JSON and HTML reports are bench_report.h.
#include "app/bench/bench.h"

#include <fmt/format.h>
#include <simdjson.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "app/bench/bench_input.h"
#include "app/bench/bench_report.h"
#include "app/dead_letters/dead_letters.h"
#include "app/sync/sync.h"
#include "backends/http/http_client.h"
#include "backends/otlp/gzip.h"
#include "backends/otlp/otlp_env.h"
#include "backends/otlp/otlp_exporter.h"
#include "backends/otlp/otlp_proto.h"
#include "pipeline/base64.h"
#include "pipeline/log.h"
#include "pipeline/span.h"

namespace chsync {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kGzipLevel = 1;                          // as the exporter: fastest, ~8% larger
constexpr std::uint64_t kGenerateSeed = 1;             // --generate data is deterministic
constexpr auto kDrainGrace = std::chrono::seconds(2);  // after the last timeout could fire
// Stop sending once this many answers arrived and none was a success.
constexpr std::uint64_t kEarlyStopAfter = 20;

// A temporary directory removed with everything in it when it goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "chsync-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const noexcept { return path_; }

 private:
  fs::path path_;
};

// The directory of the running chsync binary (chsync-gen is installed next to it).
fs::path self_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

// Runs argv (argv[0] a path) and waits; stdout (and stderr with quiet_stderr) to /dev/null.
// Returns the exit status, or -1 when it could not run.
int run_child(const std::vector<std::string>& argv, bool quiet_stdout, bool quiet_stderr = false) {
  std::vector<char*> av;
  av.reserve(argv.size() + 1);
  // execvp takes char* const[] for C's sake and does not write the strings.
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));  // NOLINT(*-const-cast)
  av.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (quiet_stdout) {
      if (std::FILE* f = std::freopen("/dev/null", "w", stdout); f == nullptr) ::_exit(127);
    }
    if (quiet_stderr) {
      if (std::FILE* f = std::freopen("/dev/null", "w", stderr); f == nullptr) ::_exit(127);
    }
    ::execv(av[0], av.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void generate_input(std::uint64_t bytes, const fs::path& out, bool quiet,
                    const log::Logger& logger) {
  const fs::path gen = self_dir() / "chsync-gen";
  if (!fs::exists(gen))
    throw ConfigError("--generate needs chsync-gen next to chsync (looked for " + gen.string() +
                      "); build the chsync-gen target or pass INPUT paths instead");
  if (!quiet)
    logger.write(
        log::Level::kInfo,
        fmt::format("bench: generating {} bytes of transcripts with {}", bytes, gen.string()),
        {{"event", "bench_generate"}, {"bytes", bytes}}, false);
  // chsync-gen's own lines are plain text: with --log-format json they would break the stream.
  const int rc = run_child({gen.string(), "--out", out.string(), "--bytes", std::to_string(bytes),
                            "--seed", std::to_string(kGenerateSeed)},
                           true, quiet || logger.format() == log::Format::kJson);
  if (rc != 0) throw ConfigError(fmt::format("chsync-gen failed (exit {})", rc));
}

std::string random_salt() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

using bench::Resalter;
using bench::SpanStore;

// Seconds from the start at which the x-th unit (request or span) is due: a linear ramp from 0
// to `rate` over `ramp` seconds, then flat.
double intended_offset_s(double x, double rate, double ramp) {
  if (ramp <= 0) return x / rate;
  if (x < rate * ramp / 2) return std::sqrt(2 * x * ramp / rate);
  return ramp / 2 + x / rate;
}

struct Endpoint {
  std::string url;
  http::Headers headers;
};

Endpoint resolve(const BenchOptions& o) {
  auto env = [](const char* n) {
    const char* v = std::getenv(n);
    return v ? std::string(v) : std::string();
  };
  auto strip = [](std::string s) {
    while (!s.empty() && s.back() == '/') s.pop_back();
    return s;
  };
  Endpoint ep;
  if (o.backend == "otlp") {
    ep.url = otlp::resolve_endpoint(o.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                                    env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    for (auto& kv : otlp::parse_headers(env("OTEL_EXPORTER_OTLP_HEADERS")))
      ep.headers.push_back(kv);
  } else if (o.backend == "langfuse") {
    std::string host = o.host.empty() ? env("LANGFUSE_BASE_URL") : o.host;
    if (host.empty()) host = env("LANGFUSE_HOST");
    if (host.empty()) host = "https://cloud.langfuse.com";
    ep.url = o.endpoint.empty() ? strip(host) + "/api/public/otel/v1/traces" : o.endpoint;
    const std::string pk = env("LANGFUSE_PUBLIC_KEY"), sk = env("LANGFUSE_SECRET_KEY");
    if (!pk.empty() && !sk.empty())
      ep.headers.emplace_back("Authorization", "Basic " + base64_encode(pk + ":" + sk));
    ep.headers.emplace_back("x-langfuse-ingestion-version", "4");
  } else if (o.backend == "phoenix") {
    std::string host = o.host.empty() ? env("PHOENIX_COLLECTOR_ENDPOINT") : o.host;
    if (host.empty()) host = "http://127.0.0.1:6006";
    ep.url = o.endpoint.empty() ? strip(host) + "/v1/traces" : o.endpoint;
    if (const std::string key = env("PHOENIX_API_KEY"); !key.empty())
      ep.headers.emplace_back("Authorization", "Bearer " + key);
  } else {
    throw ConfigError("--backend: bench takes otlp, langfuse or phoenix, not '" + o.backend + "'");
  }
  for (const auto& h : o.headers) {
    const auto eq = h.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("--header: expected K=V, got '" + h + "'");
    ep.headers.emplace_back(h.substr(0, eq), h.substr(eq + 1));
  }
  return ep;
}

void write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) throw std::runtime_error("cannot write " + path);
  }
  fs::rename(tmp, path);
}

// A number from the sync report, 0 when absent.
std::uint64_t json_u64(simdjson::simdjson_result<simdjson::dom::element> v) {
  std::uint64_t n = 0;
  if (v.get(n) != simdjson::SUCCESS) return 0;
  return n;
}
double json_f64(simdjson::simdjson_result<simdjson::dom::element> v) {
  double d = 0;
  if (v.get(d) != simdjson::SUCCESS) return 0;
  return d;
}

// ---- --self: the sync pipeline with the null backend and --dry-run semantics ----

int run_self(const BenchOptions& o, const std::vector<std::string>& inputs) {
  TempDir tmp;
  const std::string report = (tmp.path() / "sync-report.json").string();
  std::vector<std::string> argv = {(self_dir() / "chsync").string(),
                                   "sync",
                                   "--backend",
                                   "null",
                                   "--dry-run",
                                   "--settle",
                                   "0",
                                   "--quiet",
                                   "--db",
                                   (tmp.path() / "none.db").string(),
                                   "--report",
                                   report,
                                   "--progress-interval",
                                   "0",
                                   "--log-format",
                                   o.logger.format() == log::Format::kJson ? "json" : "text"};
  argv.insert(argv.end(), inputs.begin(), inputs.end());
  if (!o.quiet) o.logger.info("bench --self: running the sync pipeline (null backend, dry run)");
  const int rc = run_child(argv, true);
  if (!fs::exists(report)) {
    o.logger.write(log::Level::kError,
                   fmt::format("bench --self: the sync run failed (exit {}) without a report", rc),
                   {{"exit_code", rc}}, false);
    return rc == 0 ? kExitPartial : rc;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.load(report).get(doc) != simdjson::SUCCESS) {
    o.logger.error("bench --self: unreadable sync report");
    return kExitPartial;
  }
  auto u64 = [&](const char* k) { return json_u64(doc[k]); };
  const double cpu = json_f64(doc["cpu_seconds"]);
  const double mbps = json_f64(doc["throughput"]["mb_per_s"]);
  const double sps = json_f64(doc["throughput"]["spans_per_s"]);
  const double secs = static_cast<double>(u64("duration_ms")) / 1000.0;
  std::string out = "chsync bench --self: sync pipeline, null backend, dry run\n";
  out += fmt::format("  {:<22}{:>14}\n", "files", u64("files_scanned"));
  out += fmt::format("  {:<22}{:>14}\n", "bytes read", u64("bytes_read"));
  out += fmt::format("  {:<22}{:>14}\n", "spans mapped", u64("spans_mapped"));
  out += fmt::format("  {:<22}{:>14.3f}\n", "wall seconds", secs);
  out += fmt::format("  {:<22}{:>14.3f}\n", "cpu seconds", cpu);
  out += fmt::format("  {:<22}{:>14.1f}\n", "MB/s", mbps);
  out += fmt::format("  {:<22}{:>14.1f}\n", "spans/s", sps);
  out += fmt::format("  {:<22}{:>14}\n", "peak RSS KiB", u64("peak_rss_kb"));
  out += fmt::format("\n  {:<22}{:>12}{:>14}{:>12}{:>10}\n", "stage (producer side)", "items",
                     "bytes", "blocked ms", "blocked%");
  simdjson::dom::object stages;
  if (doc["stages"].get(stages) == simdjson::SUCCESS) {
    for (auto [key, val] : stages) {
      const std::uint64_t items = json_u64(val["items"]), bytes = json_u64(val["bytes"]),
                          blocked = json_u64(val["blocked_ms"]);
      out += fmt::format("  {:<22}{:>12}{:>14}{:>12}{:>9.1f}%\n", std::string(key), items, bytes,
                         blocked, secs > 0 ? static_cast<double>(blocked) / 10.0 / secs : 0.0);
    }
  }
  out +=
      "\n  A stage blocked for long on its push waits for the next one: the bottleneck is\n"
      "  downstream of it. Nothing blocked: reading and mapping (the CPU) are the limit.\n";
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  if (!o.report_path.empty()) {
    std::ifstream f(report, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string sync_json = ss.str();
    while (!sync_json.empty() && (sync_json.back() == '\n' || sync_json.back() == ' '))
      sync_json.pop_back();
    write_file(o.report_path,
               "{\"schema\":\"chsync.bench.self/1\",\"sync_report\":" + sync_json + "}\n");
  }
  return rc;
}

// The result's description of the run, before anything is sent; `cap`: requests in flight at most.
bench::BenchResult new_result(const BenchOptions& o, const Endpoint& ep, const SpanStore& store,
                              std::size_t& cap) {
  bench::BenchResult r;
  r.backend = o.backend;
  r.endpoint = ep.url;
  const bool open = o.rate > 0;
  r.mode = open ? "open" : "closed";
  r.rate_unit = o.rate_is_spans ? "spans/s" : "requests/s";
  r.target_rate = o.rate;
  r.duration_s = std::chrono::duration<double>(o.duration).count();
  r.ramp_s = open ? std::chrono::duration<double>(o.ramp).count() : 0;
  const std::size_t closed_n = o.concurrency ? o.concurrency : 8;
  cap = open ? (o.concurrency ? o.concurrency : o.max_in_flight) : closed_n;
  r.concurrency = open ? o.concurrency : closed_n;
  r.batch_spans = o.batch_spans;
  r.compression = o.gzip ? "gzip" : "none";
  r.id_salt = o.id_salt.empty() ? random_salt() : o.id_salt;
  r.version = std::string(otlp::chsync_version());
  r.started_at = format_rfc3339_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  r.input_spans = store.ends.size();
  r.input_bytes_encoded = store.blob.size();
  r.input_batches = store.batches.size();
  r.input_truncated = store.truncated;
  r.timeline.resize(static_cast<std::size_t>(std::ceil(r.duration_s)) + 1);
  return r;
}

// What wraps every request's spans: OTLP resource and scope, and the HTTP headers.
struct OtlpFraming {
  std::string resource, scope;
  http::Headers headers;
};

OtlpFraming otlp_framing(const BenchOptions& o, const std::string& salt, const Endpoint& ep) {
  const otlp::Profile profile = bench::profile_of(o);
  otlp::StringPairs res = {{"service.name", "claude-code"},
                           {"service.version", std::string(otlp::chsync_version())},
                           {"telemetry.sdk.name", "chsync"},
                           {"chsync.bench.salt", salt}};
  if (profile == otlp::Profile::kPhoenix)
    res.emplace_back("openinference.project.name", "claude-code");
  OtlpFraming f;
  f.resource = otlp::encode_resource(res);
  f.scope = otlp::encode_scope("chsync", otlp::chsync_version());
  f.headers = {{"Content-Type", "application/x-protobuf"}};
  if (o.gzip) f.headers.emplace_back("Content-Encoding", "gzip");
  f.headers.insert(f.headers.end(), ep.headers.begin(), ep.headers.end());
  return f;
}

std::unique_ptr<http::Transport> make_transport(const BenchOptions& o, std::size_t cap) {
  http::ClientOptions co;
  co.io_threads = std::max<std::size_t>(1, o.io_threads);
  co.request_timeout = o.timeout;
  co.connect_timeout = std::min(o.timeout, std::chrono::milliseconds(10000));
  co.max_idle_per_endpoint = std::max<std::size_t>(cap, 16);
  co.ca_file = o.ca_file;
  co.insecure = o.insecure;
  co.user_agent = fmt::format("chsync-bench/{}", otlp::chsync_version());
  return http::make_http_client(co);
}

// Accounts one response (any thread; under the run's mutex). Latency, throughput and bytes
// count accepted requests only: a refusal answered in a microsecond is no measurement of the
// backend.
void record_response(bench::BenchResult& r, std::size_t second, std::size_t nspans,
                     std::uint64_t raw, std::uint64_t wire, double us, const http::Response& resp) {
  ++r.requests_completed;
  auto& sec = r.timeline[second];
  if (resp.error != http::TransportError::kNone) {
    ++r.transport_errors[std::string(http::to_string(resp.error))];
    ++r.errors_transport;
    ++sec.errors;
    if (r.first_error.empty())
      r.first_error = fmt::format("{} ({})", http::to_string(resp.error), resp.error_message);
    return;
  }
  ++r.status_codes[resp.status];
  if (resp.status >= 200 && resp.status < 300) {
    r.latency.record_us(us);
    sec.latency.record_us(us);
    ++r.requests_ok;
    r.spans_ok += nspans;
    r.bytes_raw += raw;
    r.bytes_sent += wire;
    ++sec.ok;
  } else {
    ++r.errors_http;
    ++sec.errors;
    if (r.first_error.empty())
      r.first_error = fmt::format("HTTP {}: {}", resp.status, resp.body.substr(0, 200));
  }
}

// The paths to read: the inputs, or transcripts generated into `gen_dir` with --generate.
std::vector<std::string> input_paths(const BenchOptions& o, std::unique_ptr<TempDir>& gen_dir) {
  std::vector<std::string> inputs = o.inputs;
  if (o.generate_bytes > 0) {
    gen_dir = std::make_unique<TempDir>();
    generate_input(o.generate_bytes, gen_dir->path(), o.quiet, o.logger);
    inputs = {(gen_dir->path() / "projects").string()};
  }
  if (inputs.empty()) throw ConfigError("bench needs INPUT paths or --generate SIZE");
  return inputs;
}

// Maps and encodes the inputs once and cuts them into requests.
SpanStore load_spans(const BenchOptions& o, const std::vector<std::string>& inputs) {
  const auto t_load = Clock::now();
  SpanStore store;
  bench::load_input(o, inputs, store);
  bench::cut_batches(store, o.batch_spans, o.batch_bytes);
  if (store.batches.empty()) throw ConfigError("bench: the input has no spans to send");
  if (!o.quiet) {
    const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
    o.logger.write(
        log::Level::kInfo,
        fmt::format("bench: {} spans ({:.1f} MiB encoded) in {} requests, loaded in {:.1f} s{}",
                    store.ends.size(), static_cast<double>(store.blob.size()) / (1 << 20),
                    store.batches.size(), load_s,
                    store.truncated ? "; input TRUNCATED at --max-memory" : ""),
        {{"event", "bench_loaded"},
         {"spans", static_cast<std::uint64_t>(store.ends.size())},
         {"bytes_encoded", static_cast<std::uint64_t>(store.blob.size())},
         {"requests", static_cast<std::uint64_t>(store.batches.size())},
         {"load_s", load_s},
         {"truncated", store.truncated}},
        false);
  }
  return store;
}

// Sends the store's batches round and round (a new id salt per pass) for --duration: open loop
// (each request at its intended time, --rate with --ramp) or closed loop (a request as soon as
// one of `cap` slots is free). Every answer is accounted in the result, under the mutex.
class LoadRun {
 public:
  LoadRun(const BenchOptions& o, const SpanStore& store, const Endpoint& ep, http::Url url,
          bench::BenchResult& r, std::size_t cap)
      : o_(o),
        store_(store),
        url_(std::move(url)),
        r_(r),
        cap_(cap),
        open_(o.rate > 0),
        framing_(otlp_framing(o, r.id_salt, ep)),
        start_(Clock::now() + std::chrono::milliseconds(20)),  // let the first build finish
        end_(start_ + o.duration),
        salt_(bench::salt_for(r.id_salt, 0)),
        last_send_(start_),
        transport_(make_transport(o, cap)) {}

  void send_all() {
    std::size_t cursor = 0;
    std::uint64_t loop = 0;
    double units = 0;  // requests or spans scheduled so far (open loop)
    for (;;) {
      const auto& batch = store_.batches[cursor];
      const std::size_t nspans = batch.last - batch.first;
      Clock::time_point intended;
      if (open_ && !scheduled_time(units, intended)) break;
      const std::uint64_t raw = build_body(batch);
      if (!wait_for_slot() || !wait_until_due(intended)) break;
      post(intended, nspans, raw);
      units += o_.rate_is_spans ? static_cast<double>(nspans) : 1.0;
      if (++cursor == store_.batches.size()) {
        cursor = 0;
        salt_ = bench::salt_for(r_.id_salt, ++loop);
      }
    }
    r_.loops = loop + (cursor > 0 ? 1 : 0);
  }

  // Waits for the answers still out (at most --timeout and a grace), then closes the transport.
  void finish() {
    r_.elapsed_s =
        open_ ? std::max(r_.duration_s, std::chrono::duration<double>(last_send_ - start_).count())
              : std::chrono::duration<double>(std::max(last_send_, end_) - start_).count();
    if (r_.stopped_early)
      r_.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, Clock::now() + o_.timeout + kDrainGrace,
                     [&] { return in_flight_ == 0; });
    }
    transport_->shutdown();
    {
      std::lock_guard lock(mu_);
      r_.unfinished = r_.requests_sent - std::min(r_.requests_sent, r_.requests_completed);
    }
    while (r_.timeline.size() > 1 && r_.timeline.back().requests == 0) r_.timeline.pop_back();
  }

 private:
  // Open loop: when the request after `units` scheduled units is due; false past --duration.
  bool scheduled_time(double units, Clock::time_point& intended) const {
    const double t = intended_offset_s(units, o_.rate, r_.ramp_s);
    if (t >= r_.duration_s) return false;
    intended =
        start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
    return true;
  }

  // The request body of one batch with this pass's ids; returns its uncompressed size.
  std::uint64_t build_body(const SpanStore::Batch& batch) {
    salter_.apply(store_, batch, salt_, spans_buf_);
    otlp::build_request(framing_.resource, framing_.scope, spans_buf_, body_);
    const std::uint64_t raw = body_.size();
    if (o_.gzip) {
      if (!otlp::gzip_libdeflate(body_, gz_, kGzipLevel)) throw std::runtime_error("gzip failed");
      body_.swap(gz_);
    }
    return raw;
  }

  // Blocks until fewer than `cap` requests are out. False: stop sending (no slot came free in
  // time, or every answer so far was a failure).
  bool wait_for_slot() {
    std::unique_lock lock(mu_);
    const auto give_up = end_ + o_.timeout + kDrainGrace;
    if (!cv_.wait_until(lock, give_up, [&] { return in_flight_ < cap_; })) return false;
    // Every answer so far a failure: the backend is down or refuses everything, and more
    // requests would only measure that. Stop and say so (exit 3).
    if (r_.requests_completed >= kEarlyStopAfter && r_.requests_ok == 0) {
      r_.stopped_early = true;
      return false;
    }
    return true;
  }

  // Open loop: sleeps until `intended` and records how late the send is. Closed loop: the request
  // is intended now (not before the start); false once --duration is over.
  bool wait_until_due(Clock::time_point& intended) {
    if (open_) {
      std::this_thread::sleep_until(intended);
      const double lag = std::chrono::duration<double, std::milli>(Clock::now() - intended).count();
      r_.max_schedule_lag_ms = std::max(r_.max_schedule_lag_ms, lag);
      return true;
    }
    intended = Clock::now();
    if (intended < start_) {
      std::this_thread::sleep_until(start_);
      intended = start_;
    }
    return intended < end_;
  }

  // Sends the body built last; its answer is accounted on the transport's thread.
  void post(Clock::time_point intended, std::size_t nspans, std::uint64_t raw) {
    const auto second = std::min<std::size_t>(
        static_cast<std::size_t>(std::chrono::duration<double>(intended - start_).count()),
        r_.timeline.size() - 1);
    {
      std::lock_guard lock(mu_);
      ++in_flight_;
      ++r_.requests_sent;
      r_.spans_sent += nspans;
      ++r_.timeline[second].requests;
      r_.timeline[second].spans += nspans;
    }
    http::Request req;
    req.url = url_;
    req.headers = framing_.headers;
    req.body = std::make_shared<const std::string>(std::move(body_));
    body_.clear();
    const std::uint64_t wire = req.body->size();
    transport_->post(std::move(req), [this, intended, second, nspans, raw,
                                      wire](http::Response&& resp) {
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - intended).count();
      std::lock_guard lock(mu_);
      --in_flight_;
      record_response(r_, second, nspans, raw, wire, us, resp);
      cv_.notify_all();
    });
    last_send_ = Clock::now();
  }

  const BenchOptions& o_;
  const SpanStore& store_;
  const http::Url url_;
  bench::BenchResult& r_;
  const std::size_t cap_;
  const bool open_;
  const OtlpFraming framing_;
  const Clock::time_point start_, end_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::size_t in_flight_ = 0;
  Resalter salter_;
  std::string salt_, spans_buf_, body_, gz_;
  Clock::time_point last_send_;
  // Last: destroyed (and its threads stopped) before anything its callbacks touch.
  std::unique_ptr<http::Transport> transport_;
};

// Prints the table, logs the headline numbers (JSON logs) and writes the report files; returns
// the exit code.
int report_results(const BenchOptions& o, const bench::BenchResult& r) {
  const std::string table = bench::render_table(r);
  std::fputs(table.c_str(), stdout);
  std::fflush(stdout);
  // The table is for people; a log shipper gets the headline numbers as one typed line.
  if (o.logger.format() == log::Format::kJson)
    o.logger.write(log::Level::kInfo, "bench: done",
                   {{"event", "bench_summary"},
                    {"backend", r.backend},
                    {"requests_sent", r.requests_sent},
                    {"requests_ok", r.requests_ok},
                    {"errors_http", r.errors_http},
                    {"errors_transport", r.errors_transport},
                    {"unfinished", r.unfinished},
                    {"error_rate", r.error_rate()},
                    {"rate", r.achieved_rate()},
                    {"rate_unit", r.rate_unit},
                    {"spans_ok", r.spans_ok},
                    {"bytes_sent", r.bytes_sent},
                    {"elapsed_s", r.elapsed_s},
                    {"stopped_early", r.stopped_early},
                    {"error", r.first_error}});
  if (!o.report_path.empty()) write_file(o.report_path, bench::render_json(r));
  if (!o.html_path.empty()) write_file(o.html_path, bench::render_html(r));
  if (r.requests_ok == 0) return kExitBackend;  // nothing was accepted: unreachable or refused
  return (r.errors_http + r.errors_transport + r.unfinished) > 0 ? kExitPartial : kExitOk;
}

}  // namespace

int run_bench(const BenchOptions& o) {
  if (o.rate < 0) throw ConfigError("--rate must be positive");
  if (o.duration.count() <= 0) throw ConfigError("--duration must be positive");
  if (o.batch_spans == 0) throw ConfigError("--batch-spans must be at least 1");
  std::unique_ptr<TempDir> gen_dir;
  const std::vector<std::string> inputs = input_paths(o, gen_dir);
  if (o.self) return run_self(o, inputs);

  const Endpoint ep = resolve(o);
  auto url = http::parse_url(ep.url);
  if (!url) throw ConfigError("--endpoint: not an http(s) URL: '" + ep.url + "'");
  const SpanStore store = load_spans(o, inputs);
  gen_dir.reset();  // the spans are in memory now

  std::size_t cap = 0;
  bench::BenchResult r = new_result(o, ep, store, cap);
  LoadRun run(o, store, ep, std::move(*url), r, cap);
  run.send_all();
  run.finish();
  return report_results(o, r);
}

}  // namespace chsync
