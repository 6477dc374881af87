// chsync: Claude Code transcripts -> traces, shipped to OTLP / Langfuse / Phoenix backends.
// main() parses the command line (CLI11), applies environment and defaults, and runs a command.
// Precedence: flags > environment > defaults. Exit codes: see app/sync/sync.h and README.
#include <CLI/CLI.hpp>
#ifdef CHSYNC_WITH_MIMALLOC
#include <mimalloc.h>
#endif
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "app/config/backend_options.h"
#include "app/config/config.h"
#include "app/config/network.h"
#include "app/config/units.h"
#include "app/dead_letters/dead_letters.h"
#include "app/metrics/metrics.h"
#include "app/sync/sync.h"
#include "backends/http/settings_check.h"
#include "cli/bench_cli.h"
#include "cli/commands.h"
#include "pipeline/atomic_file.h"
#include "pipeline/json_writer.h"
#include "pipeline/log.h"
#include "pipeline/text.h"
#include "stages/mapper/mapper.h"
#include "stages/redact/redact.h"
#include "stages/state/state_store.h"

#ifndef CHSYNC_VERSION
#define CHSYNC_VERSION "0.0.0"
#endif
#ifndef CHSYNC_GIT_REVISION
#define CHSYNC_GIT_REVISION "unknown"
#endif

using namespace chsync;

