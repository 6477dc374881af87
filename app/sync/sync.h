// The sync run: wires Discover -> Reader/Parser/Mapper workers -> Dedupe -> exporters -> State.
//
// Threads: one feeder (bundles and archive members into the work queue), --workers mapper
// threads, one dispatcher (dedupe, ordering, exporter send — it blocks when an exporter is full,
// which is what stops everything upstream), plus whatever each exporter runs inside.
// Errors: configuration and state problems throw ConfigError before any work (exit 2); bad input
// is counted and reported, never fatal; an exporter turning fatal stops reading and drains (exit
// 3).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/console/console.h"
#include "backends/exporter.h"
#include "pipeline/log.h"
#include "stages/discover/discover.h"
#include "stages/mapper/mapper.h"
#include "stages/reader/reader.h"

namespace chsync {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Exit codes (design Contracts).
enum ExitCode : int {
  kExitOk = 0,
  kExitPartial = 1,  // dead letters, bad lines, truncated archives, unreadable files
  kExitUsage = 2,    // usage/config error, corrupt or foreign state
  kExitBackend = 3,  // backend unreachable, retries exhausted, auth refused
  kExitLocked = 4,   // another run holds the state lock
  kExitSigint = 130,
  kExitSigterm = 143,
};

struct BackendSpec {
  std::string type;      // console, file, null, otlp, langfuse, langfuse-legacy, phoenix
  std::string instance;  // state key; defaults to the type
  // Every declared option of the type, resolved and in canonical form
  // (app/config/backend_options.h: sizes in bytes, durations in ms); headers as "header.N" = "K=V".
  std::map<std::string, std::string> settings;
  std::map<std::string, std::string>
      sources;  // key -> "flag --x", "env X", "file P [..]", "default"
  // Backend values given for several backends that do nothing for this one (another chosen
  // backend takes them): flag name -> where it came from and why not here: "tag" -> "flag --tag:
  // needs --profile langfuse (has generic, default)" (said at start-up too), "host" -> "flag
  // --host: otlp has no --host". Shown by --print-config.
  std::map<std::string, std::string> not_applied;
};

// How a message names where a backend option's value came from (a source as in
// BackendSpec::sources): "--FLAG" for a flag, else "SOURCE (--FLAG)" ("env CHSYNC_HOST (--host)",
// "file PATH [sync] (--host)"). Start-up errors and notices all say it this way.
inline std::string named_source(const std::string& source, const std::string& flag) {
  return source.rfind("flag", 0) == 0 ? "--" + flag : source + " (--" + flag + ")";
}

// Builds a network exporter that logs through the given logger (the run's).
using ExporterFactory =
    std::function<std::unique_ptr<Exporter>(const BackendSpec&, const log::Logger&)>;

struct SyncOptions {
  std::vector<std::string> inputs;
  std::vector<BackendSpec> backends;
  ConsoleFormat format = ConsoleFormat::kText;
  std::size_t workers = 2;
  MapOptions map;
  ReaderOptions reader;
  DiscoverOptions discover;
  std::string db_path;  // SQLite path, or a postgres:// URL (shared state, work sharing)
  // Work sharing (PostgreSQL state only; docs/scaleout.md).
  std::chrono::milliseconds lease{60000};
  // --state-outage-tolerance: how long the shared database may stay unreachable (restart,
  // failover) before the run gives up with exit 3. 0: the default, max(lease, 10 s).
  std::chrono::milliseconds state_outage_tolerance{0};
  std::string work_group = "default";
  std::string worker_id;  // "" = HOST:PID
  // Static sharding: keep bundles whose stable hash mod shard_count == shard_index.
  std::uint32_t shard_index = 0, shard_count = 1;
  bool dry_run = false;
  bool rebuild_state = false;
  bool resend = false;
  std::string report_path;
  std::uint64_t max_memory_bytes = 256u << 20;
  // --max-spool: bytes of archive members spooled to TMPDIR at once (a 21 KB .tar.zst can expand
  // to hundreds of MB); a member that cannot fit is left out with an error (exit 1). 0: no cap.
  std::uint64_t max_spool_bytes = 4ull << 30;
  std::chrono::milliseconds drain_timeout{30000};
  bool quiet = false;
  bool verbose = false;
  std::chrono::milliseconds progress_interval{10000};
  std::size_t max_bad_line_messages = 200;  // printed to stderr; all are counted
  // Operations (docs/operations.md).
  bool redact = false;                       // --redact
  std::vector<std::string> redact_patterns;  // --redact-pattern (implies --redact)
  bool no_content = false;                   // --no-content
  std::string metrics_listen;                // --metrics-listen 127.0.0.1:9464
  std::string metrics_file;                  // --metrics-file PATH (node-exporter textfile)
  // Every line the run writes to stderr (progress, summary, errors, backend answers) goes
  // through it, and through the exporters the factory builds with it. Default: stderr, in the
  // process's --log-format.
  log::Logger logger;
};

// The outage tolerance a run uses: --state-outage-tolerance, else max(--lease, 10 s) (a
// database restart of a few seconds is ridden out even with a short lease).
inline std::chrono::milliseconds effective_state_outage_tolerance(const SyncOptions& o) {
  if (o.state_outage_tolerance.count() > 0) return o.state_outage_tolerance;
  return std::max<std::chrono::milliseconds>(o.lease, std::chrono::seconds(10));
}

// Runs one sync and returns the process exit code. `factory` builds network exporters
// (console/file/null are built here).
int run_sync(const SyncOptions& options, const ExporterFactory& factory);

}  // namespace chsync
