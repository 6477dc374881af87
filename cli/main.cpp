// chsync: Claude Code transcripts -> traces, shipped to OTLP / Langfuse / Phoenix backends.
// main() parses the command line (CLI11), applies environment and defaults, and runs a command.
// Precedence: flags > environment > defaults. Exit codes: see app/sync/sync.h and README.
#include <CLI/CLI.hpp>
#ifdef CHSYNC_WITH_MIMALLOC
#include <mimalloc.h>
#endif
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "backends/console/json_writer.h"
#include "cli/bench_cli.h"
#include "cli/commands.h"
#include "cli/config.h"
#include "app/metrics/metrics.h"
#include "pipeline/log.h"
#include "app/dead_letters/dead_letters.h"
#include "app/sync/sync.h"
#include "cli/units.h"
#include "stages/mapper/mapper.h"
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
  std::fprintf(stderr, "chsync: %s\n", msg.c_str());
  std::exit(kExitUsage);
}

struct RawSyncFlags {
  std::vector<std::string> inputs;
  std::vector<std::string> files;
  std::vector<std::string> backends;
  std::string format = "text";
  bool json = false;
  std::string output;
  std::size_t workers = 0;
  std::string db;
  std::string state_url, lease = "60s", work_group = "default", worker_id, shard;
  bool dry_run = false, rebuild_state = false, resend = false;
  std::string report;
  std::string settle = "10m", max_field_bytes = "64KiB", max_line_bytes = "64MiB",
              max_memory = "256MiB", drain_timeout = "30s", progress_interval = "10s";
  bool trace_per_session = false, message_hash = false;
  std::string user_id, user_from_path;
  std::string trace_name = "claude-code", environment;
  std::vector<std::string> tags;
  bool typed_observations = false;
  std::vector<std::string> include, exclude, projects, sessions;
  std::string since, until;
  bool verbose = false, quiet = false;
  // network backends
  int compression_level = 0;  // 0: the backend's default (BENCHMARKS.md "Compression level")
  std::string endpoint, host, compression, otlp_encoding = "protobuf", profile, ca_file,
                                           client_cert, client_key, project_name;
  std::vector<std::string> headers;
  bool insecure = false;
  std::size_t batch_spans = 512, max_in_flight = 16;
  std::string config;
  bool print_config = false;
  std::string log_format = "text";
  std::string batch_bytes = "4MiB", rate, timeout, retry_initial = "1s", retry_max = "30s",
              retry_max_elapsed = "5m";
  // operations
  bool redact = false, no_content = false;
  std::vector<std::string> redact_patterns;
  std::string metrics_listen, metrics_file;
};

