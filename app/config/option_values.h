// Option values: parsing a text into an option's canonical form (the form a BackendSpec stores,
// backend_options.h) and typed access to a resolved BackendSpec's settings. Pure functions, no
// state.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "app/config/backend_registry.h"
#include "app/sync/sync.h"

namespace chsync {

// Parses `text` as the option's type into its canonical form (sizes in bytes, durations in ms,
// rates "N/s" or "Nspans/s", bools "true"/"false", choices in lower case), then applies the
// option's own `check`. Returns "" on success, else why not (the caller names the source).
std::string canonical_value(const OptionDecl& d, const std::string& text, std::string& out);

// Typed access to a resolved BackendSpec (the value is always present for declared options
// with a default; an unset one reads as "", 0 or false).
std::string spec_str(const BackendSpec& s, const std::string& key);
std::uint64_t spec_u64(const BackendSpec& s, const std::string& key);
std::chrono::milliseconds spec_ms(const BackendSpec& s, const std::string& key);
bool spec_bool(const BackendSpec& s, const std::string& key);
bool spec_has(const BackendSpec& s, const std::string& key);
// A repeatable option's values in the order given ("tag" -> tag.0, tag.1, ...).
std::vector<std::string> spec_list(const BackendSpec& s, const std::string& key);

}  // namespace chsync
