// SyncRun start-up: state, backend instances, discovery, what each instance needs, snapshots.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "app/sync/sync_run.h"
#include "pipeline/clock.h"
#include "pipeline/fnv1a.h"
#include "pipeline/log.h"
#include "stages/reader/bounded_decoder.h"

namespace chsync {
namespace {

// Stable across hosts and mount points: the bundle's project and session, not its paths.
std::uint32_t shard_of(const Bundle& b, std::uint32_t shards) {
  // FNV-1a, then a splitmix64 finish to spread the bits before the modulo.
  std::uint64_t h = fnv1a(kFnvBasis, b.project);
  h = fnv1a(h, std::string_view("\0", 1));
  h = fnv1a(h, b.session_id);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return static_cast<std::uint32_t>(h % shards);
}

}  // namespace

SyncRun::SyncRun(const SyncOptions& options, const ExporterFactory& factory)
    : opt_(options),
      t_start_(std::chrono::steady_clock::now()),
      run_start_s_(static_cast<double>(wall_clock_ms()) / 1000.0) {
  install_signal_handlers();
  reset_signal_state();
  if (opt_.backends.empty()) throw ConfigError("no backend configured (use --backend)");
  if (opt_.redact && !opt_.no_content) {
    try {
      redactor_ = std::make_unique<Redactor>(RedactOptions{opt_.redact_patterns});
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
  }
  open_state();
  build_instances(factory);
  discover_inputs();
  // Work sharing: a shared state (PostgreSQL) hands out units of work by lease.
  work_table_ = state_ && !opt_.dry_run ? state_->work() : nullptr;
  budget_.emplace(opt_.max_memory_bytes, ordered_output_ && !work_table_, instances_.size());
  plan_needs();
  load_snapshots();
  if (state_ && !opt_.dry_run)
    dead_letters_ = std::make_unique<DeadLetterWriter>(dead_letter_path(opt_.db_path));
  wire_stages();
  start_metrics();
}

void SyncRun::open_state() {
  if (opt_.db_path.empty()) return;
  const bool pg = is_pg_url(opt_.db_path);
  StateOpenOptions so;
  so.rebuild = opt_.rebuild_state;
  so.work_group = opt_.work_group;
  so.worker_id = opt_.worker_id;
  so.lease = opt_.lease;
  so.pool_connections = std::max<std::size_t>(opt_.workers, 1) + 3;
  // A database restart or failover shorter than this is ridden out (the feeder gives up on
  // claims after the same time).
  so.outage_tolerance = effective_state_outage_tolerance(opt_);
  if (opt_.dry_run) {
    so.read_only = true;
    so.take_lock = false;
    if (pg) {
      try {
        state_ = open_pg_state(opt_.db_path, so);
      } catch (const StateError& e) {
        if (e.code() != StateError::Code::kReadOnlyMissing) throw;
      }
    } else if (std::filesystem::exists(opt_.db_path)) {
      state_ = open_sqlite_state(opt_.db_path, so);
    }
  } else if (pg) {
    so.register_worker = true;
    state_ = open_pg_state(opt_.db_path, so);
  } else {
    if (opt_.rebuild_state && !opt_.quiet)
      opt_.logger.warn(
          "--rebuild-state: starting with a fresh state; every span will be sent again");
    state_ = open_sqlite_state(opt_.db_path, so);
  }
}

// A backend value given once for several backends that one of them would take but ignores under
// its own settings (--tag for otlp and langfuse: otlp sends tags only with --profile langfuse):
// the run goes on, and says once per value which backends use it and which do not and why
// (issue 23: nothing is dropped without a word). A flag a backend type does not have at all
// (--host for otlp, --rate for console) is plainly another backend's: --print-config lists it
// under not_applied, without a notice on every run.
void SyncRun::notice_values_not_applied() const {
  std::map<std::string, std::vector<std::string>> ignored;  // flag -> instances ignoring it
  std::string source;
  for (const auto& spec : opt_.backends)
    for (const auto& [flag, why] : spec.not_applied)
      if (why.find(": needs ") != std::string::npos) ignored[flag].push_back(spec.instance);
  for (const auto& [flag, by] : ignored) {
    std::vector<std::string> used, reasons;
    for (const auto& spec : opt_.backends) {
      auto it = spec.not_applied.find(flag);
      if (it == spec.not_applied.end()) {
        used.push_back(spec.instance);
        continue;
      }
      if (std::find(by.begin(), by.end(), spec.instance) == by.end()) continue;
      const auto colon = it->second.find(": ");
      source = it->second.substr(0, colon);
      reasons.push_back(spec.instance + ": " +
                        (colon == std::string::npos ? it->second : it->second.substr(colon + 2)));
    }
    const std::string from = named_source(source, flag);
    opt_.logger.write(
        log::Level::kWarn,
        fmt::format("{} applies to --backend {} only, not to {} ({}); set it per backend in "
                    "a [backends.NAME] table of the config file to say so",
                    from, fmt::join(used, ", "), fmt::join(by, ", "), fmt::join(reasons, "; ")),
        {{"event", "value_not_applied"},
         {"flag", flag},
         {"source", source},
         {"applies_to", fmt::format("{}", fmt::join(used, ","))},
         {"not_applied_to", fmt::format("{}", fmt::join(by, ","))}},
        false);
  }
}

void SyncRun::build_instances(const ExporterFactory& factory) {
  notice_values_not_applied();
  std::set<std::string> names;
  for (const auto& spec : opt_.backends) {
    auto inst = std::make_unique<Instance>();
    inst->spec = spec;
    if (inst->spec.instance.empty()) inst->spec.instance = spec.type;
    const std::string& name = inst->spec.instance;
    if (!names.insert(name).second)
      throw ConfigError("backend instance '" + name +
                        "' given twice (name instances in the config file)");
    if (spec.type == "console") {
      inst->exporter = make_console_exporter(name, opt_.format, 1);
      inst->synchronous = true;
    } else if (spec.type == "null") {
      inst->exporter = make_null_exporter(name);
      inst->synchronous = true;
    } else if (spec.type == "file") {
      auto it = spec.settings.find("output");
      if (it == spec.settings.end() || it->second.empty())
        throw ConfigError("--backend file needs --output PATH");
      if (!opt_.dry_run) inst->exporter = make_file_exporter(name, it->second);
      else inst->exporter = make_null_exporter(name);
      inst->synchronous = true;
    } else {
      if (!factory) throw ConfigError("backend '" + spec.type + "' is not available");
      if (opt_.dry_run) inst->exporter = make_null_exporter(name);
      else inst->exporter = factory(inst->spec, opt_.logger);
      if (!inst->exporter) throw ConfigError("unknown backend '" + spec.type + "'");
    }
    ordered_output_ = ordered_output_ || spec.type == "console" || spec.type == "file";
    instances_.push_back(std::move(inst));
  }
}

void SyncRun::discover_inputs() {
  // zstd windows count against --max-memory: a quarter of it, rounded down to a power of two.
  DiscoverOptions dopt = opt_.discover;
  dopt.max_decoder_window_bytes = decoder_window_budget_bytes(opt_.max_memory_bytes);
  disc_ = discover(opt_.inputs, dopt);
  for (const auto& e : disc_.errors)
    if (!opt_.quiet)
      opt_.logger.write(log::Level::kWarn, e.path + ": " + e.kind + ": " + e.message,
                        {{"event", "input_error"}, {"file", e.path}, {"error", e.message}}, false);
  if (opt_.shard_count <= 1) return;
  // Static sharding: this process keeps its share of the bundles (renumbered in order, since a
  // bundle's seq is its index).
  std::vector<Bundle> mine;
  for (auto& b : disc_.bundles) {
    if (shard_of(b, opt_.shard_count) != opt_.shard_index) {
      ++bundles_other_shards_;
      files_other_shards_ += b.files.size();
      continue;
    }
    b.seq = mine.size();
    mine.push_back(std::move(b));
  }
  disc_.bundles = std::move(mine);
}

// Which bundles each instance needs: skip files unchanged since a complete delivery.
void SyncRun::plan_needs() {
  const auto& bundles = disc_.bundles;
  any_need_.assign(bundles.size(), false);
  for (auto& inst : instances_) {
    inst->needs.assign(bundles.size(), true);
    inst->encode_ahead.assign(bundles.size(), true);
    if (!state_ || opt_.resend) continue;
    // A shared store answers in one query rather than one round trip per file.
    std::unordered_map<std::string, FileState> rows;
    if (state_->shared())
      for (auto& fs : state_->files(inst->spec.instance)) rows.emplace(fs.key, std::move(fs));
    auto lookup = [&](const std::string& key) -> std::optional<FileState> {
      if (!state_->shared()) return state_->file(inst->spec.instance, key);
      auto it = rows.find(key);
      if (it == rows.end()) return std::nullopt;
      return it->second;
    };
    for (std::size_t b = 0; b < bundles.size(); ++b) {
      bool all_same = true, any_row = false;
      for (const auto& f : bundles[b].files) {
        if (f.kind == SourceKind::kStdin) {
          all_same = false;
          continue;
        }
        auto row = lookup(f.key);
        any_row = any_row || row.has_value();
        if (!row || !row->complete || row->size != f.size || row->mtime_ms != f.mtime_ms)
          all_same = false;
      }
      inst->needs[b] = !all_same;
      inst->encode_ahead[b] = !all_same && !any_row;
    }
  }
  for (std::size_t b = 0; b < bundles.size(); ++b) {
    for (auto& inst : instances_) any_need_[b] = any_need_[b] || inst->needs[b];
    if (any_need_[b]) {
      files_updated_ += bundles[b].files.size();
      files_to_read_ += bundles[b].files.size();
      disk_bytes_to_read_ += bundles[b].total_bytes();
    } else {
      files_skipped_ += bundles[b].files.size();
    }
  }
}

// A shared store is asked per bundle instead (check_bundle), except by a dry run, which only
// reads and so takes one snapshot like the local store.
void SyncRun::load_snapshots() {
  if (!state_ || (state_->shared() && !opt_.dry_run)) return;
  const bool any_work = std::any_of(any_need_.begin(), any_need_.end(), [](bool v) { return v; });
  for (auto& inst : instances_) {
    const std::string& name = inst->spec.instance;
    inst->dedupe.set_in_flight_records(state_->load_in_flight_records(name));
    if (!opt_.resend && (any_work || !inst->dedupe.in_flight_keys().empty())) {
      // Loaded whole (8 bytes a key) while it fits its share of the budget (2 M keys at the
      // default); a larger state is asked per bundle, so memory does not grow with the state.
      const std::uint64_t max_keys = budget_->delivered_keys_each();
      if (state_->settled_fits(name, max_keys))
        inst->dedupe.set_delivered(state_->load_delivered(name));
      else inst->lookup_settled = true;
      if (inst->lookup_settled && opt_.verbose)
        opt_.logger.info(
            fmt::format("{}: delivered set over {} keys: looked up per bundle", name, max_keys));
    }
    inst->settled_in_flight = inst->lookup_settled
                                  ? state_->settled_among(name, inst->dedupe.in_flight_keys())
                                  : inst->dedupe.delivered_keys();
  }
}

}  // namespace chsync
