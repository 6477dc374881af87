// The flags of `chsync sync`: their declaration (CLI11, grouped for --help), the environment
// help text, and the layering of environment and config-file values under the command line
// (flags > environment > file > defaults). Turning the raw values into SyncOptions is
// cli/sync_options.h. Used by cli/main.cpp only.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <string>
#include <vector>

#include "app/config/config.h"

namespace chsync {

// Every sync flag as given (strings: units are parsed by build_sync_options, which names the
// flag, variable or config line of a bad value).
struct RawSyncFlags {
  std::vector<std::string> inputs;
  std::vector<std::string> files;
  std::vector<std::string> backends;
  std::string format = "text";
  bool json = false;
  std::size_t workers = 0;
  std::string db;
  std::string state_url, lease = "60s", work_group = "default", worker_id, shard;
  std::string state_outage_tolerance;  // "" = max(lease, 10s)
  bool dry_run = false, rebuild_state = false, resend = false;
  std::string report;
  std::string settle = "10m", max_field_bytes = "64KiB", max_line_bytes = "64MiB",
              max_memory = "256MiB", max_spool = "4GiB", drain_timeout = "30s",
              progress_interval = "10s";
  bool trace_per_session = false, message_hash = false;
  std::string user_id, user_from_path;
  std::string trace_name = "claude-code";
  std::vector<std::string> include, exclude, projects, sessions;
  std::string since, until;
  bool verbose = false, quiet = false;
  // Backend options (app/config/backend_options.h): values by flag name, as given.
  std::map<std::string, std::string> bopt;
  std::map<std::string, bool> bflag;
  std::map<std::string, std::vector<std::string>> blist;  // repeatable: --header, --tag
  std::string config;
  bool print_config = false;
  std::string log_format = "text";
  // operations
  bool redact = false, no_content = false;
  std::vector<std::string> redact_patterns;
  std::string metrics_listen, metrics_file;
};

// Flag groups of `sync --help` (issue 23 point 6).
inline constexpr const char* kGroupInput = "Input";
inline constexpr const char* kGroupState = "State";
inline constexpr const char* kGroupBackend = "Backend";
inline constexpr const char* kGroupTls = "TLS";
inline constexpr const char* kGroupRetry = "Retry";
inline constexpr const char* kGroupMapping = "Mapping and content";
inline constexpr const char* kGroupOutput = "Output and logging";
inline constexpr const char* kGroupScale = "Scale-out (PostgreSQL state)";

// Declares every flag of `chsync sync` on `cmd`, writing into `f`. The backend options are not
// written here: they are derived from the declarations in app/config/backend_registry.cpp.
void add_sync_flags(CLI::App* cmd, RawSyncFlags& f);

// The environment variables `chsync sync` reads, for --help.
std::string environment_help();

// Rebuilds the argument list `args` (as parsed once into `sync_cmd` and `given`) with values from
// the environment (CHSYNC_<FLAG>) and the config file's [sync] table for every sync option the
// command line did not set, and records where each set option came from in `sources`: "flag --x",
// "env CHSYNC_X", "file PATH [sync]". Throws ConfigError for a [sync] key that is no sync flag.
std::vector<std::string> layer_sync_args(const std::vector<std::string>& args,
                                         const CLI::App& sync_cmd, const RawSyncFlags& given,
                                         const ConfigFile& cf,
                                         std::map<std::string, std::string>& sources);

}  // namespace chsync
