// Typed backend options: each backend type declares its options once (key, flag, type, default,
// help, secret or not, environment fallbacks), and everything else is derived from that table:
// the `chsync sync` flags and their --help lines, CHSYNC_<FLAG> variables (through the generic
// layering in main.cpp), the keys accepted in a TOML [backends.NAME] table, validation with the
// source named in the error, and --print-config (every effective value and where it came from).
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
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "app/sync/sync.h"

namespace chsync {

// kHeaders and kList are repeatable: settings "KEY.0", "KEY.1", ... in the order given.
enum class OptionType {
  kString,
  kUrl,
  kBool,
  kCount,
  kSize,
  kDuration,
  kRate,
  kChoice,
  kHeaders,
  kList
};

// An environment variable that supplies a default when neither flag nor file sets the option.
struct EnvFallback {
  std::string name;
  std::string suffix;   // appended to the value (OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces")
  bool millis = false;  // a bare number of milliseconds (OTEL_EXPORTER_OTLP_TIMEOUT)
};

struct OptionDecl {
  std::string key;   // settings key and TOML key in [backends.NAME] ("batch_spans")
  std::string flag;  // long flag without dashes ("batch-spans"); CHSYNC_<FLAG> follows from it
  OptionType type = OptionType::kString;
  std::string default_text;  // "" = unset unless an environment fallback applies
  std::string help;
  bool secret = false;
  std::vector<std::string> choices;  // kChoice
  std::vector<EnvFallback> env;
  std::uint64_t min = 0, max = 0;  // kCount bounds (max 0 = none)
  // Extra rule on the value (after the type's own parsing): "" when fine, else why not.
  std::function<std::string(const std::string&)> check;
  // The option does something only while another option of the same instance has one of these
  // values (--tag: langfuse.trace.tags exist only in the langfuse profile; --compression-level
  // only with gzip). Set otherwise, it is refused like a flag of another backend type.
  std::string when_key;
  std::vector<std::string> when_values;
};

struct BackendTypeDecl {
  std::string type;  // console, file, null, otlp, langfuse, langfuse-legacy, phoenix
  std::string help;
  std::vector<OptionDecl> options;
};

// The registry: one entry per backend type (adding a backend adds one entry).
const std::vector<BackendTypeDecl>& backend_types();
const BackendTypeDecl* find_backend_type(const std::string& type);
// Every option flag of any backend type, once, in declaration order (for --help and layering).
std::vector<const OptionDecl*> all_backend_options();
// "a type name for --help": DURATION, SIZE, RATE, N, URL, TEXT, or a|b|c.
std::string option_type_name(const OptionDecl& d);
// Help text with the default(s) and environment fallbacks appended.
std::string option_help(const OptionDecl& d);

// Parses `text` as the option's type into its canonical form (sizes in bytes, durations in ms,
// rates "N/s" or "Nspans/s", bools "true"/"false"). Returns "" on success, else why not.
std::string canonical_value(const OptionDecl& d, const std::string& text, std::string& out);

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

// Typed access to a resolved BackendSpec (the value is always present for declared options).
std::string spec_str(const BackendSpec& s, const std::string& key);
std::uint64_t spec_u64(const BackendSpec& s, const std::string& key);
std::chrono::milliseconds spec_ms(const BackendSpec& s, const std::string& key);
bool spec_bool(const BackendSpec& s, const std::string& key);
bool spec_has(const BackendSpec& s, const std::string& key);
// A repeatable option's values in the order given ("tag" -> tag.0, tag.1, ...).
std::vector<std::string> spec_list(const BackendSpec& s, const std::string& key);

}  // namespace chsync