namespace {

std::string env(const char* name, std::string fallback = "") {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string home_dir() { return env("HOME", "/root"); }

[[noreturn]] void usage_error(const std::string& msg) {
  log::error(msg);
  std::exit(kExitUsage);
}

struct RawSyncFlags {
  std::vector<std::string> inputs;
  std::vector<std::string> files;
  std::vector<std::string> backends;
  std::string format = "text";
  bool json = false;
  std::size_t workers = 0;
  std::string db;
  std::string state_url, lease = "60s", work_group = "default", worker_id, shard;
  bool dry_run = false, rebuild_state = false, resend = false;
  std::string report;
  std::string settle = "10m", max_field_bytes = "64KiB", max_line_bytes = "64MiB",
              max_memory = "256MiB", max_spool = "4GiB", drain_timeout = "30s",
              progress_interval = "10s";
  bool trace_per_session = false, message_hash = false;
  std::string user_id, user_from_path;
  std::string trace_name = "claude-code";
  std::vector<std::string> include, exclude, projects, sessions;
  std::string since, until;
  bool verbose = false, quiet = false;
  // Backend options (app/config/backend_options.h): values by flag name, as given.
  std::map<std::string, std::string> bopt;
  std::map<std::string, bool> bflag;
  std::map<std::string, std::vector<std::string>> blist;  // repeatable: --header, --tag
  std::string config;
  bool print_config = false;
  std::string log_format = "text";
  // operations
  bool redact = false, no_content = false;
  std::vector<std::string> redact_patterns;
  std::string metrics_listen, metrics_file;
};

// Flag groups of `sync --help` (issue 23 point 6).
constexpr const char* kGroupInput = "Input";
constexpr const char* kGroupState = "State";
constexpr const char* kGroupBackend = "Backend";
constexpr const char* kGroupTls = "TLS";
constexpr const char* kGroupRetry = "Retry";
constexpr const char* kGroupMapping = "Mapping and content";
constexpr const char* kGroupOutput = "Output and logging";
constexpr const char* kGroupScale = "Scale-out (PostgreSQL state)";

const char* backend_option_group(const std::string& flag) {
  if (flag == "ca-file" || flag == "insecure" || flag == "client-cert" || flag == "client-key")
    return kGroupTls;
  if (flag.rfind("retry-", 0) == 0 || flag == "timeout") return kGroupRetry;
  return kGroupBackend;
}

// The backend options are not written here: they are derived from the declarations in
// app/config/backend_options.cpp (type, default, environment, applicable backends).
void add_backend_flags(CLI::App* cmd, RawSyncFlags& f) {
  for (const OptionDecl* d : all_backend_options()) {
    const std::string name = "--" + d->flag + (d->flag == "output" ? ",-o" : "");
    CLI::Option* o = nullptr;
    if (d->type == OptionType::kBool) {
      o = cmd->add_flag(name, f.bflag[d->flag], option_help(*d));
    } else if (d->type == OptionType::kHeaders || d->type == OptionType::kList) {
      o = cmd->add_option(name, f.blist[d->flag], option_help(*d));
    } else {
      o = cmd->add_option(name, f.bopt[d->flag], option_help(*d));
    }
    if (auto t = option_type_name(*d); !t.empty()) o->type_name(t);
    o->group(backend_option_group(d->flag));
  }
}

void add_sync_flags(CLI::App* cmd, RawSyncFlags& f) {
  auto in = [&](CLI::Option* o) { return o->group(kGroupInput); };
  auto st = [&](CLI::Option* o) { return o->group(kGroupState); };
  auto map = [&](CLI::Option* o) { return o->group(kGroupMapping); };
  auto out = [&](CLI::Option* o) { return o->group(kGroupOutput); };
  auto so = [&](CLI::Option* o) { return o->group(kGroupScale); };
  in(cmd->add_option(
         "inputs", f.inputs,
         "Directories, .jsonl/.jsonl.gz/.jsonl.zst files, tar/tar.gz/tar.zst/zip "
         "archives, or - for stdin (default: $CLAUDE_PROJECTS_DIR or ~/.claude/projects)"))
      ->type_name("PATH");
  in(cmd->add_option("--file", f.files, "Sync one file (repeatable)"))->type_name("PATH");
  in(cmd->add_option("--include", f.include, "Only paths matching this glob (repeatable)"))
      ->type_name("GLOB");
  in(cmd->add_option("--exclude", f.exclude, "Skip paths matching this glob (repeatable)"))
      ->type_name("GLOB");
  in(cmd->add_option("--project", f.projects, "Only these project folders (glob, repeatable)"))
      ->type_name("GLOB");
  in(cmd->add_option("--session", f.sessions, "Only these session ids (glob, repeatable)"))
      ->type_name("GLOB");
  in(cmd->add_option("--since", f.since,
                     "Only turns at or after this time (RFC 3339 or YYYY-MM-DD)"))
      ->type_name("TIME");
  in(cmd->add_option("--until", f.until, "Only turns before this time"))->type_name("TIME");
  in(cmd->add_option("--settle", f.settle,
                     "A turn in a file modified less than this ago is held back; default 10m"))
      ->type_name("DURATION");
  in(cmd->add_option("--max-line-bytes", f.max_line_bytes, "Skip longer lines; default 64MiB"))
      ->type_name("SIZE");
  in(cmd->add_option("--workers,-w", f.workers, "Mapper threads; default: number of cores"))
      ->check(CLI::Range(1, 256).description(""))
      ->type_name("N");
  in(cmd->add_option(
         "--max-memory", f.max_memory,
         "Memory cap for queues and zstd/xz decoder windows (a window over a quarter is "
         "refused); default 256MiB"))
      ->type_name("SIZE");
  in(cmd->add_option(
         "--max-spool", f.max_spool,
         "Disk cap for archive members spooled to TMPDIR at once (a member that does not "
         "fit is left out, exit 1; 0: none); default 4GiB"))
      ->type_name("SIZE");

  cmd->add_option("--config", f.config,
                  "TOML config file (default $XDG_CONFIG_HOME/chsync/config.toml if present)")
      ->type_name("PATH");
  cmd->add_flag("--print-config", f.print_config,
                "Print every effective setting, where it came from (flag, env, file, default), "
                "secrets masked, and exit");
  st(cmd->add_option("--db", f.db,
                     "SQLite state; env CHSYNC_DB, CH_SYNC_DB; default "
                     "$XDG_STATE_HOME/chsync/state.db"))
      ->type_name("PATH");
  st(cmd->add_flag("--dry-run", f.dry_run, "Map and count; send nothing, write no state"));
  st(cmd->add_flag("--rebuild-state", f.rebuild_state,
                   "Move a corrupt/foreign state aside and start over (re-sends everything)"));
  st(cmd->add_flag("--resend", f.resend, "Send again spans already delivered (on purpose)"));

  cmd->add_option("--backend,-b", f.backends,
                  "console|file|null|otlp|langfuse|langfuse-legacy|phoenix or a [backends.NAME] "
                  "instance (repeatable); env CHSYNC_BACKEND, CH_SYNC_BACKEND; default console, "
                  "or otlp when --endpoint is given")
      ->group(kGroupBackend)
      ->type_name("NAME");
  add_backend_flags(cmd, f);

  map(cmd->add_option("--max-field-bytes", f.max_field_bytes,
                      "Truncate content fields; default 64KiB"))
      ->type_name("SIZE");
  map(cmd->add_flag("--trace-per-session", f.trace_per_session,
                    "One trace per session, a span per turn"));
  map(cmd->add_flag(
      "--message-hash", f.message_hash,
      "Add a message hash (sha256 of type, session, time, uuid, message; chsync hash prints it) "
      "to metadata"));
  map(cmd->add_option("--trace-name", f.trace_name,
                      "Name of every root span and Langfuse trace (the turn number and the "
                      "prompt's first words are attributes); default claude-code"))
      ->type_name("NAME");
  map(cmd->add_option("--user-id", f.user_id, "user.id on every span"))->type_name("TEXT");
  map(cmd->add_option("--user-from-path", f.user_from_path,
                      "Regex on the file path; its first capture group is the user id"))
      ->type_name("REGEX");
  map(cmd->add_flag(
      "--redact", f.redact,
      "Replace secrets in content (API keys, tokens, passwords...) with [REDACTED:kind]"));
  map(cmd->add_option(
          "--redact-pattern", f.redact_patterns,
          "Extra secret regex (RE2 syntax; group 1 if any; repeatable; implies --redact)"))
      ->type_name("REGEX");
  map(cmd->add_flag("--no-content", f.no_content,
                    "Export structure and usage only: no prompts, outputs or tool results"));

  out(cmd->add_option("--format", f.format, "Console format; default text"))
      ->check(CLI::IsMember({"text", "json"}).description(""))
      ->type_name("text|json");
  out(cmd->add_flag("--json", f.json, "Same as --format json"));
  out(cmd->add_option("--report", f.report, "Write the run report as JSON to this file"))
      ->type_name("PATH");
  out(cmd->add_option("--drain-timeout", f.drain_timeout,
                      "On stop, wait this long for in-flight requests; default 30s"))
      ->type_name("DURATION");
  out(cmd->add_option(
          "--progress-interval", f.progress_interval,
          "Log progress this often when stderr is not a terminal (0: never); default 10s"))
      ->type_name("DURATION");
  out(cmd->add_option(
          "--metrics-listen", f.metrics_listen,
          "Serve Prometheus metrics at http://HOST:PORT/metrics during the run (loopback)"))
      ->type_name("HOST:PORT");
  out(cmd->add_option("--metrics-file", f.metrics_file,
                      "Write a node-exporter textfile (.prom) at the end of the run"))
      ->type_name("PATH");
  out(cmd->add_flag("-v,--verbose", f.verbose,
                    "More log output (every failed request with its reason)"));
  out(cmd->add_flag("-q,--quiet", f.quiet, "Only errors"));
  out(cmd->add_option("--log-format", f.log_format, "Lines on stderr; default text"))
      ->check(CLI::IsMember({"text", "json"}).description(""))
      ->type_name("text|json");

  so(cmd->add_option("--state", f.state_url,
                     "Shared PostgreSQL state, postgres://... (env CHSYNC_STATE_URL); several "
                     "processes using it share the work (docs/scaleout.md)"))
      ->type_name("URL");
  so(cmd->add_option("--lease", f.lease,
                     "Lease of a claimed unit, renewed every third of it; default 60s"))
      ->type_name("DURATION");
  so(cmd->add_option("--work-group", f.work_group,
                     "Processes of one import share a group; default \"default\""))
      ->type_name("NAME");
  so(cmd->add_option("--worker-id", f.worker_id, "This worker's name in status; default HOST:PID"))
      ->type_name("NAME");
  so(cmd->add_option("--shard", f.shard,
                     "Static sharding K/N: only bundles whose stable hash mod N is K; '/N' takes "
                     "K from JOB_COMPLETION_INDEX (Kubernetes Indexed Job)"))
      ->type_name("K/N");
}

// Where a sync option's value came from, for error messages: "--settle", "CHSYNC_SETTLE" or
// "config PATH:LINE: sync.settle" (set while the options are built).
const std::map<std::string, std::string>* g_sources = nullptr;
const ConfigFile* g_config = nullptr;
std::string named(const std::string& flag) {
  const std::string lname = flag.rfind("--", 0) == 0 ? flag.substr(2) : flag;
  if (!g_sources) return flag;
  auto it = g_sources->find(lname);
  if (it == g_sources->end() || it->second.rfind("flag", 0) == 0) return flag;
  if (it->second.rfind("env ", 0) == 0) return it->second.substr(4);
  std::string where = "config " + (g_config ? g_config->path : std::string("file"));
  if (g_config) {
    auto line = g_config->lines.find("sync." + lname);
    if (line != g_config->lines.end()) where += ":" + std::to_string(line->second);
  }
  return where + ": sync." + lname;
}

std::chrono::milliseconds dur_flag(const std::string& flag, const std::string& v) {
  std::chrono::milliseconds d{};
  if (!parse_duration(v, d))
    usage_error(
        fmt::format("{}: invalid duration '{}' (use 0, 500ms, 10s, 10m, 1h)", named(flag), v));
  return d;
}
std::uint64_t size_flag(const std::string& flag, const std::string& v) {
  std::uint64_t n = 0;
  if (!parse_size(v, n))
    usage_error(fmt::format("{}: invalid size '{}' (use 64KiB, 4MiB)", named(flag), v));
  return n;
}

// State location when no --db/--state is given: CHSYNC_STATE_URL (PostgreSQL), then
// CHSYNC_DB / CH_SYNC_DB, then the default SQLite path.
std::string default_db(std::string* source = nullptr) {
  auto from = [&](const char* name) {
    if (source) *source = std::string("env ") + name;
    return env(name);
  };
  if (!env("CHSYNC_STATE_URL").empty()) return from("CHSYNC_STATE_URL");
  if (!env("CHSYNC_DB").empty()) return from("CHSYNC_DB");
  if (!env("CH_SYNC_DB").empty()) return from("CH_SYNC_DB");
  if (source) *source = "default";
  return default_state_path();
}

// --db PATH and --state URL name the same thing; --state must be a PostgreSQL URL.
std::string state_location(const std::string& db, const std::string& state,
                           std::string* source = nullptr) {
  if (!db.empty() && !state.empty()) usage_error("--db and --state: give one of them");
  if (!state.empty()) {
    if (!is_pg_url(state))
      usage_error(
          fmt::format("--state: expected a postgres:// or postgresql:// URL, got '{}' "
                      "(use --db PATH for a local SQLite state)",
                      state));
    return state;
  }
  return db.empty() ? default_db(source) : db;
}

// "K/N" (0 <= K < N), or "/N" with K from JOB_COMPLETION_INDEX.
std::pair<std::uint32_t, std::uint32_t> parse_shard(const std::string& s) {
  auto bad = [&](const std::string& why) -> std::pair<std::uint32_t, std::uint32_t> {
    usage_error(
        fmt::format("--shard '{}': {} (expected K/N with 0 <= K < N, or /N with "
                    "JOB_COMPLETION_INDEX set)",
                    s, why));
  };
  const auto slash = s.find('/');
  if (slash == std::string::npos) return bad("no '/'");
  std::string k = s.substr(0, slash), n = s.substr(slash + 1);
  if (k.empty()) {
    k = env("JOB_COMPLETION_INDEX");
    if (k.empty()) return bad("JOB_COMPLETION_INDEX is not set");
  }
  auto num = [](const std::string& v, std::uint64_t& out) {
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
      return false;
    out = std::stoull(v);
    return true;
  };
  std::uint64_t kk = 0, nn = 0;
  if (!num(k, kk) || !num(n, nn)) return bad("not numbers");
  if (nn == 0) return bad("N must be at least 1");
  if (kk >= nn) return bad("K must be below N");
  return {static_cast<std::uint32_t>(kk), static_cast<std::uint32_t>(nn)};
}

// Backend option values as given, with their sources (from layer_sync_args).
std::map<std::string, GivenValue> given_backend_values(
    const RawSyncFlags& f, const std::map<std::string, std::string>& sources) {
  std::map<std::string, GivenValue> given;
  auto add = [&](const std::string& flag, std::vector<std::string> values) {
    if (values.empty()) return;
    GivenValue g;
    g.values = std::move(values);
    auto it = sources.find(flag);
    g.source = it == sources.end() ? "flag --" + flag : it->second;
    g.explicit_ = g.source.rfind("file ", 0) != 0;
    given[flag] = std::move(g);
  };
  for (const auto& [flag, v] : f.bopt)
    if (!v.empty()) add(flag, {v});
  for (const auto& [flag, on] : f.bflag)
    if (on) add(flag, {"true"});
  for (const auto& [flag, values] : f.blist) add(flag, values);
  return given;
}

// --backend, else CHSYNC_BACKEND / CH_SYNC_BACKEND, else otlp when an endpoint was given (it
// cannot be meant for the console), else console.
std::vector<std::string> chosen_backends(const RawSyncFlags& f,
                                         std::map<std::string, std::string>& sources) {
  if (!f.backends.empty()) return f.backends;
  const std::string from_env = env("CH_SYNC_BACKEND");
  if (!from_env.empty()) {
    sources["backend"] = "env CH_SYNC_BACKEND";
    return split_list(from_env);
  }
  if (auto it = f.bopt.find("endpoint"); it != f.bopt.end() && !it->second.empty()) {
    sources["backend"] = "default (otlp: an endpoint was given)";
    return {"otlp"};
  }
  return {"console"};
}

// Records in `sources` the variables read besides CHSYNC_<FLAG> (CLAUDE_PROJECTS_DIR,
// CH_SYNC_BACKEND, CH_SYNC_DB, CHSYNC_STATE_URL) for --print-config.
SyncOptions build_sync_options(RawSyncFlags& f, const ConfigFile& cf,
                               std::map<std::string, std::string>& sources) {
  SyncOptions o;
  g_sources = &sources;
  g_config = &cf;
  o.inputs = f.inputs;
  for (auto& p : f.files) o.inputs.push_back(p);
  if (o.inputs.empty()) {
    o.inputs.push_back(env("CLAUDE_PROJECTS_DIR", home_dir() + "/.claude/projects"));
    if (!env("CLAUDE_PROJECTS_DIR").empty()) sources["inputs"] = "env CLAUDE_PROJECTS_DIR";
  }
  f.backends = chosen_backends(f, sources);
  o.backends = resolve_backends(f.backends, given_backend_values(f, sources), cf);
  o.format = (f.json || f.format == "json") ? ConsoleFormat::kJson : ConsoleFormat::kText;
  // --format and --json shape the console backend's lines only (the file backend always writes
  // JSON lines): without a console backend they cannot be meant.
  const bool console = std::any_of(o.backends.begin(), o.backends.end(),
                                   [](const BackendSpec& b) { return b.type == "console"; });
  for (const char* flag : {"format", "json"})
    if (!console && sources.count(flag))
      usage_error(fmt::format("{} does not apply to --backend {}; --{} is for --backend console",
                              named(std::string("--") + flag), fmt::join(f.backends, ", "), flag));
  o.workers = f.workers ? f.workers : std::max(1u, std::thread::hardware_concurrency());
  std::string db_source;
  o.db_path = state_location(f.db, f.state_url, &db_source);
  if (f.db.empty() && f.state_url.empty()) sources["db"] = db_source;
  o.lease = dur_flag("--lease", f.lease);
  if (o.lease < std::chrono::milliseconds(500)) usage_error("--lease: must be at least 500ms");
  o.work_group = f.work_group;
  if (o.work_group.empty()) usage_error("--work-group: must not be empty");
  o.worker_id = f.worker_id;
  if (!f.shard.empty()) {
    auto [k, n] = parse_shard(f.shard);
    o.shard_index = k;
    o.shard_count = n;
  }
  o.dry_run = f.dry_run;
  o.rebuild_state = f.rebuild_state;
  o.resend = f.resend;
  o.report_path = f.report;
  o.map.settle_ms = dur_flag("--settle", f.settle).count();
  o.map.max_field_bytes = size_flag("--max-field-bytes", f.max_field_bytes);
  if (o.map.max_field_bytes < 64) usage_error("--max-field-bytes: must be at least 64");
  o.reader.max_line_bytes = size_flag("--max-line-bytes", f.max_line_bytes);
  o.max_memory_bytes = size_flag("--max-memory", f.max_memory);
  o.max_spool_bytes = size_flag("--max-spool", f.max_spool);
  o.reader.chunk_bytes =
      std::min<std::size_t>(4u << 20, std::max<std::size_t>(o.reader.max_line_bytes, 64 * 1024));
  o.drain_timeout = dur_flag("--drain-timeout", f.drain_timeout);
  o.progress_interval = dur_flag("--progress-interval", f.progress_interval);
  o.map.trace_per_session = f.trace_per_session;
  if (f.trace_name.empty()) usage_error("--trace-name: must not be empty");
  o.map.trace_name = f.trace_name;
  o.map.message_hash = f.message_hash;
  o.redact = f.redact || !f.redact_patterns.empty();
  o.redact_patterns = f.redact_patterns;
  o.no_content = f.no_content;
  // Checked by the engine that runs them (RE2), not std::regex: the two disagree ("(?i)x" is
  // RE2 only, lookaround std::regex only), and --print-config should fail the same way.
  if (!f.redact_patterns.empty()) {
    try {
      Redactor check(RedactOptions{f.redact_patterns});
    } catch (const std::invalid_argument& e) {
      usage_error(e.what());
    }
  }
  o.metrics_listen = f.metrics_listen;
  if (!f.metrics_listen.empty())
    if (auto err = check_metrics_listen(f.metrics_listen); !err.empty())
      usage_error(fmt::format("--metrics-listen {}: {}", f.metrics_listen, err));
  o.metrics_file = f.metrics_file;
  o.map.user_id = f.user_id;
  o.map.user_from_path_regex = f.user_from_path;
  if (!f.user_from_path.empty()) {
    try {
      std::regex re(f.user_from_path);
      if (re.mark_count() < 1) usage_error("--user-from-path: the regex needs a capture group");
    } catch (const std::regex_error& e) {
      usage_error(fmt::format("--user-from-path: invalid regex: {}", e.what()));
    }
  }
  if (!f.since.empty() && !parse_time_bound(f.since, o.map.since_ms))
    usage_error(fmt::format("--since: invalid time '{}'", f.since));
  if (!f.until.empty() && !parse_time_bound(f.until, o.map.until_ms))
    usage_error(fmt::format("--until: invalid time '{}'", f.until));
  o.discover.include_globs = f.include;
  o.discover.exclude_globs = f.exclude;
  o.discover.projects = f.projects;
  o.discover.sessions = f.sessions;
  o.verbose = f.verbose;
  o.quiet = f.quiet;
  if (f.quiet && f.verbose) usage_error("--quiet and --verbose contradict each other");
  if (f.dry_run && f.resend) usage_error("--dry-run and --resend contradict each other");
  return o;
}

}  // namespace

namespace {

// The environment variables `chsync sync` reads, for --help: the backend options' fallbacks come
// from their declarations.
std::string environment_help() {
  std::string h = "Environment (--print-config shows what each one set):\n";
  for (const auto& [name, what] : std::vector<std::pair<const char*, const char*>>{
           {"CHSYNC_<FLAG>", "any flag, e.g. CHSYNC_BACKEND=otlp, CHSYNC_SETTLE=0"},
           {"CHSYNC_DB, CH_SYNC_DB", "state database"},
           {"CHSYNC_STATE_URL", "PostgreSQL state (postgres://...)"},
           {"CH_SYNC_BACKEND", "backends, comma-separated"},
           {"CLAUDE_PROJECTS_DIR", "default input (else ~/.claude/projects)"},
           {"XDG_CONFIG_HOME, XDG_STATE_HOME", "where the config file and the state live"},
           {"HTTPS_PROXY, HTTP_PROXY, NO_PROXY", "proxies (or lower case)"}})
    h += fmt::format("  {:<38} {}\n", name, what);
  // Variable -> what it sets -> the backend types that read it.
  std::map<std::string, std::vector<std::pair<std::string, std::vector<std::string>>>> by_env;
  for (const auto& t : backend_types())
    for (const auto& o : t.options)
      for (const auto& e : o.env) {
        const std::string what = o.flag.empty() ? o.help : "--" + o.flag;
        auto& v = by_env[e.name];
        auto it = std::find_if(v.begin(), v.end(), [&](const auto& w) { return w.first == what; });
        if (it == v.end()) it = v.insert(v.end(), {what, {}});
        it->second.push_back(t.type);
      }
  for (const auto& [name, whats] : by_env) {
    std::vector<std::string> shown;
    for (const auto& [what, types] : whats)
      shown.push_back(fmt::format("{} ({})", what, fmt::join(types, ", ")));
    h += fmt::format("  {:<38} {}\n", name, fmt::join(shown, ", "));
  }
  return h;
}

struct Cli {
  CLI::App app{
      "chsync: turn Claude Code transcripts into traces and ship them to OTLP, "
      "Langfuse and Phoenix backends, exactly once in effect.\n\n"
      "Exit codes: 0 all delivered; 1 finished with dead letters, spans the backend "
      "rejected, bad lines or unreadable files; 2 usage/config/state error; 3 backend "
      "unreachable, retries exhausted, auth refused, or spans left without an outcome; "
      "4 another run holds the state lock; 130/143 stopped by SIGINT/SIGTERM (retry "
      "waits end at once, in-flight requests get at most --drain-timeout, a second "
      "signal exits immediately).",
      "chsync"};
  RawSyncFlags sf;
  CLI::App* sync_cmd = nullptr;
  CLI::App* sync_status = nullptr;
  bool sync_status_json = false;
  std::string sync_status_db, sync_status_state;
  std::string status_db, status_state;
  bool status_json = false;
  CLI::App* status_cmd = nullptr;
  std::vector<std::string> hash_targets;
  CLI::App* hash_cmd = nullptr;
  std::string replay_db;
  ReplayOptions rf;
  CLI::App* replay_cmd = nullptr;
  std::string state_db, state_arg, state_target, state_instance;
  CLI::App* state_cmd = nullptr;
  CLI::App* version_cmd = nullptr;
  RawBenchFlags bf;
  CLI::App* bench_cmd = nullptr;

