// SyncRun end of run: totals, exit code, the JSON report, the metrics textfile, the summary.
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <filesystem>
#include <cstdio>

#include "app/dead_letters/dead_letters.h"
#include "app/sync/sync_run.h"
#include "pipeline/atomic_file.h"
#include "pipeline/clock.h"
#include "pipeline/json_escape.h"
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
void append_counts(std::string& j, const std::map<std::string, std::uint64_t>& counts,
                   std::uint64_t total) {
  j += "{";
  for (auto& [k, v] : counts) {
    append_json_string(j, k);  // kinds and pattern names: escaped like every string (issue 20 #15)
    j += fmt::format(":{},", v);
  }
  j += fmt::format("\"total\":{}}}", total);
}

// Whole or not at all, 0600, through a fresh temporary file (pipeline/atomic_file.h): never a
// predictable "<path>.tmp" that a planted symlink could redirect.
void write_whole(const std::string& path, const std::string& text) {
  std::string err;
  if (!replace_file(path, text, 0600, err)) log::error("--report: " + err);
}

}  // namespace

SyncRun::Totals SyncRun::totals() const {
  Totals t;
  for (auto& inst : instances_) {
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
      t.backend_errors.push_back(fmt::format("backend {}: {} spans not delivered (no outcome; the next run "
                                             "sends them again): {}",
                                             inst->spec.instance, c.failed,
                                             c.last_failure.empty() ? "unknown" : c.last_failure));
    // Retries after an unknown outcome (a reset or timeout once the request was written) may
    // have reached the backend: they are possible repeats, counted like those of a crash.
    t.repeated += st.spans_maybe_repeated;
    t.bytes_wire += st.bytes_wire;
    t.bytes_raw += st.bytes_raw;
    for (auto& [k, v] : st.retries) t.retries[k] += v;
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
    log::warn(fmt::format("the backend rejected {} spans; they are not resent (the dead-letter file holds "
                          "their requests, see replay-dead-letters)",
                          t.rejected));
  if (state_failure_.failed()) {
    log::error(state_failure_.message() +
               " — spans whose outcome was not recorded are sent again by the next run");
    code = kExitPartial;
  }
  // No silent success (design, round two): a span left without an outcome means the backend did
  // not take it: exit 3 (unless the state failed, which is exit 1 above).
  for (const auto& e : t.backend_errors) log::error(e);  // also with --quiet: cron mails it
  if (!t.backend_errors.empty() && !state_failure_.failed()) code = kExitBackend;
  // The shared database stayed unreachable (longer than the outage tolerance): exit 3 like an
  // unreachable backend, whichever part of the run noticed first (docs/scaleout.md).
  if (any_fatal || state_failure_.unreachable()) code = kExitBackend;
  const int sig = received_signal();
  if (sig == SIGINT) code = kExitSigint;
  if (sig == SIGTERM) code = kExitSigterm;
  const std::string first_error = runner_.first_error();
  if (!first_error.empty()) {
    log::error("internal error: " + first_error);
    if (code == kExitOk) code = kExitPartial;
  }
  return code;
}

void SyncRun::write_report(const Totals& t, int code, double secs) const {
  std::string j = "{\"schema\":\"chsync.report/1\"";
  auto kv = [&](const char* k, std::uint64_t v) { j += fmt::format(",\"{}\":{}", k, v); };
  kv("files_scanned", disc_.files);
  kv("files_updated", files_updated_);
  kv("files_skipped", files_skipped_);
  if (opt_.shard_count > 1) {
    j += fmt::format(",\"shard\":\"{}/{}\"", opt_.shard_index, opt_.shard_count);
    kv("bundles_other_shards", bundles_other_shards_);
    kv("files_other_shards", files_other_shards_);
  }
  if (lease_) {
    const std::string& rid = work_table_->run_id();
    j += ",\"worker_id\":";
    append_json_string(j, rid.substr(0, rid.rfind('#')));
    j += ",\"run_id\":";
    append_json_string(j, rid);
    const LeaseUnits::Counts uc = lease_->counts();
    kv("units_claimed", uc.claimed);
    kv("units_done", uc.done);
    kv("units_taken_over", uc.taken_over);
    kv("units_lost", uc.lost);
    kv("spans_fenced", t.fenced);
  }
  kv("spans_synced", t.spans_synced);
  kv("spans_repeated", t.repeated);
  kv("spans_failed", t.failed);
  kv("spans_rejected", t.rejected);
  kv("turns_held", t.map.turns_held);
  kv("requests", t.requests);
  std::uint64_t rsum = 0;
  for (auto& [k, v] : t.retries) rsum += v;
  j += ",\"retries\":";
  append_counts(j, t.retries, rsum);
  kv("dead_letters", t.dead);
  if (redactor_) {
    j += ",\"redactions\":";
    append_counts(j, redactor_->counts(), redactor_->total());
  }
  j += ",\"bad_lines\":";
  append_counts(j, t.bad_lines, t.bad_total);
  j += ",\"errors\":[";
  bool first = true;
  auto add_error = [&](const std::string& s) {
    if (!first) j += ",";
    first = false;
    append_json_string(j, s);
  };
  for (const auto& e : disc_.errors) add_error(e.path + ": " + e.kind + ": " + e.message);
  for (const auto& e : t.file_errors) add_error(e);
  for (const auto& e : t.backend_errors) add_error(e);
  j += "]";
  kv("bytes_read", t.bytes_read);
  kv("bytes_sent", t.bytes_wire);
  kv("bytes_encoded", t.bytes_raw);
  kv("duration_ms", static_cast<std::uint64_t>(secs * 1000));
  j += fmt::format(",\"spans_mapped\":{},\"generations\":{},\"tool_spans\":{},\"agents\":{},"
                   "\"agents_unlinked\":{},\"events\":{},\"turns\":{}",
                   t.map.spans, t.map.generations, t.map.tool_spans, t.map.agents,
                   t.map.agents_unlinked, t.map.events, t.map.turns);
  j += fmt::format(",\"stages\":{{\"work_queue\":{{\"items\":{},\"bytes\":{},\"blocked_ms\":{}}},"
                   "\"result_queue\":{{\"items\":{},\"bytes\":{},\"blocked_ms\":{}}}",
                   work_->counters().pushed_items.load(), work_->counters().pushed_bytes.load(),
                   work_->counters().push_blocked_ns.load() / 1000000,
                   results_->counters().pushed_items.load(),
                   results_->counters().pushed_bytes.load(),
                   results_->counters().push_blocked_ns.load() / 1000000);
  for (auto& inst : instances_) {
    auto st = inst->exporter->stats();
    j += ',';
    append_json_string(j, "sender." + inst->spec.instance);  // a user-given name (issue 20 #15)
    j += fmt::format(":{{\"items\":{},\"bytes\":{},\"blocked_ms\":{}}}", inst->ledger->counts().delivered,
                     st.bytes_wire, st.time_blocked_ms);
  }
  j += "}";
  j += fmt::format(",\"throughput\":{{\"mb_per_s\":{:.2f},\"spans_per_s\":{:.1f}}}",
                   static_cast<double>(t.bytes_read) / 1e6 / std::max(secs, 1e-6),
                   static_cast<double>(t.spans_synced) / std::max(secs, 1e-6));
  j += fmt::format(",\"peak_rss_kb\":{},\"cpu_seconds\":{:.3f},\"exit_code\":{},\"dry_run\":{}}}\n",
                   peak_rss_kb(), cpu_seconds(), code, opt_.dry_run ? "true" : "false");
  write_whole(opt_.report_path, j);
}

void SyncRun::write_metrics_file(int code, double secs) const {
  const std::vector<MetricSample> last = {
      {"chsync_last_run_exit_code", "", static_cast<double>(code)},
      {"chsync_last_run_timestamp_seconds", "", static_cast<double>(wall_clock_ms()) / 1000.0},
      {"chsync_last_run_duration_seconds", "", secs}};
  std::string err;
  if (!write_metrics_textfile(opt_.metrics_file, metrics_.render(last), err))
    log::error("--metrics-file: " + err);
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
  for (auto& inst : instances_) {
    const ExporterStats st = inst->exporter->stats();
    const DeliveryCounts c = inst->ledger->counts();
    BackendSummary b;
    b.instance = inst->spec.instance;
    b.type = inst->spec.type;
    b.spans_sent = c.delivered;
    b.dead = c.dead;
    b.failed = c.failed;
    b.rejected = st.spans_rejected;
    for (auto& [k, v] : st.retries) b.retries += v;
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
  log_summary(sum);
}

}  // namespace chsync
