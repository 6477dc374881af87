// `chsync replay-dead-letters`: sends every request of the dead-letter file next to the state
// again (to its recorded endpoint, or `endpoint`). Accepted ones are marked delivered in the
// state; the others stay in the file (rewritten whole: temp file + rename), and so do lines
// that are not records (bad JSON, cut short, wrong keys, bad base64): each is named FILE:LINE
// with the reason, counted in the summary, and kept byte for byte in its place, never sent.
// Returns the exit code (design Contracts): 0 all replayed (or nothing to do); 1 some requests
// rejected again or some lines unreadable; 3 the backend unreachable or refusing (transport
// error, 401/403/404, 429/5xx) for some request. 3 > 1 > 0.
// Throws StateError when the state cannot be opened (exit 2, or 4 when another run holds it).
#pragma once

#include <string>
#include <vector>

#include "pipeline/log.h"

namespace chsync {

struct ReplayOptions {
  std::string db_path;
  std::string endpoint;  // override
  std::vector<std::string> headers;
  std::string ca_file;
  bool insecure = false;
  log::Logger log;  // errors per line and per request; the summary goes to stdout
};
int cmd_replay_dead_letters(const ReplayOptions& ro);

}  // namespace chsync
