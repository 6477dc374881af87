// Network exporters (otlp, langfuse, langfuse-legacy, phoenix) and dead-letter replay.
// Wired to backends/otlp once that library lands; until then these backends are reported as
// unavailable with a clear configuration error.
#include <cstdio>

#include "cli/commands.h"

namespace chsync {

std::unique_ptr<Exporter> make_network_exporter(const BackendSpec& spec) {
  throw ConfigError("backend '" + spec.type + "' is not built into this binary yet");
}

int cmd_replay_dead_letters(const ReplayOptions&) {
  std::fprintf(stderr, "chsync: replay-dead-letters needs the HTTP backend\n");
  return kExitUsage;
}

}  // namespace chsync
