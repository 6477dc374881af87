// Command line of `chsync bench` (CLI11), kept out of main.cpp. Included by main.cpp only.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "app/bench/bench.h"
#include "app/sync/sync.h"
#include "cli/units.h"

namespace chsync {

struct RawBenchFlags {
  BenchOptions o;
  std::string generate, rate, duration = "30s", ramp = "0", timeout = "30s", max_memory = "256MiB",
                        batch_bytes = "4MiB", compression = "gzip";
};

inline CLI::App* add_bench_command(CLI::App& app, RawBenchFlags& f) {
  CLI::App* cmd = app.add_subcommand("bench", "Load-test a tracing backend with transcript spans");
  cmd->add_option("inputs", f.o.inputs, "Directories, files or archives whose spans are replayed");
  cmd->add_option("--backend,-b", f.o.backend, "otlp|langfuse|phoenix (default otlp)")
      ->check(CLI::IsMember({"otlp", "langfuse", "phoenix"}));
  cmd->add_option("--endpoint", f.o.endpoint, "Traces URL, used as is");
  cmd->add_option("--host", f.o.host, "Base URL for langfuse/phoenix");
  cmd->add_option("--generate", f.generate, "Replay SIZE of chsync-gen data instead (e.g. 500M)");
  cmd->add_option("--id-salt", f.o.id_salt, "Salt for fresh trace/span ids (default random)");
  cmd->add_option("--rate", f.rate, "Open loop: 50/s (requests) or 5000spans/s");
  cmd->add_option("--concurrency,-c", f.o.concurrency,
                  "Closed loop: requests always in flight (default 8); with --rate: a cap");
  cmd->add_option("--max-in-flight", f.o.max_in_flight, "Open loop cap on outstanding requests")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--duration,-d", f.duration, "How long to send (default 30s)");
  cmd->add_option("--ramp", f.ramp, "Linear ramp from 0 to --rate over this long");
  cmd->add_option("--timeout", f.timeout, "Per request (default 30s)");
  cmd->add_option("--batch-spans", f.o.batch_spans, "Spans per request (default 512)");
  cmd->add_option("--batch-bytes", f.batch_bytes, "Request size before compression (default 4MiB)");
  cmd->add_option("--max-memory", f.max_memory, "Input kept in memory (default 256MiB)");
  cmd->add_option("--compression", f.compression, "gzip|none")->check(CLI::IsMember({"gzip", "none"}));
  cmd->add_option("--header", f.o.headers, "Extra HTTP header K=V (repeatable)");
  cmd->add_option("--profile", f.o.profile, "generic|langfuse|phoenix (default from --backend)");
  cmd->add_flag("--insecure", f.o.insecure, "Do not verify TLS certificates");
  cmd->add_option("--ca-file", f.o.ca_file, "PEM bundle to verify the server");
  cmd->add_option("--io-threads", f.o.io_threads, "HTTP client threads (default 2)")->check(CLI::Range(1, 64));
  cmd->add_option("--report", f.o.report_path, "Write the results as JSON");
  cmd->add_option("--html", f.o.html_path, "Write a self-contained HTML report (SVG charts)");
  cmd->add_flag("--self", f.o.self, "Benchmark chsync itself: sync pipeline, null backend, dry run");
  cmd->add_flag("-q,--quiet", f.o.quiet, "No progress lines on stderr");
  cmd->footer(
      "Examples:\n"
      "  chsync bench --endpoint http://127.0.0.1:4318/v1/traces --rate 50/s --duration 30s ~/.claude/projects\n"
      "  chsync bench --generate 200M --concurrency 16 --duration 20s --report r.json --html r.html\n"
      "  chsync bench --self --generate 500M");
  return cmd;
}

// Throws ConfigError on a malformed value.
inline BenchOptions build_bench_options(const RawBenchFlags& f) {
  BenchOptions o = f.o;
  auto dur = [](const char* flag, const std::string& v) {
    std::chrono::milliseconds d{};
    if (!parse_duration(v, d)) throw ConfigError(std::string(flag) + ": invalid duration '" + v + "' (use 500ms, 10s, 1m)");
    return d;
  };
  auto size = [](const char* flag, const std::string& v) {
    std::uint64_t n = 0;
    if (!parse_size(v, n)) throw ConfigError(std::string(flag) + ": invalid size '" + v + "' (use 64KiB, 500M)");
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
  return o;
}

}  // namespace chsync
