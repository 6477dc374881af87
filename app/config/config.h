// Configuration file (TOML) and environment layering for `chsync sync`.
//
// Precedence: flags > environment > config file > defaults. The file is --config PATH, else
// $XDG_CONFIG_HOME/chsync/config.toml (or ~/.config/chsync/config.toml) when it exists:
//
//   [sync]                       # any `chsync sync` flag, by its long name (- or _);
//                                # an unknown key is an error (exit 2, with "did you mean")
//   db = "/var/lib/chsync/state.db"
//   settle = "10m"
//   backend = ["collector", "lf"]
//   inputs = ["/data/claude/projects"]
//
//   [backends.collector]         # a named backend instance (its own delivery state); its keys
//                                # are the type's options (app/config/backend_registry.cpp),
//                                # validated
//   type = "otlp"
//   endpoint = "http://otel:4318/v1/traces"
//   headers = { "x-team" = "ml" }
//
//   [backends.lf]
//   type = "langfuse"
//   host = "https://langfuse.internal"
//   public_key = "pk-lf-..."
//   secret_key = "sk-lf-..."
//   tag = ["team-a", "laptop"]   # a repeatable option takes an array
//
// Environment: CHSYNC_<FLAG> (upper case, '-' -> '_'), e.g. CHSYNC_SETTLE=0, CHSYNC_BACKEND=otlp
// (lists comma-separated); the seed's CH_SYNC_DB / CH_SYNC_BACKEND / CLAUDE_PROJECTS_DIR too.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace chsync {

struct ConfigFile {
  std::string path;  // "" when no file was used
  // [sync] keys normalised to flag names without dashes ("max-field-bytes"); values as strings.
  std::map<std::string, std::vector<std::string>> sync;
  // [backends.NAME] -> key -> value ("headers" entries become "header.cfgN" = "name=value").
  std::map<std::string, std::map<std::string, std::string>> backends;
  // Line of each key for error messages: "sync.settle", "backends.NAME.rate" (keys as stored).
  std::map<std::string, int> lines;
};

// Loads `path` (required = true: a missing file is an error). Throws ConfigError naming the file,
// line and column of a syntax error, or the key of an unsupported value.
ConfigFile load_config_file(const std::string& path, bool required);
// --config given, else the XDG default if it exists, else an empty ConfigFile.
ConfigFile load_default_or(const std::string& explicit_path);

// True when a setting's value must never be printed (keys, tokens, passwords, auth headers).
bool is_secret_key(const std::string& key);
std::string mask_secret(const std::string& value);

}  // namespace chsync
