// Raw `chsync sync` flags -> SyncOptions, and --print-config (see sync_options.h).
#include "cli/sync_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "app/config/backend_options.h"
#include "app/config/units.h"
#include "app/metrics/metrics.h"
#include "backends/http/settings_check.h"
#include "pipeline/json_writer.h"
#include "pipeline/log.h"
#include "pipeline/text.h"
#include "stages/redact/redact.h"
#include "stages/state/state_store.h"

namespace chsync {

std::string env(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

// A throw, not std::exit: main() catches ConfigError, logs it and returns kExitUsage, so the
// stack unwinds (std::exit is MT-Unsafe in glibc and skips every destructor on the way).
[[noreturn]] void usage_error(const std::string& msg) { throw ConfigError(msg); }

std::string default_db(std::string* source) {
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

std::string state_location(const std::string& db, const std::string& state, std::string* source) {
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

namespace {

std::string home_dir() { return env("HOME", "/root"); }

// Names a sync option in error messages after where its value came from: "--settle",
// "CHSYNC_SETTLE" or "config PATH:LINE: sync.settle". Holds the sources and the config file
// build_sync_options was given (both outlive it), and sees the sources it adds.
class OptionNamer {
 public:
  OptionNamer(const std::map<std::string, std::string>& sources, const ConfigFile& config)
      : sources_(&sources), config_(&config) {}

  std::string operator()(const std::string& flag) const {
    const std::string lname = flag.rfind("--", 0) == 0 ? flag.substr(2) : flag;
    auto it = sources_->find(lname);
    if (it == sources_->end() || it->second.rfind("flag", 0) == 0) return flag;
    if (it->second.rfind("env ", 0) == 0) return it->second.substr(4);
    std::string where = "config " + config_->path;
    auto line = config_->lines.find("sync." + lname);
    if (line != config_->lines.end()) where += ":" + std::to_string(line->second);
    return where + ": sync." + lname;
  }

  // The duration or size value `v` of `flag`; a bad one is a usage error naming its source.
  std::chrono::milliseconds duration(const std::string& flag, const std::string& v) const {
    std::chrono::milliseconds d{};
    if (!parse_duration(v, d))
      usage_error(
          fmt::format("{}: invalid duration '{}' (use 0, 500ms, 10s, 10m, 1h)", (*this)(flag), v));
    return d;
  }
  std::uint64_t size(const std::string& flag, const std::string& v) const {
    std::uint64_t n = 0;
    if (!parse_size(v, n))
      usage_error(fmt::format("{}: invalid size '{}' (use 64KiB, 4MiB)", (*this)(flag), v));
    return n;
  }

 private:
  const std::map<std::string, std::string>* sources_;
  const ConfigFile* config_;
};

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
  w.begin_object().field("inputs", sources.contains("inputs") ? sources.at("inputs") : "default");
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

}  // namespace

SyncOptions build_sync_options(RawSyncFlags& f, const ConfigFile& cf,
                               std::map<std::string, std::string>& sources) {
  SyncOptions o;
  const OptionNamer named(sources, cf);
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
    if (!console && sources.contains(flag))
      usage_error(fmt::format("{} does not apply to --backend {}; --{} is for --backend console",
                              named(std::string("--") + flag), fmt::join(f.backends, ", "), flag));
  o.workers = f.workers ? f.workers : std::max(1u, std::thread::hardware_concurrency());
  std::string db_source;
  o.db_path = state_location(f.db, f.state_url, &db_source);
  if (f.db.empty() && f.state_url.empty()) sources["db"] = db_source;
  o.lease = named.duration("--lease", f.lease);
  if (o.lease < std::chrono::milliseconds(500)) usage_error("--lease: must be at least 500ms");
  if (!f.state_outage_tolerance.empty()) {
    o.state_outage_tolerance = named.duration("--state-outage-tolerance", f.state_outage_tolerance);
    if (o.state_outage_tolerance < std::chrono::seconds(1))
      usage_error(named("--state-outage-tolerance") + ": must be at least 1s");
  }
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
  o.map.settle_ms = named.duration("--settle", f.settle).count();
  o.map.max_field_bytes = named.size("--max-field-bytes", f.max_field_bytes);
  if (o.map.max_field_bytes < 64) usage_error("--max-field-bytes: must be at least 64");
  o.reader.max_line_bytes = named.size("--max-line-bytes", f.max_line_bytes);
  o.max_memory_bytes = named.size("--max-memory", f.max_memory);
  o.max_spool_bytes = named.size("--max-spool", f.max_spool);
  o.reader.chunk_bytes = std::min<std::size_t>(
      4u << 20, std::max<std::size_t>(o.reader.max_line_bytes, std::size_t{64} * 1024));
  o.drain_timeout = named.duration("--drain-timeout", f.drain_timeout);
  o.progress_interval = named.duration("--progress-interval", f.progress_interval);
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
      .field("lease_ms", o.lease.count())
      .field("state_outage_tolerance_ms", effective_state_outage_tolerance(o).count())
      .key("backends")
      .begin_array();
  for (const auto& b : o.backends) {
    w.begin_object().field("instance", b.instance).field("type", b.type);
    for (const auto& [k, v] : b.settings) w.field(k, shown_value(k, v));
    w.key("sources").begin_object();
    for (const auto& [k, v] : b.sources) w.field(k, v);
    // Values given for several backends that this one does not take (flag -> source: why).
    w.end_object().key("not_applied").begin_object();
    for (const auto& [k, v] : b.not_applied) w.field(k, v);
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

}  // namespace chsync
