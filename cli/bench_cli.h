// Command line of `chsync bench` (CLI11), kept out of main.cpp. Included by main.cpp only.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "app/bench/bench.h"
#include "app/config/units.h"
#include "app/sync/sync.h"

namespace chsync {

struct RawBenchFlags {
  BenchOptions o;
  std::string generate, rate, duration = "30s", ramp = "0", timeout = "30s", max_memory = "256MiB",
                              batch_bytes = "4MiB", compression = "gzip";
  std::size_t max_in_flight = 0;  // 0: not given (BenchOptions' default applies)
};

// Grouped like `sync --help` (issue 23 point 6): groups, value types, defaults, environment.
inline CLI::App* add_bench_command(CLI::App& app, RawBenchFlags& f) {
  CLI::App* cmd = app.add_subcommand("bench", "Load-test a tracing backend with transcript spans");
  auto group = [](const char* name) { return [name](CLI::Option* o) { return o->group(name); }; };
  auto in = group("Input");
  auto load = group("Load");
  auto be = group("Backend");
  auto tls = group("TLS");
  auto out = group("Output and logging");
  in(cmd->add_option("inputs", f.o.inputs,
                     "Directories, files or archives whose spans are replayed"))
      ->type_name("PATH");
  in(cmd->add_option("--generate", f.generate,
                     "Replay SIZE of chsync-gen data instead (e.g. 500M)"))
      ->type_name("SIZE");
  in(cmd->add_option("--max-memory", f.max_memory,
                     "Input kept in memory (the rest is left out, and said so); default 256MiB"))
      ->type_name("SIZE");
  in(cmd->add_option("--id-salt", f.o.id_salt, "Salt for fresh trace/span ids; default random"))
      ->type_name("TEXT");
  in(cmd->add_flag("--self", f.o.self,
                   "Benchmark chsync itself instead: sync pipeline, null backend, dry run"));

  load(cmd->add_option("--rate", f.rate,
                       "Open loop: send at this rate, 50/s (requests) or 5000spans/s; default: "
                       "closed loop"))
      ->type_name("RATE");
  load(cmd->add_option("--concurrency,-c", f.o.concurrency,
                       "Closed loop: requests always in flight; with --rate: a cap; default 8"))
      ->type_name("N");
  load(cmd->add_option("--max-in-flight", f.max_in_flight,
                       "Open loop (--rate) cap on outstanding requests; default 1000"))
      ->check(CLI::Range(1, 100000).description(""))
      ->type_name("N");
  load(cmd->add_option("--duration,-d", f.duration, "How long to send; default 30s"))
      ->type_name("DURATION");
  load(cmd->add_option("--ramp", f.ramp, "Linear ramp from 0 to --rate over this long; default 0"))
      ->type_name("DURATION");

  be(cmd->add_option("--backend,-b", f.o.backend, "Backend type; default otlp"))
      ->check(CLI::IsMember({"otlp", "langfuse", "phoenix"}).description(""))
      ->type_name("otlp|langfuse|phoenix");
  be(cmd->add_option("--endpoint", f.o.endpoint,
                     "Traces URL, used as is; default: as for sync (OTEL_* for otlp, HOST + path "
                     "for langfuse and phoenix)"))
      ->type_name("URL");
  be(cmd->add_option("--host", f.o.host,
                     "Base URL of Langfuse or Phoenix (the API path is added) [langfuse, phoenix]"))
      ->type_name("URL");
  be(cmd->add_option("--header", f.o.headers, "Extra HTTP header K=V (repeatable)"))
      ->type_name("K=V");
  be(cmd->add_option("--profile", f.o.profile,
                     "Span attribute conventions; default from --backend"))
      ->check(CLI::IsMember({"generic", "langfuse", "phoenix"}).description(""))
      ->type_name("generic|langfuse|phoenix");
  be(cmd->add_option("--batch-spans", f.o.batch_spans, "Spans per request; default 512"))
      ->type_name("N");
  be(cmd->add_option("--batch-bytes", f.batch_bytes,
                     "Request size before compression; default 4MiB"))
      ->type_name("SIZE");
  be(cmd->add_option("--compression", f.compression, "Request body compression; default gzip"))
      ->check(CLI::IsMember({"gzip", "none"}).description(""))
      ->type_name("gzip|none");
  be(cmd->add_option("--timeout", f.timeout, "Per request; default 30s"))->type_name("DURATION");
  be(cmd->add_option("--io-threads", f.o.io_threads, "HTTP client threads; default 2"))
      ->check(CLI::Range(1, 64).description(""))
      ->type_name("N");

  tls(cmd->add_option("--ca-file", f.o.ca_file, "PEM bundle to verify the server"))
      ->type_name("PATH");
  tls(cmd->add_flag("--insecure", f.o.insecure, "Do not verify TLS certificates"));

  out(cmd->add_option("--report", f.o.report_path, "Write the results as JSON"))->type_name("PATH");
  out(cmd->add_option("--html", f.o.html_path, "Write a self-contained HTML report (SVG charts)"))
      ->type_name("PATH");
  out(cmd->add_flag("-q,--quiet", f.o.quiet, "No progress lines on stderr"));
  cmd->footer(
      "Examples:\n"
      "  chsync bench --endpoint http://127.0.0.1:4318/v1/traces --rate 50/s --duration 30s "
      "~/.claude/projects\n"
      "  chsync bench --generate 200M --concurrency 16 --duration 20s --report r.json --html "
      "r.html\n"
      "  chsync bench --self --generate 500M\n\n"
      "Values: DURATION 500ms, 10s, 1m; SIZE 64KiB, 500M; RATE 50/s (requests) or 5000spans/s.\n"
      "A flag that does not apply (--host with --backend otlp, --ramp or --max-in-flight without\n"
      "--rate) is an error (exit 2).\n\n"
      "Exit codes: 0 every request accepted; 1 some requests failed; 2 usage error; 3 no request\n"
      "was accepted (endpoint unreachable or refusing everything; the bench stops early).\n\n"
      "Environment:\n"
      "  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT   --endpoint (otlp)\n"
      "  OTEL_EXPORTER_OTLP_HEADERS                  extra headers (otlp)\n"
      "  LANGFUSE_BASE_URL, LANGFUSE_HOST            --host (langfuse)\n"
      "  LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY    Basic auth (langfuse)\n"
      "  PHOENIX_COLLECTOR_ENDPOINT                  --host (phoenix)\n"
      "  PHOENIX_API_KEY                             Bearer token (phoenix)\n"
      "  HTTPS_PROXY, HTTP_PROXY, NO_PROXY           proxies\n"
      "  CHSYNC_LOG_FORMAT                           --log-format");
  return cmd;
}

// Throws ConfigError on a malformed value.
inline BenchOptions build_bench_options(const RawBenchFlags& f) {
  BenchOptions o = f.o;
  auto dur = [](const char* flag, const std::string& v) {
    std::chrono::milliseconds d{};
    if (!parse_duration(v, d))
      throw ConfigError(std::string(flag) + ": invalid duration '" + v + "' (use 500ms, 10s, 1m)");
    return d;
  };
  auto size = [](const char* flag, const std::string& v) {
    std::uint64_t n = 0;
    if (!parse_size(v, n))
      throw ConfigError(std::string(flag) + ": invalid size '" + v + "' (use 64KiB, 500M)");
    return n;
  };
  o.duration = dur("--duration", f.duration);
  o.ramp = dur("--ramp", f.ramp);
  o.timeout = dur("--timeout", f.timeout);
  o.max_memory_bytes = size("--max-memory", f.max_memory);
  o.batch_bytes = size("--batch-bytes", f.batch_bytes);
  if (!f.generate.empty()) o.generate_bytes = size("--generate", f.generate);
  if (!f.rate.empty()) {
    Rate r;
    if (!parse_rate(f.rate, r) || r.per_second <= 0)
      throw ConfigError("--rate: invalid rate '" + f.rate + "' (use 50/s or 5000spans/s)");
    o.rate = r.per_second;
    o.rate_is_spans = r.spans;
  }
  o.gzip = f.compression != "none";
  if (f.max_in_flight) o.max_in_flight = f.max_in_flight;
  return o;
}

// Flags given that would do nothing are refused (exit 2), as in sync (issue 23 point 2).
inline void check_bench_flags(const CLI::App& cmd, const RawBenchFlags& f) {
  auto given = [&](const std::string& name) {
    for (const CLI::Option* o : cmd.get_options())
      if (!o->get_lnames().empty() && o->get_lnames().front() == name) return o->count() > 0;
    return false;
  };
  if (f.o.self) {
    // --self runs the sync pipeline with the null backend: no load, backend, TLS or HTML page.
    for (const CLI::Option* o : cmd.get_options()) {
      if (o->count() == 0 || o->get_lnames().empty()) continue;
      const std::string n = o->get_lnames().front(), g = o->get_group();
      if (g == "Load" || g == "Backend" || g == "TLS" || n == "html" || n == "id-salt" ||
          n == "max-memory")
        throw ConfigError(
            "--" + n +
            " does not apply to bench --self (the sync pipeline, null backend, dry run)");
    }
    return;
  }
  if (given("host") && f.o.backend == "otlp")
    throw ConfigError(
        "--host does not apply to --backend otlp; --host is for --backend langfuse|phoenix "
        "(for otlp give --endpoint)");
  if (!given("rate") && given("ramp"))
    throw ConfigError(
        "--ramp does not apply without --rate (a closed loop has no rate to ramp to)");
  if (!given("rate") && given("max-in-flight"))
    throw ConfigError(
        "--max-in-flight does not apply without --rate; in a closed loop use --concurrency");
}

}  // namespace chsync
