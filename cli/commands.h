// The small non-sync subcommands (version, hash, state). Each
// command returns the process exit code; status and replay-dead-letters live in app/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "app/dead_letters/replay.h"
#include "app/status/status.h"
#include "app/sync/sync.h"
#include "backends/exporter.h"

namespace chsync {

int cmd_version(const char* version, const char* revision);
// Prints the seed's message hash of each FILE:LINE (1-based), one per output line, in order.
int cmd_hash(const std::vector<std::string>& file_colon_lines);
int cmd_state(const std::string& db_path, const std::string& action, const std::string& target,
              const std::string& instance);

}  // namespace chsync
