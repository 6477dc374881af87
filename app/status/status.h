// `chsync status`: per backend instance the files, bytes, spans delivered / dead / in flight and
// the last sync, per project; `json`: one chsync.status/1 object on stdout (design Contracts).
// Opens the state read-only without the lock (safe next to a running sync). A state that does
// not exist yet is reported as such (exit 0). Throws StateError for a corrupt or foreign state.
#pragma once

#include <string>

namespace chsync {

int cmd_status(const std::string& db_path, bool json);

}  // namespace chsync
