// Typed backend options, the declarations: each backend type declares its options once (key, flag,
// type, default, help, secret or not, environment fallbacks, conditions), and everything else is
// derived from this table: the `chsync sync` flags and their --help lines (option_help.h),
// CHSYNC_<FLAG> variables (through the generic layering in cli/), the keys accepted in a TOML
// [backends.NAME] table, validation with the source named in the error (backend_options.h) and
// --print-config (every effective value and where it came from).
// Adding a backend type adds one entry to build_registry() in backend_registry.cpp. The registry
// is built once, on first use, and never changes after: safe to read from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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
// The option of type `t` whose settings key is `key`; nullptr if it has none.
const OptionDecl* find_option(const BackendTypeDecl& t, const std::string& key);
// Every option flag of any backend type, once, in declaration order (for --help and layering).
std::vector<const OptionDecl*> all_backend_options();

}  // namespace chsync