  Cli() {
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("chsync ") + CHSYNC_VERSION);
    sync_cmd = app.add_subcommand("sync", "Export transcripts to backends");
    sync_cmd->footer(
        "Examples:\n"
        "  chsync sync --backend console --format json --settle 0 ~/.claude/projects\n"
        "  chsync sync --backend otlp --endpoint http://127.0.0.1:4318/v1/traces backup.tar.zst\n"
        "  chsync sync --dry-run --report run.json ~/.claude/projects\n"
        "  chsync sync --config /etc/chsync/config.toml --print-config\n"
        "  chsync sync status            (same as chsync status)\n\n"
        "Every flag can also be set as CHSYNC_<FLAG> (e.g. CHSYNC_SETTLE=0) or in the [sync]\n"
        "table of the config file; precedence: flags > environment > file > defaults.\n"
        "A backend flag that none of the chosen backends takes, or an unknown config key, is an\n"
        "error (exit 2). Values: DURATION 0, 500ms, 10s, 10m, 1h; SIZE 64KiB, 4MiB; RATE 50/s\n"
        "(requests) or 5000spans/s.\n\n" +
        environment_help());
    add_sync_flags(sync_cmd, sf);
    sync_status = sync_cmd->add_subcommand("status", "Show the state (same as chsync status)");
    sync_status->add_option("--db", sync_status_db, "State database")->type_name("PATH");
    sync_status->add_option("--state", sync_status_state, "PostgreSQL state URL")->type_name("URL");
    sync_status->add_flag("--json", sync_status_json, "JSON output");
    add_log_format(sync_status);

