// chsync: Claude Code transcripts -> traces, shipped to OTLP / Langfuse / Phoenix backends.
// main() parses the command line (CLI11), applies environment and defaults, and runs a command.
// The flags of `sync` are cli/sync_flags.h, the options built from them cli/sync_options.h.
// Precedence: flags > environment > config file > defaults. Exit codes: see app/sync/sync.h and
// README.
#include <CLI/CLI.hpp>
#ifdef CHSYNC_WITH_MIMALLOC
#include <mimalloc.h>
#endif
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "app/config/backend_options.h"
#include "app/config/config.h"
#include "app/config/network.h"
#include "app/sync/sync.h"
#include "cli/bench_cli.h"
#include "cli/commands.h"
#include "cli/sync_flags.h"
#include "cli/sync_options.h"
#include "pipeline/atomic_file.h"
#include "pipeline/log.h"
#include "stages/state/state_store.h"

#ifndef CHSYNC_VERSION
#define CHSYNC_VERSION "0.0.0"
#endif
#ifndef CHSYNC_GIT_REVISION
#define CHSYNC_GIT_REVISION "unknown"
#endif

using namespace chsync;

namespace {

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
        "error (exit 2); one that only some of them take applies to those (--print-config:\n"
        "not_applied per backend), with a notice when another would take it but its settings\n"
        "ignore it (--tag without --profile langfuse). Values: DURATION 0, 500ms, 10s, 10m,\n"
        "1h; SIZE 64KiB, 4MiB; RATE 50/s (requests) or 5000spans/s.\n\n" +
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
        "Lines of the file that are not records are named FILE:LINE, counted, kept in the file\n"
        "and never sent (docs/operations.md). Exit codes: 0 all replayed; 1 rejected again or bad\n"
        "lines; 3 backend unreachable or refusing.\n"
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
    // Not in the initializer list, whatever the check says: there bench would be added to `app`
    // before the commands above, and --help lists subcommands in the order they were added.
    bench_cmd = add_bench_command(app, bf);  // NOLINT(*-prefer-member-initializer): see above
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
    std::vector<const char*> av{"chsync"};
    av.reserve(args.size() + 1);
    for (const auto& a : args) av.push_back(a.c_str());
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
      auto layered = layer_sync_args(args, *cli->sync_cmd, cli->sf, cf, sources);
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
      return run_sync(o, [io_threads](const BackendSpec& spec, const log::Logger& logger) {
        BackendSpec s = spec;
        s.settings["io_threads"] = std::to_string(io_threads);
        return make_network_exporter(s, logger);
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
