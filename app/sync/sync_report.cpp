// SyncRun end of run: totals, exit code, the JSON report, the metrics textfile, the summary.
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "app/dead_letters/dead_letters.h"
#include "app/sync/sync_run.h"
#include "pipeline/atomic_file.h"
#include "pipeline/clock.h"
#include "pipeline/json_writer.h"
#include "pipeline/log.h"

namespace chsync {
namespace {

// This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: resource usage is kept
// across execve, so a run started by a large parent (a test harness, a Python wrapper) would
// report the parent's peak.
std::uint64_t peak_rss_kb() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return 0;
  char line[256];
  std::uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %" SCNu64 " kB", &kb) == 1) break;
  std::fclose(f);
  return kb;
}

double cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// {"k":v,...,"total":N} for a map of counts.
void write_counts(JsonWriter& w, const std::map<std::string, std::uint64_t>& counts,
                  std::uint64_t total) {
  w.begin_object();
  // Kinds and pattern names: escaped like every string (issue 20 #15).
  for (const auto& [k, v] : counts) w.field(k, v);
  w.field("total", total).end_object();
}

// {"items":N,"bytes":N,"blocked_ms":N}: one stage's queue (or sender) in the report.
void write_stage(JsonWriter& w, std::uint64_t items, std::uint64_t bytes,
                 std::uint64_t blocked_ms) {
  w.begin_object()
      .field("items", items)
      .field("bytes", bytes)
      .field("blocked_ms", blocked_ms)
      .end_object();
}

// Whole or not at all, 0600, through a fresh temporary file (pipeline/atomic_file.h): never a
// predictable "<path>.tmp" that a planted symlink could redirect.
void write_whole(const std::string& path, const std::string& text, const log::Logger& logger) {
  std::string err;
  if (!replace_file(path, text, 0600, err)) logger.error("--report: " + err);
}

}  // namespace

SyncRun::Totals SyncRun::totals() const {
  Totals t;
  for (const auto& inst : instances_) {
    const auto st = inst->exporter->stats();
    const DeliveryCounts c = inst->ledger->counts();
    t.spans_synced += c.delivered;
    t.dead += c.dead;
    t.repeated += c.repeated;
    t.failed += c.failed;
    t.fenced += c.fenced;
    t.requests += st.requests;
    t.rejected += st.spans_rejected;
    // No silent success: spans left without an outcome name their backend and last error.
    if (c.failed > 0)
      t.backend_errors.push_back(fmt::format(
          "backend {}: {} spans not delivered (no outcome; the next run "
          "sends them again): {}",
          inst->spec.instance, c.failed, c.last_failure.empty() ? "unknown" : c.last_failure));
    // Retries after an unknown outcome (a reset or timeout once the request was written) may
    // have reached the backend: they are possible repeats, counted like those of a crash.
    t.repeated += st.spans_maybe_repeated;
    t.bytes_wire += st.bytes_wire;
    t.bytes_raw += st.bytes_raw;
    for (const auto& [k, v] : st.retries) t.retries[k] += v;
  }
  t.bytes_read = workers_->bytes_read();
  t.bad_lines = problems_->bad_lines_by_kind();
  for (auto& [k, v] : t.bad_lines) t.bad_total += v;
  t.file_errors = problems_->file_errors();
  t.map = dispatcher_->totals();
  return t;
}