void add_sync_flags(CLI::App* cmd, RawSyncFlags& f) {
  cmd->add_option("inputs", f.inputs,
                  "Directories, .jsonl/.jsonl.gz/.jsonl.zst files, tar/tar.gz/tar.zst/zip "
                  "archives, or - for stdin (default: $CLAUDE_PROJECTS_DIR or ~/.claude/projects)");
  cmd->add_option("--file", f.files, "Sync one file (repeatable; as in ch sync)");
  cmd->add_option("--config", f.config,
                  "TOML config file (default $XDG_CONFIG_HOME/chsync/config.toml if present)");
  cmd->add_flag("--print-config", f.print_config,
                "Print the effective configuration (secrets masked) and exit");
  cmd->add_option("--backend,-b", f.backends,
                  "console|file|null|otlp|langfuse|langfuse-legacy|phoenix (repeatable; env "
                  "CH_SYNC_BACKEND / CHSYNC_BACKEND; default console)");
  cmd->add_option("--format", f.format, "Console format: text|json")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_flag("--json", f.json, "Same as --format json (ch sync compatible)");
  cmd->add_option("--output,-o", f.output, "Path for --backend file (JSON lines, appended)");
  cmd->add_option("--workers,-w", f.workers, "Mapper threads (default: number of cores)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--db", f.db, "State database (env CH_SYNC_DB / CHSYNC_DB; default "
                                "$XDG_STATE_HOME/chsync/state.db)");
  cmd->add_option("--state", f.state_url,
                  "Shared PostgreSQL state, postgres://... (env CHSYNC_STATE_URL); several "
                  "processes using it share the work (docs/scaleout.md)");
  cmd->add_option("--lease", f.lease,
                  "PostgreSQL work sharing: lease of a claimed unit, renewed every third of it "
                  "(default 60s)");
  cmd->add_option("--work-group", f.work_group,
                  "PostgreSQL work sharing: processes of one import share a group (default "
                  "\"default\")");
  cmd->add_option("--worker-id", f.worker_id,
                  "PostgreSQL work sharing: this worker's name in status (default HOST:PID)");
  cmd->add_option("--shard", f.shard,
                  "Static sharding K/N: only bundles whose stable hash mod N is K; '/N' takes "
                  "K from JOB_COMPLETION_INDEX (Kubernetes Indexed Job)");
  cmd->add_flag("--dry-run", f.dry_run, "Map and count; send nothing, write no state");
  cmd->add_flag("--rebuild-state", f.rebuild_state,
                "Move a corrupt/foreign state aside and start over (re-sends everything)");
  cmd->add_flag("--resend", f.resend, "Send again spans already delivered (on purpose)");
  cmd->add_option("--report", f.report, "Write the run report as JSON to this file");
  cmd->add_option("--settle", f.settle,
                  "A turn in a file modified less than this ago is held back (default 10m)");
  cmd->add_option("--max-field-bytes", f.max_field_bytes, "Truncate content fields (default 64KiB)");
  cmd->add_option("--max-line-bytes", f.max_line_bytes, "Skip longer lines (default 64MiB)");
  cmd->add_option("--max-memory", f.max_memory, "Memory cap for queues (default 256MiB)");
  cmd->add_option("--drain-timeout", f.drain_timeout, "On stop, wait this long for in-flight requests");
  cmd->add_option("--progress-interval", f.progress_interval, "Log progress this often (0: never)");
  cmd->add_flag("--trace-per-session", f.trace_per_session, "One trace per session, a span per turn");
  cmd->add_flag("--message-hash", f.message_hash, "Add the seed's message hash to metadata");
  cmd->add_option("--trace-name", f.trace_name,
                  "Name of every root span and Langfuse trace (default claude-code; the turn number "
                  "and the prompt's first words are attributes)");
  cmd->add_option("--environment", f.environment,
                  "Langfuse environment / deployment.environment.name (default: "
                  "$LANGFUSE_TRACING_ENVIRONMENT)");
  cmd->add_option("--tag", f.tags, "Langfuse trace tag, after claude-code (repeatable)");
  cmd->add_flag("--typed-observations", f.typed_observations,
                "langfuse-legacy: send agent-create/tool-create instead of span-create (Langfuse v3 "
                "servers that accept them)");
  cmd->add_option("--user-id", f.user_id, "user.id on every span");
  cmd->add_option("--user-from-path", f.user_from_path,
                  "Regex on the file path; its first capture group is the user id");
  cmd->add_option("--include", f.include, "Only paths matching this glob (repeatable)");
  cmd->add_option("--exclude", f.exclude, "Skip paths matching this glob (repeatable)");
  cmd->add_option("--project", f.projects, "Only these project folders (glob, repeatable)");
  cmd->add_option("--session", f.sessions, "Only these session ids (glob, repeatable)");
  cmd->add_option("--since", f.since, "Only turns at or after this time (RFC 3339 or YYYY-MM-DD)");
  cmd->add_option("--until", f.until, "Only turns before this time");
  cmd->add_flag("--redact", f.redact,
                "Replace secrets in content (API keys, tokens, passwords...) with [REDACTED:kind]");
  cmd->add_option("--redact-pattern", f.redact_patterns,
                  "Extra secret regex (ECMAScript; group 1 if any; repeatable; implies --redact)");
  cmd->add_flag("--no-content", f.no_content,
                "Export structure and usage only: no prompts, outputs or tool results");
  cmd->add_option("--metrics-listen", f.metrics_listen,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics during the run (loopback)");
  cmd->add_option("--metrics-file", f.metrics_file,
                  "Write a node-exporter textfile (.prom) at the end of the run");
  cmd->add_flag("-v,--verbose", f.verbose, "More log output");
  cmd->add_flag("-q,--quiet", f.quiet, "Only errors");
  cmd->add_option("--log-format", f.log_format, "Log lines on stderr: text|json")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option("--endpoint", f.endpoint, "OTLP traces URL, used as is");
  cmd->add_option("--host", f.host, "Base URL for langfuse/phoenix");
  cmd->add_option("--header", f.headers, "Extra HTTP header K=V (repeatable)");
  cmd->add_option("--compression", f.compression, "gzip|none (default gzip)");
  cmd->add_option("--compression-level", f.compression_level,
                  "gzip level 1-12 (libdeflate; default 1: fastest per core, see BENCHMARKS.md)")
      ->check(CLI::Range(1, 12));
  cmd->add_option("--otlp-encoding", f.otlp_encoding, "protobuf|json")
      ->check(CLI::IsMember({"protobuf", "json"}));
  cmd->add_option("--profile", f.profile, "generic|langfuse|phoenix (content attribute keys)");
  cmd->add_option("--project-name", f.project_name, "Phoenix project (openinference.project.name)");
  cmd->add_option("--batch-spans", f.batch_spans, "Spans per request (default 512)");
  cmd->add_option("--batch-bytes", f.batch_bytes, "Request size before compression (default 4MiB)");
  cmd->add_option("--max-in-flight", f.max_in_flight, "Concurrent requests (default 16)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--rate", f.rate, "Cap: 50/s (requests) or 5000spans/s");
  cmd->add_option("--timeout", f.timeout, "Request timeout (default 10s or OTEL_EXPORTER_OTLP_TIMEOUT)");
  cmd->add_option("--retry-initial", f.retry_initial, "First retry backoff (default 1s)");
  cmd->add_option("--retry-max", f.retry_max, "Longest backoff (default 30s)");
  cmd->add_option("--retry-max-elapsed", f.retry_max_elapsed, "Give up after (default 5m)");
  cmd->add_option("--ca-file", f.ca_file, "PEM bundle to verify the server");
  cmd->add_flag("--insecure", f.insecure, "Do not verify TLS certificates");
  cmd->add_option("--client-cert", f.client_cert, "mTLS client certificate (PEM)");
  cmd->add_option("--client-key", f.client_key, "mTLS client key (PEM)");
}

std::chrono::milliseconds dur_flag(const std::string& flag, const std::string& v) {
  std::chrono::milliseconds d{};
  if (!parse_duration(v, d))
    usage_error(fmt::format("{}: invalid duration '{}' (use 0, 500ms, 10s, 10m, 1h)", flag, v));
  return d;
}
std::uint64_t size_flag(const std::string& flag, const std::string& v) {
  std::uint64_t n = 0;
  if (!parse_size(v, n)) usage_error(fmt::format("{}: invalid size '{}' (use 64KiB, 4MiB)", flag, v));
  return n;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur.push_back(c);
    }
  }
  return out;
}