    status_cmd = app.add_subcommand("status", "Show files, offsets, spans sent, errors");
    status_cmd->add_option("--db", status_db, "State database");
    status_cmd->add_option("--state", status_state,
                           "PostgreSQL state URL (env CHSYNC_STATE_URL): also lists workers and "
                           "work units");
    status_cmd->add_flag("--json", status_json, "JSON output");
    add_log_format(status_cmd);
    status_cmd->footer("Example:\n  chsync status --db /var/lib/chsync/state.db --json");

    hash_cmd = app.add_subcommand(
        "hash", "Print the message hash (--message-hash) of FILE:LINE (one line each)");
    hash_cmd->add_option("target", hash_targets, "FILE:LINE (1-based), one or more")->required();
    add_log_format(hash_cmd);
    hash_cmd->footer("Example:\n  chsync hash ~/.claude/projects/-home-me-proj/3f2a….jsonl:12");

    replay_cmd = app.add_subcommand("replay-dead-letters", "Send the dead-lettered requests again");
    replay_cmd->add_option("--db", replay_db, "State database");
    replay_cmd->add_option("--endpoint", rf.endpoint, "Override the recorded endpoint");
    replay_cmd->add_option("--header", rf.headers, "Extra HTTP header K=V");
    replay_cmd->add_option("--ca-file", rf.ca_file, "PEM bundle to verify the server");
    replay_cmd->add_flag("--insecure", rf.insecure, "Do not verify TLS certificates");
    add_log_format(replay_cmd);
    replay_cmd->footer(
        "Example:\n  chsync replay-dead-letters --db state.db --endpoint "
        "http://otel:4318/v1/traces");