int SyncRun::exit_code(const Totals& t, bool any_fatal) const {
  const std::uint64_t file_error_count = t.file_errors.size() + disc_.errors.size();
  int code = kExitOk;
  if (t.bad_total > 0 || t.dead > 0 || file_error_count > 0 || t.rejected > 0) code = kExitPartial;
  if (t.rejected > 0)
    opt_.logger.warn(fmt::format(
        "the backend rejected {} spans; they are not resent (the dead-letter file holds "
        "their requests, see replay-dead-letters)",
        t.rejected));
  if (state_failure_.failed()) {
    opt_.logger.error(state_failure_.message() +
                      " — spans whose outcome was not recorded are sent again by the next run");
    code = kExitPartial;
  }
  // No silent success (design, round two): a span left without an outcome means the backend did
  // not take it: exit 3 (unless the state failed, which is exit 1 above).
  for (const auto& e : t.backend_errors) opt_.logger.error(e);  // also with --quiet: cron mails it
  if (!t.backend_errors.empty() && !state_failure_.failed()) code = kExitBackend;
  // The shared database stayed unreachable (longer than the outage tolerance): exit 3 like an
  // unreachable backend, whichever part of the run noticed first (docs/scaleout.md).
  if (state_failure_.unreachable())
    opt_.logger.error(fmt::format(
        "state: the shared database stayed unreachable for longer than "
        "--state-outage-tolerance ({} ms); stopping with exit 3 — a restarted worker or the next "
        "run sends the rest (docs/scaleout.md)",
        effective_state_outage_tolerance(opt_).count()));
  if (any_fatal || state_failure_.unreachable()) code = kExitBackend;
  const int sig = received_signal();
  if (sig == SIGINT) code = kExitSigint;
  if (sig == SIGTERM) code = kExitSigterm;
  const std::string first_error = runner_.first_error();
  if (!first_error.empty()) {
    opt_.logger.error("internal error: " + first_error);
    if (code == kExitOk) code = kExitPartial;
  }
  return code;
}

void SyncRun::write_report(const Totals& t, int code, double secs) const {
  std::string j;
  JsonWriter w(j);
  w.begin_object()
      .field("schema", "chsync.report/1")
      .field("files_scanned", disc_.files)
      .field("files_updated", files_updated_)
      .field("files_skipped", files_skipped_);
  if (opt_.shard_count > 1) {
    w.field("shard", fmt::format("{}/{}", opt_.shard_index, opt_.shard_count))
        .field("bundles_other_shards", bundles_other_shards_)
        .field("files_other_shards", files_other_shards_);
  }
  if (lease_) {
    const std::string& rid = work_table_->run_id();
    const LeaseUnits::Counts uc = lease_->counts();
    w.field("worker_id", rid.substr(0, rid.rfind('#')))
        .field("run_id", rid)
        .field("units_claimed", uc.claimed)
        .field("units_done", uc.done)
        .field("units_taken_over", uc.taken_over)
        .field("units_lost", uc.lost)
        .field("spans_fenced", t.fenced);
  }
  w.field("spans_synced", t.spans_synced)
      .field("spans_repeated", t.repeated)
      .field("spans_failed", t.failed)
      .field("spans_rejected", t.rejected)
      .field("turns_held", t.map.turns_held)
      .field("requests", t.requests);
  std::uint64_t rsum = 0;
  for (const auto& [k, v] : t.retries) rsum += v;
  write_counts(w.key("retries"), t.retries, rsum);
  w.field("dead_letters", t.dead);
  if (redactor_) write_counts(w.key("redactions"), redactor_->counts(), redactor_->total());
  write_counts(w.key("bad_lines"), t.bad_lines, t.bad_total);
  w.key("errors").begin_array();
  for (const auto& e : disc_.errors) w.value(e.path + ": " + e.kind + ": " + e.message);
  for (const auto& e : t.file_errors) w.value(e);
  for (const auto& e : t.backend_errors) w.value(e);
  w.end_array()
      .field("bytes_read", t.bytes_read)
      .field("bytes_sent", t.bytes_wire)
      .field("bytes_encoded", t.bytes_raw)
      .field("duration_ms", static_cast<std::uint64_t>(secs * 1000))
      .field("spans_mapped", t.map.spans)
      .field("generations", t.map.generations)
      .field("tool_spans", t.map.tool_spans)
      .field("agents", t.map.agents)
      .field("agents_unlinked", t.map.agents_unlinked)
      .field("events", t.map.events)
      .field("turns", t.map.turns);
  w.key("stages").begin_object();
  const auto& wq = work_->counters();
  const auto& rq = results_->counters();
  write_stage(w.key("work_queue"), wq.pushed_items.load(), wq.pushed_bytes.load(),
              wq.push_blocked_ns.load() / 1000000);
  write_stage(w.key("result_queue"), rq.pushed_items.load(), rq.pushed_bytes.load(),
              rq.push_blocked_ns.load() / 1000000);
  for (const auto& inst : instances_) {
    const auto st = inst->exporter->stats();
    // A user-given name, escaped (issue 20 #15).
    write_stage(w.key("sender." + inst->spec.instance), inst->ledger->counts().delivered,
                st.bytes_wire, st.time_blocked_ms);
  }
  w.end_object();
  w.key("throughput")
      .begin_object()
      .key("mb_per_s")
      .fixed(static_cast<double>(t.bytes_read) / 1e6 / std::max(secs, 1e-6), 2)
      .key("spans_per_s")
      .fixed(static_cast<double>(t.spans_synced) / std::max(secs, 1e-6), 1)
      .end_object();
  w.field("peak_rss_kb", peak_rss_kb())
      .key("cpu_seconds")
      .fixed(cpu_seconds(), 3)
      .field("exit_code", code)
      .field("dry_run", opt_.dry_run)
      .end_object();
  j += '\n';
  write_whole(opt_.report_path, j, opt_.logger);
}

