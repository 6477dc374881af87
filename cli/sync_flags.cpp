// The flags of `chsync sync` (see sync_flags.h).
#include "cli/sync_flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <utility>

#include "app/config/backend_options.h"
#include "app/config/option_help.h"
#include "pipeline/text.h"

namespace chsync {

namespace {

const char* backend_option_group(const std::string& flag) {
  if (flag == "ca-file" || flag == "insecure" || flag == "client-cert" || flag == "client-key")
    return kGroupTls;
  if (flag.rfind("retry-", 0) == 0 || flag == "timeout") return kGroupRetry;
  return kGroupBackend;
}

// The backend options are not written here: they are derived from the declarations in
// app/config/backend_registry.cpp (type, default, environment, applicable backends), their help
// lines by app/config/option_help.h.
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

}  // namespace

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
  so(cmd->add_option("--state-outage-tolerance", f.state_outage_tolerance,
                     "How long the workers wait out an unreachable database (restart, failover) "
                     "before they stop with exit 3; default max(--lease, 10s)"))
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

namespace {

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

}  // namespace

// Rebuilds the argument list with values from the environment and the config file for every
// sync option the command line did not set (flags > environment > file > defaults), and records
// where each set option came from: "flag --x", "env CHSYNC_X", "file PATH [sync]".
std::vector<std::string> layer_sync_args(const std::vector<std::string>& args,
                                         const CLI::App& sync_cmd, const RawSyncFlags& given,
                                         const ConfigFile& cf,
                                         std::map<std::string, std::string>& sources) {
  check_sync_keys(sync_cmd, cf);
  auto pos = std::find(args.begin(), args.end(), "sync");
  std::vector<std::string> extra;
  for (const CLI::Option* opt : sync_cmd.get_options()) {
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
  if (given.inputs.empty() && given.files.empty()) {
    if (auto it = cf.sync.find("inputs"); it != cf.sync.end()) {
      for (const auto& v : it->second) out.push_back(v);
      sources["inputs"] = "file " + cf.path + " [sync]";
    }
  }
  return out;
}

}  // namespace chsync