// State location when no --db/--state is given: CHSYNC_STATE_URL (PostgreSQL), then
// CHSYNC_DB / CH_SYNC_DB, then the default SQLite path.
std::string default_db() {
  std::string url = env("CHSYNC_STATE_URL");
  if (!url.empty()) return url;
  std::string db = env("CHSYNC_DB", env("CH_SYNC_DB"));
  return db.empty() ? default_state_path() : db;
}

// --db PATH and --state URL name the same thing; --state must be a PostgreSQL URL.
std::string state_location(const std::string& db, const std::string& state) {
  if (!db.empty() && !state.empty()) usage_error("--db and --state: give one of them");
  if (!state.empty()) {
    if (!is_pg_url(state))
      usage_error(fmt::format("--state: expected a postgres:// or postgresql:// URL, got '{}' "
                              "(use --db PATH for a local SQLite state)",
                              state));
    return state;
  }
  return db.empty() ? default_db() : db;
}

// "K/N" (0 <= K < N), or "/N" with K from JOB_COMPLETION_INDEX.
std::pair<std::uint32_t, std::uint32_t> parse_shard(const std::string& s) {
  auto bad = [&](const std::string& why) -> std::pair<std::uint32_t, std::uint32_t> {
    usage_error(fmt::format("--shard '{}': {} (expected K/N with 0 <= K < N, or /N with "
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

SyncOptions build_sync_options(RawSyncFlags& f, const ConfigFile& cf,
                               const std::set<std::string>& explicit_opts) {
  SyncOptions o;
  o.inputs = f.inputs;
  for (auto& p : f.files) o.inputs.push_back(p);
  if (o.inputs.empty())
    o.inputs.push_back(env("CLAUDE_PROJECTS_DIR", home_dir() + "/.claude/projects"));
  if (f.backends.empty()) {
    for (const auto& b : split_list(env("CH_SYNC_BACKEND", "console"))) f.backends.push_back(b);
  }
  // Settings derived from flags. Those the user set explicitly (flag or environment) override a
  // named instance's config; the rest are defaults that the instance config may replace.
  std::map<std::string, std::pair<std::string, bool>> fs;  // key -> (value, explicit)
  auto put = [&](const std::string& key, const std::string& value, const char* flag) {
    fs[key] = {value, explicit_opts.count(flag) > 0};
  };
  if (!f.output.empty()) put("path", f.output, "output");
  if (!f.endpoint.empty()) put("endpoint", f.endpoint, "endpoint");
  if (!f.host.empty()) put("host", f.host, "host");
  if (!f.compression.empty()) put("compression", f.compression, "compression");
  if (f.compression_level != 0)
    put("compression_level", std::to_string(f.compression_level), "compression-level");
  put("encoding", f.otlp_encoding, "otlp-encoding");
  if (!f.profile.empty()) put("profile", f.profile, "profile");
  if (!f.project_name.empty()) put("project_name", f.project_name, "project-name");
  put("batch_spans", std::to_string(f.batch_spans), "batch-spans");
  put("batch_bytes", std::to_string(size_flag("--batch-bytes", f.batch_bytes)), "batch-bytes");
  put("max_in_flight", std::to_string(f.max_in_flight), "max-in-flight");
  if (!f.rate.empty()) {
    Rate r;
    if (!parse_rate(f.rate, r))
      usage_error(fmt::format("--rate: invalid rate '{}' (use 50/s or 5000spans/s)", f.rate));
    put("rate", std::to_string(r.per_second), "rate");
    put("rate_unit", r.spans ? "spans" : "requests", "rate");
  }
  if (!f.timeout.empty())
    put("timeout_ms", std::to_string(dur_flag("--timeout", f.timeout).count()), "timeout");
  put("retry_initial_ms", std::to_string(dur_flag("--retry-initial", f.retry_initial).count()),
      "retry-initial");
  put("retry_max_ms", std::to_string(dur_flag("--retry-max", f.retry_max).count()), "retry-max");
  put("retry_max_elapsed_ms",
      std::to_string(dur_flag("--retry-max-elapsed", f.retry_max_elapsed).count()),
      "retry-max-elapsed");
  if (!f.ca_file.empty()) put("ca_file", f.ca_file, "ca-file");
  if (f.insecure) put("insecure", "1", "insecure");
  if (!f.client_cert.empty()) put("client_cert", f.client_cert, "client-cert");
  if (!f.client_key.empty()) put("client_key", f.client_key, "client-key");
  if (f.environment.empty()) f.environment = env("LANGFUSE_TRACING_ENVIRONMENT");
  if (!f.environment.empty()) {
    // Langfuse's rule for environment names; anything else it rejects at ingestion.
    const bool ok = f.environment.size() <= 40 && f.environment.rfind("langfuse", 0) != 0 &&
                    std::all_of(f.environment.begin(), f.environment.end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
                    });
    if (!ok)
      usage_error(fmt::format("--environment '{}': use at most 40 lowercase letters, digits, '-' or '_', "
                              "not starting with 'langfuse'", f.environment));
    put("environment", f.environment, "environment");
  }
  for (std::size_t i = 0; i < f.tags.size(); ++i) {
    if (f.tags[i].empty()) usage_error("--tag: must not be empty");
    put("tag." + std::to_string(i), f.tags[i], "tag");
  }
  if (f.typed_observations) put("typed_observations", "1", "typed-observations");
  for (std::size_t i = 0; i < f.headers.size(); ++i) {
    if (f.headers[i].find('=') == std::string::npos)
      usage_error(fmt::format("--header: expected K=V, got '{}'", f.headers[i]));
    put("header." + std::to_string(i), f.headers[i], "header");
  }

  static const std::vector<std::string> kKnown = {"console", "file", "null", "otlp",
                                                  "langfuse", "langfuse-legacy", "phoenix"};
  for (const auto& b : f.backends) {
    BackendSpec spec;
    spec.instance = b;
    auto inst = cf.backends.find(b);
    if (inst != cf.backends.end()) {
      spec.type = inst->second.at("type");
      if (std::find(kKnown.begin(), kKnown.end(), spec.type) == kKnown.end())
        usage_error(fmt::format("config {}: backends.{}.type: unknown backend type '{}'", cf.path,
                                b, spec.type));
      for (const auto& [k, v] : fs) spec.settings[k] = v.first;
      for (const auto& [k, v] : inst->second) {
        if (k == "type") continue;
        auto it = fs.find(k);
        if (it != fs.end() && it->second.second) continue;  // an explicit flag wins
        std::string value = v;
        if (k == "batch_bytes") value = std::to_string(size_flag("backends." + b + ".batch_bytes", v));
        if (k == "timeout" || k == "retry_initial" || k == "retry_max" || k == "retry_max_elapsed") {
          spec.settings[k + "_ms"] = std::to_string(dur_flag("backends." + b + "." + k, v).count());
          continue;
        }
        if (k == "output") {
          spec.settings["path"] = v;
          continue;
        }
        if (k == "otlp_encoding") {
          spec.settings["encoding"] = v;
          continue;
        }
        spec.settings[k] = value;
      }
    } else {
      if (std::find(kKnown.begin(), kKnown.end(), b) == kKnown.end())
        usage_error(fmt::format("--backend: unknown backend '{}' (one of console, file, null, "
                                "otlp, langfuse, langfuse-legacy, phoenix, or an instance name "
                                "from the config file)", b));
      spec.type = b;
      for (const auto& [k, v] : fs) spec.settings[k] = v.first;
    }
    // Phoenix's OTLP receiver takes protobuf only (it answers JSON with 415).
    if (spec.type == "phoenix" && spec.settings["encoding"] == "json")
      usage_error(fmt::format("--backend {}: phoenix accepts only --otlp-encoding protobuf", b));
    o.backends.push_back(std::move(spec));
  }
  o.format = (f.json || f.format == "json") ? ConsoleFormat::kJson : ConsoleFormat::kText;
  o.workers = f.workers ? f.workers : std::max(1u, std::thread::hardware_concurrency());
  o.db_path = state_location(f.db, f.state_url);
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
  o.reader.chunk_bytes = std::min<std::size_t>(4u << 20, std::max<std::size_t>(o.reader.max_line_bytes, 64 * 1024));
  o.drain_timeout = dur_flag("--drain-timeout", f.drain_timeout);
  o.progress_interval = dur_flag("--progress-interval", f.progress_interval);
  o.map.trace_per_session = f.trace_per_session;
  if (f.trace_name.empty()) usage_error("--trace-name: must not be empty");
  o.map.trace_name = f.trace_name;
  o.map.message_hash = f.message_hash;
  o.redact = f.redact || !f.redact_patterns.empty();
  o.redact_patterns = f.redact_patterns;
  o.no_content = f.no_content;
  for (const auto& p : f.redact_patterns) {
    try {
      std::regex re(p);
    } catch (const std::regex_error& e) {
      usage_error(fmt::format("--redact-pattern '{}': invalid regex: {}", p, e.what()));
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

struct Cli {
  CLI::App app{"chsync: turn Claude Code transcripts into traces and ship them to OTLP, "
               "Langfuse and Phoenix backends, exactly once in effect.\n\n"
               "Exit codes: 0 all delivered; 1 finished with dead letters, bad lines or "
               "unreadable files; 2 usage/config/state error; 3 backend unreachable, retries "
               "exhausted or auth refused; 4 another run holds the state lock; 130/143 stopped "
               "by SIGINT/SIGTERM after draining.",
               "chsync"};
  RawSyncFlags sf;
  CLI::App* sync_cmd = nullptr;
  CLI::App* sync_status = nullptr;
  bool sync_status_json = false;
  std::string status_db, status_state;
  bool status_json = false;
  CLI::App* status_cmd = nullptr;
  std::vector<std::string> hash_targets;
  CLI::App* hash_cmd = nullptr;
  std::string replay_db;
  RawSyncFlags rf;
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
        "table of the config file; precedence: flags > environment > file > defaults.");
    add_sync_flags(sync_cmd, sf);
    sync_status = sync_cmd->add_subcommand("status", "Show the state (as in ch sync status)");
    sync_status->add_flag("--json", sync_status_json, "JSON output");

    status_cmd = app.add_subcommand("status", "Show files, offsets, spans delivered, errors");
    status_cmd->add_option("--db", status_db, "State database");
    status_cmd->add_option("--state", status_state,
                           "PostgreSQL state URL (env CHSYNC_STATE_URL): also lists workers and "
                           "work units");
    status_cmd->add_flag("--json", status_json, "JSON output");
    status_cmd->footer("Example:\n  chsync status --db /var/lib/chsync/state.db --json");

    hash_cmd = app.add_subcommand("hash", "Print the seed's message hash of FILE:LINE (one line each)");
    hash_cmd->add_option("target", hash_targets, "FILE:LINE (1-based), one or more")->required();
    hash_cmd->footer("Example:\n  chsync hash ~/.claude/projects/-home-me-proj/3f2a….jsonl:12");

    replay_cmd = app.add_subcommand("replay-dead-letters", "Send the dead-lettered requests again");
    replay_cmd->add_option("--db", replay_db, "State database");
    replay_cmd->add_option("--endpoint", rf.endpoint, "Override the recorded endpoint");
    replay_cmd->add_option("--header", rf.headers, "Extra HTTP header K=V");
    replay_cmd->add_option("--ca-file", rf.ca_file, "PEM bundle to verify the server");
    replay_cmd->add_flag("--insecure", rf.insecure, "Do not verify TLS certificates");
    replay_cmd->footer("Example:\n  chsync replay-dead-letters --db state.db --endpoint http://otel:4318/v1/traces");

    state_cmd = app.add_subcommand("state", "Housekeeping: vacuum, backup DEST, forget PREFIX");
    state_cmd->add_option("action", state_arg, "vacuum | backup | forget")
        ->required()
        ->check(CLI::IsMember({"vacuum", "backup", "forget"}));
    state_cmd->add_option("target", state_target, "backup: destination file; forget: path prefix");
    state_cmd->add_option("--db", state_db, "State database");
    state_cmd->add_option("--backend", state_instance, "Backend instance (forget; default all)");
    state_cmd->footer("Examples:\n  chsync state backup /backups/chsync.db\n"
                      "  chsync state forget /data/old-archive.tar.zst");

    version_cmd = app.add_subcommand("version", "Print version and build information");
    bench_cmd = add_bench_command(app, bf);
  }

  int parse(const std::vector<std::string>& args) {
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
      std::fprintf(stderr, "chsync: %s\n", e.what());
      return kExitUsage;
    }
    return -1;
  }
};

std::string env_name(const std::string& lname) {
  std::string n = "CHSYNC_";
  for (char c : lname) n.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
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

// Rebuilds the argument list with values from the environment and the config file for every
// sync option the command line did not set (flags > environment > file > defaults).
std::vector<std::string> layer_sync_args(const std::vector<std::string>& args, Cli& first,
                                         const ConfigFile& cf, std::set<std::string>& explicit_opts) {
  auto pos = std::find(args.begin(), args.end(), "sync");
  std::vector<std::string> extra;
  for (const CLI::Option* opt : first.sync_cmd->get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string lname = opt->get_lnames().front();
    if (lname == "help" || lname == "config" || lname == "print-config") continue;
    if (opt->count() > 0) {
      explicit_opts.insert(lname);
      continue;
    }
    const bool is_flag = opt->get_expected_min() == 0;
    std::vector<std::string> values;
    const char* ev = std::getenv(env_name(lname).c_str());
    if (ev && *ev) {
      values = opt->get_expected_max() > 1 ? split_commas(ev) : std::vector<std::string>{ev};
      explicit_opts.insert(lname);
    } else if (auto it = cf.sync.find(lname); it != cf.sync.end()) {
      values = it->second;
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
    if (auto it = cf.sync.find("inputs"); it != cf.sync.end())
      for (const auto& v : it->second) out.push_back(v);
  }
  return out;
}

void print_config(const SyncOptions& o, const ConfigFile& cf) {
  std::string j = "{\"config_file\":";
  append_json_string(j, cf.path);
  j += ",\"inputs\":[";
  for (std::size_t i = 0; i < o.inputs.size(); ++i) {
    if (i) j += ",";
    append_json_string(j, o.inputs[i]);
  }
  j += "],\"db\":";
  append_json_string(j, display_state_location(o.db_path));
  j += ",\"trace_name\":";
  append_json_string(j, o.map.trace_name);
  j += fmt::format(",\"workers\":{},\"dry_run\":{},\"settle_ms\":{},\"max_field_bytes\":{},"
                   "\"max_line_bytes\":{},\"max_memory_bytes\":{},\"drain_timeout_ms\":{},"
                   "\"format\":\"{}\",\"trace_per_session\":{},\"backends\":[",
                   o.workers, o.dry_run, o.map.settle_ms, o.map.max_field_bytes,
                   o.reader.max_line_bytes, o.max_memory_bytes, o.drain_timeout.count(),
                   o.format == ConsoleFormat::kJson ? "json" : "text", o.map.trace_per_session);
  for (std::size_t i = 0; i < o.backends.size(); ++i) {
    const auto& b = o.backends[i];
    if (i) j += ",";
    j += "{\"instance\":";
    append_json_string(j, b.instance);
    j += ",\"type\":";
    append_json_string(j, b.type);
    for (const auto& [k, v] : b.settings) {
      j += ",";
      append_json_string(j, k);
      j += ":";
      std::string shown = v;
      if (k.rfind("header.", 0) == 0) {
        auto eq = v.find('=');
        if (eq != std::string::npos && is_secret_key(v.substr(0, eq)))
          shown = v.substr(0, eq + 1) + mask_secret(v.substr(eq + 1));
      } else if (is_secret_key(k)) {
        shown = mask_secret(v);
      }
      append_json_string(j, shown);
    }
    j += "}";
  }
  j += "]}\n";
  std::fputs(j.c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef CHSYNC_WITH_MIMALLOC
  // Request bodies and parser buffers are large and short-lived: with mimalloc's default 25 ms
  // decommit delay every batch re-faults its pages (measured: 2.4x the page faults and 1.8x the
  // CPU of the OTLP path). Keep freed memory committed; memory is still bounded by the queues.
  // The MIMALLOC_* environment variables still override these defaults.
  mi_option_set_default(mi_option_decommit_delay, 100000);
  mi_option_set_default(mi_option_segment_decommit_delay, 100000);
#endif
  // Library code logs through spdlog; stdout carries only spans (design Contracts).
  spdlog::set_default_logger(spdlog::stderr_logger_mt("chsync"));
  spdlog::set_pattern("chsync: %v");
  std::vector<std::string> args(argv + 1, argv + argc);
  auto cli = std::make_unique<Cli>();
  if (int rc = cli->parse(args); rc >= 0) return rc;

  try {
    if (cli->version_cmd->parsed()) return cmd_version(CHSYNC_VERSION, CHSYNC_GIT_REVISION);
    if (cli->status_cmd->parsed())
      return cmd_status(state_location(cli->status_db, cli->status_state), cli->status_json);
    if (cli->sync_status->parsed())
      return cmd_status(state_location(cli->sf.db, cli->sf.state_url),
                        cli->sync_status_json || cli->sf.json);
    if (cli->hash_cmd->parsed()) return cmd_hash(cli->hash_targets);
    if (cli->bench_cmd->parsed()) return run_bench(build_bench_options(cli->bf));
    if (cli->state_cmd->parsed())
      return cmd_state(cli->state_db.empty() ? default_db() : cli->state_db, cli->state_arg,
                       cli->state_target, cli->state_instance);
    if (cli->replay_cmd->parsed()) {
      ReplayOptions ro;
      ro.db_path = cli->replay_db.empty() ? default_db() : cli->replay_db;
      ro.endpoint = cli->rf.endpoint;
      ro.headers = cli->rf.headers;
      ro.ca_file = cli->rf.ca_file;
      ro.insecure = cli->rf.insecure;
      return cmd_replay_dead_letters(ro);
    }
    if (cli->sync_cmd->parsed()) {
      ConfigFile cf = load_default_or(cli->sf.config);
      std::set<std::string> explicit_opts;
      auto layered = layer_sync_args(args, *cli, cf, explicit_opts);
      auto second = std::make_unique<Cli>();
      if (int rc = second->parse(layered); rc >= 0) return rc;
      SyncOptions o = build_sync_options(second->sf, cf, explicit_opts);
      log::configure(second->sf.log_format == "json" ? log::Format::kJson : log::Format::kText,
                     o.quiet ? log::Level::kError
                             : (o.verbose ? log::Level::kDebug : log::Level::kInfo));
      if (second->sf.print_config) {
        print_config(o, cf);
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
    std::fprintf(stderr, "chsync: %s\n", e.what());
    return kExitUsage;
  } catch (const StateError& e) {
    std::fprintf(stderr, "chsync: state: %s\n", e.what());
    return e.code() == StateError::Code::kLocked ? kExitLocked : kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chsync: error: %s\n", e.what());
    return kExitPartial;
  }
  return kExitOk;
}