void SyncRun::write_metrics_file(int code, double secs) const {
  const std::vector<MetricSample> last = {
      {"chsync_last_run_exit_code", "", static_cast<double>(code)},
      {"chsync_last_run_timestamp_seconds", "", static_cast<double>(wall_clock_ms()) / 1000.0},
      {"chsync_last_run_duration_seconds", "", secs}};
  std::string err;
  if (!write_metrics_textfile(opt_.metrics_file, metrics_.render(last), err))
    opt_.logger.error("--metrics-file: " + err);
}

void SyncRun::print_summary(const Totals& t, double secs) const {
  RunSummary sum;
  sum.dry_run = opt_.dry_run;
  sum.files_scanned = disc_.files;
  sum.files_updated = files_updated_;
  sum.files_skipped = files_skipped_;
  sum.spans_sent = t.spans_synced;
  sum.spans_deduped = instances_.empty() ? 0 : instances_[0]->dedupe.deduped();
  sum.turns_held = t.map.turns_held;
  sum.dead = t.dead;
  sum.bad_lines = t.bad_total;
  sum.bytes_read = t.bytes_read;
  sum.spans_mapped = t.map.spans;
  sum.seconds = secs;
  if (t.dead > 0 && state_) sum.dead_letter_path = dead_letter_path(opt_.db_path);
  for (const auto& inst : instances_) {
    const ExporterStats st = inst->exporter->stats();
    const DeliveryCounts c = inst->ledger->counts();
    BackendSummary b;
    b.instance = inst->spec.instance;
    b.type = inst->spec.type;
    b.spans_sent = c.delivered;
    b.dead = c.dead;
    b.failed = c.failed;
    b.rejected = st.spans_rejected;
    for (const auto& [k, v] : st.retries) b.retries += v;
    b.requests = st.requests;
    b.fatal = inst->exporter->fatal();
    if (b.fatal) b.fatal_reason = inst->exporter->fatal_reason();
    b.last_error = st.last_error;
    sum.backends.push_back(std::move(b));
  }
  HintInputs hi;
  hi.inputs = opt_.inputs;
  hi.files_scanned = disc_.files;
  hi.empty_files = disc_.empty_files;
  hi.spans_mapped = t.map.spans;
  hi.bad_lines = t.bad_total;
  hi.turns_held = t.map.turns_held;
  hi.settle_ms = static_cast<std::uint64_t>(opt_.map.settle_ms);
  for (const auto& in : opt_.inputs) {  // a file given by name that discover does not read
    std::error_code ec;
    const auto ends = [&](std::string_view suf) {
      return in.size() >= suf.size() && in.compare(in.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (std::filesystem::is_regular_file(in, ec) && !ends(".jsonl") && !ends(".jsonl.gz") &&
        !ends(".jsonl.zst") && !is_archive_path(in))
      hi.ignored_inputs.push_back(in);
  }
  sum.hints = run_hints(hi);
  log_summary(sum, opt_.logger);
}

}  // namespace chsync
