// Turns the raw `chsync sync` flags (cli/sync_flags.h, after layering) into SyncOptions: units
// parsed, backends resolved against their declared options, contradictions refused. A bad value
// is exit 2 (after a log line naming the flag, CHSYNC_ variable or config line that gave it).
// Also: where the state lives when no flag says, and the --print-config output. Used by
// cli/main.cpp only.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <string>

#include "app/config/config.h"
#include "app/sync/sync.h"
#include "cli/sync_flags.h"

namespace chsync {

// The value of environment variable `name`, or `fallback` when it is unset or empty.
std::string env(const char* name, std::string fallback = "");

// Throws ConfigError(msg), which main() logs as an error before it exits with kExitUsage (2).
[[noreturn]] void usage_error(const std::string& msg);

// State location when no --db/--state is given: CHSYNC_STATE_URL (PostgreSQL), then
// CHSYNC_DB / CH_SYNC_DB, then the default SQLite path. `source` (if given) gets where it came
// from.
std::string default_db(std::string* source = nullptr);

// --db PATH and --state URL name the same thing; --state must be a PostgreSQL URL. Neither:
// default_db().
std::string state_location(const std::string& db, const std::string& state,
                           std::string* source = nullptr);

// `sources` is what layer_sync_args recorded; this adds the variables read besides
// CHSYNC_<FLAG> (CLAUDE_PROJECTS_DIR, CH_SYNC_BACKEND, CH_SYNC_DB, CHSYNC_STATE_URL) for
// --print-config. A bad or contradictory value exits 2 (usage_error).
SyncOptions build_sync_options(RawSyncFlags& f, const ConfigFile& cf,
                               std::map<std::string, std::string>& sources);

// --print-config: every effective setting as one JSON object on stdout, secrets masked, with
// where each came from.
void print_config(const SyncOptions& o, const ConfigFile& cf, const CLI::App& sync_cmd,
                  const std::map<std::string, std::string>& sources);

}  // namespace chsync