    state_cmd = app.add_subcommand("state", "Housekeeping: vacuum, backup DEST, forget PREFIX");
    state_cmd->add_option("action", state_arg, "vacuum | backup | forget")
        ->required()
        ->check(CLI::IsMember({"vacuum", "backup", "forget"}));
    state_cmd->add_option("target", state_target, "backup: destination file; forget: path prefix");
    state_cmd->add_option("--db", state_db, "State database");
    state_cmd->add_option("--backend", state_instance, "Backend instance (forget; default all)");
    add_log_format(state_cmd);
    state_cmd->footer(
        "Examples:\n  chsync state backup /backups/chsync.db\n"
        "  chsync state forget /data/old-archive.tar.zst");

    version_cmd = app.add_subcommand("version",
                                     "Print version and build information (on stdout; it logs "
                                     "nothing, so it has no --log-format)");
    bench_cmd = add_bench_command(app, bf);
    add_log_format(bench_cmd)->group("Output and logging");
    one_value_per_occurrence(&app);
  }

  // --log-format of the commands other than sync (sync has its own, layered like its other flags).
  std::string log_format;
  CLI::Option* add_log_format(CLI::App* cmd) {
    return cmd
        ->add_option("--log-format", log_format,
                     "Lines on stderr: text, or json (one JSON object per line); default text, "
                     "env CHSYNC_LOG_FORMAT")
        ->check(CLI::IsMember({"text", "json"}).description(""))
        ->type_name("text|json");
  }
  // The log format a command runs with: its flag, else `sync --log-format` (for `sync status`),
  // else CHSYNC_LOG_FORMAT.
  log::Format effective_log_format() const {
    std::string v = log_format;
    if (v.empty() && sf.log_format != "text") v = sf.log_format;
    if (v.empty()) v = env("CHSYNC_LOG_FORMAT");
    return v == "json" ? log::Format::kJson : log::Format::kText;
  }

