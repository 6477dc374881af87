// Typed backend options, the resolution: one BackendSpec per chosen backend (a type or a
// [backends.NAME] instance), every option of its type (backend_registry.h) given its value in
// canonical form (option_values.h) and where that value came from.
//
// Precedence for one backend instance: a flag or CHSYNC_* variable > the instance's own
// [backends.NAME] key > a [sync] key of the config file > the option's own environment fallback
// (OTEL_*, LANGFUSE_*, PHOENIX_*) > its default.
// Errors: resolve_backends() throws ConfigError (exit 2) naming the key and its source for a
// malformed value, an unknown key (with "did you mean"), or a flag, CHSYNC_* variable, [sync] key
// or [backends.NAME] key that applies to none of the chosen backends: either no chosen type
// declares it, or its `when_key` condition holds for none of them (--tag with --profile generic).
// An option's own environment fallback (OTEL_*, LANGFUSE_*, PHOENIX_*) is read only by the types
// that declare it and is never an error: such variables are ambient in a shell.
// A value given once that some chosen backends take and others do not is applied to those that
// do; the others record it in BackendSpec::not_applied. One --endpoint or --host in effect for
// several backends is an error (they would all send to one place).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "app/config/backend_registry.h"
#include "app/config/option_values.h"
#include "app/sync/sync.h"

namespace chsync {

// Values given for backend options, by flag name, with where each came from:
// "flag --x", "env CHSYNC_X", "file PATH [sync]".
struct GivenValue {
  std::vector<std::string> values;
  std::string source;
  bool explicit_ = false;  // flag or CHSYNC_* (beats an instance's [backends.NAME] key)
};

struct ConfigFile;
// Builds one BackendSpec per name in `backend_names` (a type or a [backends.NAME] instance),
// with every declared option resolved, validated and its source recorded.
std::vector<BackendSpec> resolve_backends(const std::vector<std::string>& backend_names,
                                          const std::map<std::string, GivenValue>& given,
                                          const ConfigFile& cf);

// Closest candidate by edit distance (at most 2 edits, or 3 for long words); "" if none.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace chsync
