// `chsync replay-dead-letters`: sends every request of the dead-letter file next to the state
// again (to its recorded endpoint, or `endpoint`). Accepted ones are marked delivered in the
// state; the others stay in the file (rewritten whole: temp file + rename).
// Returns the exit code: 0 all replayed (or nothing to do), 1 some still dead or unreadable lines.
// Throws StateError when the state cannot be opened.
#pragma once

#include <string>
#include <vector>

namespace chsync {

struct ReplayOptions {
  std::string db_path;
  std::string endpoint;  // override
  std::vector<std::string> headers;
  std::string ca_file;
  bool insecure = false;
};
int cmd_replay_dead_letters(const ReplayOptions& options);

}  // namespace chsync