  // A repeatable option takes one value per occurrence: CLI11 lets a vector option read every
  // following word, so "--tag a PATH" took PATH as a second tag and synced the default input.
  static void one_value_per_occurrence(CLI::App* cmd) {
    for (CLI::Option* o : cmd->get_options())
      if (!o->get_lnames().empty()) o->allow_extra_args(false);
    for (CLI::App* sub : cmd->get_subcommands({})) one_value_per_occurrence(sub);
  }

  // `chsync`, `chsync help [CMD]` and `chsync synk` print the usage (and the nearest command)
  // instead of CLI11's bare "A subcommand is required".
  int parse_command_word(const std::vector<std::string>& args) {
    if (args.empty()) {
      std::fputs(app.help().c_str(), stderr);
      return kExitUsage;
    }
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
    if (args[0] == "help") {
      if (args.size() > 1) {
        for (CLI::App* sub : app.get_subcommands({}))
          if (sub->get_name() == args[1]) {
            std::fputs(sub->help().c_str(), stdout);
            return kExitOk;
          }
      }
      std::fputs(app.help().c_str(), stdout);
      return kExitOk;
    }
    if (args[0].empty() || args[0][0] == '-' ||
        std::find(names.begin(), names.end(), args[0]) != names.end())
      return -1;
    std::string msg = fmt::format("chsync: unknown command '{}'", args[0]);
    if (auto near = did_you_mean(args[0], names); !near.empty())
      msg += fmt::format("; did you mean '{}'?", near);
    const std::string commands = fmt::format("{}", fmt::join(names, ", "));
    if (json_logs_asked(args)) {
      log::configure(log::Format::kJson, log::Level::kInfo);
      log::write(log::Level::kError, msg.substr(std::string("chsync: ").size()),
                 {{"commands", commands}}, false);
    } else {
      std::fprintf(stderr, "%s\nCommands: %s (chsync help COMMAND)\n", msg.c_str(),
                   commands.c_str());
    }
    return kExitUsage;
  }

  // A command line that could not be parsed still asks for JSON lines when it says so (or
  // CHSYNC_LOG_FORMAT does): its error must not be the one plain line in a JSON stream.
  static bool json_logs_asked(const std::vector<std::string>& args) {
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--log-format=json") return true;
      if (args[i] == "--log-format") return i + 1 < args.size() && args[i + 1] == "json";
    }
    return env("CHSYNC_LOG_FORMAT") == "json";
  }

  // "--endpont" -> "did you mean --endpoint?" for the command that was being parsed.
  std::string suggest_flags(const std::vector<std::string>& args) const {
    const CLI::App* cmd = &app;
    for (const CLI::App* sub : app.get_subcommands({}))
      if (sub->parsed()) cmd = sub;
    std::vector<std::string> names;
    for (const CLI::Option* o : cmd->get_options())
      for (const auto& l : o->get_lnames()) names.push_back("--" + l);
    std::string out;
    for (const auto& a : args) {
      if (a.rfind("--", 0) != 0 || a.size() < 3) continue;
      const std::string flag = a.substr(0, a.find('='));
      if (std::find(names.begin(), names.end(), flag) != names.end()) continue;
      if (auto near = did_you_mean(flag, names); !near.empty())
        out += fmt::format("; {}: did you mean {}?", flag, near);
    }
    return out;
  }

