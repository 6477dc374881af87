// `chsync bench`: load-tests a tracing backend with the spans of real (or generated) transcripts.
//
// Input: directories, files and archives as for sync (or chsync-gen data made on the fly with
// --generate), mapped once, encoded once as OTLP span slices and kept in memory up to
// --max-memory (then truncated, and said so). The sync state is never opened.
// Identity: each pass over the input gets a salt; every trace/span/parent id is replaced at send
// time by sha256(salt || old id)[0:n] (parent links stay consistent). Pass k > 0 uses salt
// "<salt>/<k>", so a backend never sees the same ids twice in a run, and the same --id-salt
// reproduces the same ids.
// Load: open loop (--rate: requests scheduled at intended times; latency = response time −
// intended send time, so a slow response never hides the wait of the ones queued behind it) or
// closed loop (--concurrency N requests always in flight). No retries: a failure is an error.
// Errors: usage errors throw ConfigError (exit 2); an unreachable backend is measured, not fatal.
// Exit code: 0 every request accepted, 1 some failed, 3 none accepted (after the first 20 answers
// all fail, sending stops early).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/log.h"

namespace chsync {

struct BenchOptions {
  std::string backend = "otlp";  // otlp | langfuse | phoenix
  std::string endpoint;          // full traces URL; empty: resolved like sync
  std::string host;              // langfuse/phoenix base URL
  std::vector<std::string> inputs;
  std::uint64_t generate_bytes = 0;  // > 0: run chsync-gen for this many bytes instead of inputs
  std::string id_salt;               // empty: random
  double rate = 0;                   // 0: closed loop
  bool rate_is_spans = false;
  std::size_t concurrency = 0;       // closed loop: in flight; open loop: cap (0: max_in_flight)
  std::size_t max_in_flight = 1000;  // open loop safety cap on outstanding requests
  std::chrono::milliseconds duration{30000};
  std::chrono::milliseconds ramp{0};
  std::chrono::milliseconds timeout{30000};
  std::size_t batch_spans = 512;
  std::uint64_t batch_bytes = 4u << 20;
  std::uint64_t max_memory_bytes = 256u << 20;
  bool gzip = true;
  std::vector<std::string> headers;  // K=V
  bool insecure = false;
  std::string ca_file;
  std::string profile;  // generic|langfuse|phoenix (default from backend)
  std::size_t io_threads = 2;
  std::string report_path, html_path;
  bool self = false;  // benchmark chsync's own pipeline (sync, null backend, dry run)
  bool quiet = false;
  log::Logger logger;  // progress, problems and (JSON logs) the summary line (default: stderr)
};

// Runs the bench; returns the process exit code. Throws ConfigError on usage errors.
int run_bench(const BenchOptions& options);

}  // namespace chsync
