// The non-sync subcommands. Each returns the process exit code.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/exporter.h"
#include "app/sync/sync.h"

namespace chsync {

int cmd_version(const char* version, const char* revision);
int cmd_status(const std::string& db_path, bool json);
int cmd_hash(const std::string& file_colon_line);
int cmd_state(const std::string& db_path, const std::string& action, const std::string& target,
              const std::string& instance);

struct ReplayOptions {
  std::string db_path;
  std::string endpoint;  // override
  std::vector<std::string> headers;
  std::string ca_file;
  bool insecure = false;
};
int cmd_replay_dead_letters(const ReplayOptions& options);

// Builds otlp / langfuse / langfuse-legacy / phoenix exporters (cli/network.cpp).
std::unique_ptr<Exporter> make_network_exporter(const BackendSpec& spec);

}  // namespace chsync