  int parse(const std::vector<std::string>& args) {
    if (int rc = parse_command_word(args); rc >= 0) return rc;
    std::vector<char*> av;
    static char prog[] = "chsync";
    av.push_back(prog);
    for (auto& a : args) av.push_back(const_cast<char*>(a.c_str()));
    try {
      app.parse(static_cast<int>(av.size()), av.data());
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      const std::string msg = std::string(e.what()) + suggest_flags(args);
      if (json_logs_asked(args)) {
        log::configure(log::Format::kJson, log::Level::kInfo);
        log::error(msg);
      } else {
        std::fprintf(stderr, "chsync: %s\n", msg.c_str());
      }
      return kExitUsage;
    }
    return -1;
  }
};

std::string env_name(const std::string& lname) {
  std::string n = "CHSYNC_";
  for (char c : lname)
    n.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return n;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// A [sync] key that is no flag of `chsync sync` is a typo or a setting of another version:
// refuse it (exit 2) rather than run without it.
void check_sync_keys(const CLI::App& sync_cmd, const ConfigFile& cf) {
  std::vector<std::string> names = {"inputs"};
  for (const CLI::Option* opt : sync_cmd.get_options())
    if (!opt->get_lnames().empty()) names.push_back(opt->get_lnames().front());
  for (const auto& [key, values] : cf.sync) {
    if (std::find(names.begin(), names.end(), key) != names.end() && key != "help" &&
        key != "config" && key != "print-config")
      continue;
    auto line = cf.lines.find("sync." + key);
    std::string msg =
        fmt::format("config {}{}: sync.{}: unknown key", cf.path,
                    line == cf.lines.end() ? "" : ":" + std::to_string(line->second), key);
    if (auto near = did_you_mean(key, names); !near.empty())
      msg += fmt::format(" (did you mean '{}'?)", near);
    throw ConfigError(msg);
  }
}

// Rebuilds the argument list with values from the environment and the config file for every
// sync option the command line did not set (flags > environment > file > defaults), and records
// where each set option came from: "flag --x", "env CHSYNC_X", "file PATH [sync]".
std::vector<std::string> layer_sync_args(const std::vector<std::string>& args, Cli& first,
                                         const ConfigFile& cf,
                                         std::map<std::string, std::string>& sources) {
  check_sync_keys(*first.sync_cmd, cf);
  auto pos = std::find(args.begin(), args.end(), "sync");
  std::vector<std::string> extra;
  for (const CLI::Option* opt : first.sync_cmd->get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string lname = opt->get_lnames().front();
    if (lname == "help" || lname == "config" || lname == "print-config") continue;
    if (opt->count() > 0) {
      sources[lname] = "flag --" + lname;
      continue;
    }
    const bool is_flag = opt->get_expected_min() == 0;
    std::vector<std::string> values;
    const std::string ename = env_name(lname);
    const char* ev = std::getenv(ename.c_str());
    if (ev && *ev) {
      values = opt->get_expected_max() > 1 ? split_commas(ev) : std::vector<std::string>{ev};
      sources[lname] = "env " + ename;
    } else if (auto it = cf.sync.find(lname); it != cf.sync.end()) {
      values = it->second;
      sources[lname] = "file " + cf.path + " [sync]";
    } else {
      continue;
    }
    for (const auto& v : values) {
      if (is_flag) {
        if (v == "true" || v == "1" || v == "yes") extra.push_back("--" + lname);
      } else {
        extra.push_back("--" + lname);
        extra.push_back(v);
      }
    }
  }
  std::vector<std::string> out(args.begin(), pos + 1);
  out.insert(out.end(), extra.begin(), extra.end());
  out.insert(out.end(), pos + 1, args.end());
  // Inputs from the file only when none were given (and no --file).
  if (first.sf.inputs.empty() && first.sf.files.empty()) {
    if (auto it = cf.sync.find("inputs"); it != cf.sync.end()) {
      for (const auto& v : it->second) out.push_back(v);
      sources["inputs"] = "file " + cf.path + " [sync]";
    }
  }
  return out;
}

// Every header value is masked (any custom header may carry a token), and every URL's password
// and query values (issue 20 #10).
std::string shown_value(const std::string& k, const std::string& v) {
  if (k.rfind("header.", 0) == 0) {
    auto eq = v.find('=');
    return eq == std::string::npos ? v : v.substr(0, eq + 1) + mask_secret(v.substr(eq + 1));
  }
  if (is_secret_key(k)) return mask_secret(v);
  return v.find("://") != std::string::npos ? http::mask_url(v) : v;
}

// Every sync option's source: what was set says where from; everything else is a default.
void write_sources(JsonWriter& w, const CLI::App& sync_cmd,
                   const std::map<std::string, std::string>& sources) {
  w.begin_object().field("inputs", sources.count("inputs") ? sources.at("inputs") : "default");
  for (const CLI::Option* opt : sync_cmd.get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string lname = opt->get_lnames().front();
    if (lname == "help" || lname == "print-config" || lname == "config") continue;
    if (opt->get_group() == kGroupBackend || opt->get_group() == kGroupTls ||
        opt->get_group() == kGroupRetry)
      if (lname != "backend") continue;  // listed per backend instance
    auto it = sources.find(lname);
    w.field(lname, it == sources.end() ? "default" : it->second);
  }
  w.end_object();
}

void print_config(const SyncOptions& o, const ConfigFile& cf, const CLI::App& sync_cmd,
                  const std::map<std::string, std::string>& sources) {
  std::string j;
  JsonWriter w(j);
  w.begin_object().field("config_file", cf.path).key("inputs").begin_array();
  for (const auto& in : o.inputs) w.value(in);
  w.end_array()
      .field("db", display_state_location(o.db_path))
      .field("trace_name", o.map.trace_name)
      .field("workers", o.workers)
      .field("dry_run", o.dry_run)
      .field("settle_ms", o.map.settle_ms)
      .field("max_field_bytes", o.map.max_field_bytes)
      .field("max_line_bytes", o.reader.max_line_bytes)
      .field("max_memory_bytes", o.max_memory_bytes)
      .field("max_spool_bytes", o.max_spool_bytes)
      .field("drain_timeout_ms", o.drain_timeout.count())
      .field("progress_interval_ms", o.progress_interval.count())
      .field("format", o.format == ConsoleFormat::kJson ? "json" : "text")
      .field("trace_per_session", o.map.trace_per_session)
      .field("redact", o.redact)
      .field("no_content", o.no_content)
      .key("backends")
      .begin_array();
  for (const auto& b : o.backends) {
    w.begin_object().field("instance", b.instance).field("type", b.type);
    for (const auto& [k, v] : b.settings) w.field(k, shown_value(k, v));
    w.key("sources").begin_object();
    for (const auto& [k, v] : b.sources) w.field(k, v);
    w.end_object().end_object();
  }
  // Proxies, read the way the HTTP client reads them (upper case first, then lower case).
  w.end_array().key("proxy").begin_object();
  for (const auto& [upper, lower] :
       {std::pair<const char*, const char*>{"HTTPS_PROXY", "https_proxy"},
        {"HTTP_PROXY", "http_proxy"},
        {"NO_PROXY", "no_proxy"}}) {
    const char* name = env(upper).empty() ? lower : upper;
    const std::string v = env(name);
    if (v.empty()) continue;
    w.key(lower)
        .begin_object()
        .field("value", http::mask_url(v))
        .field("source", std::string("env ") + name)
        .end_object();
  }
  w.end_object().key("sources");
  write_sources(w, sync_cmd, sources);
  w.end_object();
  j += '\n';
  std::fputs(j.c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // Files chsync creates are private (state, lock, report, --output, dead letters): issue 20 #16.
  restrict_umask();
#ifdef CHSYNC_WITH_MIMALLOC
  // Request bodies and parser buffers are large and short-lived: with mimalloc's default 25 ms
  // decommit delay every batch re-faults its pages (measured: 2.4x the page faults and 1.8x the
  // CPU of the OTLP path). Keep freed memory committed; memory is still bounded by the queues.
  // The MIMALLOC_* environment variables still override these defaults.
  mi_option_set_default(mi_option_decommit_delay, 100000);
  mi_option_set_default(mi_option_segment_decommit_delay, 100000);
#endif
  // Library code logs through spdlog, routed through chsync's logger (--log-format applies to
  // every line); stdout carries only spans.
  log::install_spdlog_sink();
  std::vector<std::string> args(argv + 1, argv + argc);
  auto cli = std::make_unique<Cli>();
  if (int rc = cli->parse(args); rc >= 0) return rc;

  // Every command but sync (configured below, after its flags are layered) logs in the format
  // asked.
  if (!cli->sync_cmd->parsed() || cli->sync_status->parsed())
    log::configure(cli->effective_log_format(), log::Level::kInfo);
  try {
    if (cli->version_cmd->parsed()) return cmd_version(CHSYNC_VERSION, CHSYNC_GIT_REVISION);
    if (cli->status_cmd->parsed())
      return cmd_status(state_location(cli->status_db, cli->status_state), cli->status_json);
    if (cli->sync_status->parsed())
      return cmd_status(
          state_location(
              cli->sync_status_db.empty() ? cli->sf.db : cli->sync_status_db,
              cli->sync_status_state.empty() ? cli->sf.state_url : cli->sync_status_state),
          cli->sync_status_json || cli->sf.json);
    if (cli->hash_cmd->parsed()) return cmd_hash(cli->hash_targets);
    if (cli->bench_cmd->parsed()) {
      check_bench_flags(*cli->bench_cmd, cli->bf);
      return run_bench(build_bench_options(cli->bf));
    }
    if (cli->state_cmd->parsed())
      return cmd_state(cli->state_db.empty() ? default_db() : cli->state_db, cli->state_arg,
                       cli->state_target, cli->state_instance);
    if (cli->replay_cmd->parsed()) {
      ReplayOptions ro;
      ro.db_path = cli->replay_db.empty() ? default_db() : cli->replay_db;
      ro.endpoint = cli->rf.endpoint;
      ro.headers = cli->rf.headers;
      ro.ca_file = cli->rf.ca_file;
      ro.insecure = cli->rf.insecure;  // db_path above: --db or the default
      return cmd_replay_dead_letters(ro);
    }
    if (cli->sync_cmd->parsed()) {
      ConfigFile cf = load_default_or(cli->sf.config);
      std::map<std::string, std::string> sources;
      auto layered = layer_sync_args(args, *cli, cf, sources);
      auto second = std::make_unique<Cli>();
      if (int rc = second->parse(layered); rc >= 0) return rc;
      const auto log_format =
          second->sf.log_format == "json" ? log::Format::kJson : log::Format::kText;
      log::configure(log_format, log::Level::kInfo);  // configuration errors follow it too
      SyncOptions o = build_sync_options(second->sf, cf, sources);
      log::configure(log_format, o.quiet ? log::Level::kError
                                         : (o.verbose ? log::Level::kDebug : log::Level::kInfo));
      if (second->sf.print_config) {
        print_config(o, cf, *second->sync_cmd, sources);
        return kExitOk;
      }
      // Request bodies are assembled and gzip-compressed on the HTTP client's io threads (~4
      // CPU-s per GB of body at level 1): one per worker, so compression is not held to one core.
      const std::size_t io_threads = o.workers;
      return run_sync(o, [io_threads](const BackendSpec& spec) {
        BackendSpec s = spec;
        s.settings["io_threads"] = std::to_string(io_threads);
        return make_network_exporter(s);
      });
    }
  } catch (const ConfigError& e) {
    log::error(e.what());
    return kExitUsage;
  } catch (const StateError& e) {
    log::error(std::string("state: ") + e.what());
    return e.code() == StateError::Code::kLocked ? kExitLocked : kExitUsage;
  } catch (const std::exception& e) {
    log::error(std::string("error: ") + e.what());
    return kExitPartial;
  }
  return kExitOk;
}
