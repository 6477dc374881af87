// SyncRun: wiring the stages, running the threads, finishing the state.
#include "app/sync/sync_run.h"

#include <fmt/format.h>
#include <unistd.h>

#include <csignal>

#include "pipeline/clock.h"
#include "pipeline/log.h"
#include "stages/reader/bounded_decoder.h"

namespace chsync {

void SyncRun::wire_stages() {
  const auto& bundles = disc_.bundles;
  const bool lease_mode = work_table_ != nullptr;
  problems_ = std::make_unique<InputProblems>(opt_.quiet, opt_.max_bad_line_messages, opt_.logger);
  outcomes_ = std::make_unique<BundleOutcomes>(bundles.size());
  work_ = std::make_unique<BoundedQueue<WorkItem>>(budget_->work_queue_bytes());
  results_ = std::make_unique<BoundedQueue<BundleResult>>(budget_->result_queue_bytes());
  if (lease_mode)
    lease_ = std::make_unique<LeaseUnits>(*work_table_, bundles, any_need_, opt_.logger);
  auto stop_requested = [this] { return runner_.stop_requested(); };

  Dispatcher::Wiring dw;
  for (auto& inst : instances_) {
    DeliveryLedger::Wiring lw;
    lw.instance = inst->spec.instance;
    lw.state = state_.get();
    lw.dry_run = opt_.dry_run;
    lw.bundles = &bundles;
    lw.outcomes = outcomes_.get();
    lw.dedupe = &inst->dedupe;
    lw.failure = &state_failure_;
    if (dead_letters_)
      lw.dead_letter = [dl = dead_letters_.get(), name = lw.instance](
                           const Ack& ack, const std::vector<std::uint64_t>& keys) {
        dl->write(name, ack, keys);
      };
    if (lease_) {
      lw.on_bundle_final = [l = lease_.get()](std::size_t b, bool failed, bool fenced) {
        l->bundle_finalized(b, failed, fenced);
      };
      lw.fences = [l = lease_.get()](const std::vector<SpanRef>& refs) {
        return l->fences_of(refs);
      };
    }
    inst->ledger = std::make_unique<DeliveryLedger>(std::move(lw));
    inst->ledger->count_recovered_at_start(inst->settled_in_flight);
    std::vector<std::uint64_t>().swap(inst->settled_in_flight);
    inst->ledger->attach(*inst->exporter, inst->synchronous);
    dw.routes.push_back(Dispatcher::Route{inst->spec.instance, inst->exporter.get(), &inst->dedupe,
                                          inst->ledger.get(), &inst->needs});
  }

  Feeder::Wiring fw;
  fw.bundles = &bundles;
  fw.any_need = &any_need_;
  fw.discover_errors = &disc_.errors;
  fw.work = work_.get();
  fw.budget = &*budget_;
  fw.problems = problems_.get();
  fw.stop_requested = stop_requested;
  fw.lease = lease_.get();
  fw.lease_options = LeaseFeedOptions{opt_.workers, opt_.lease, opt_.verbose,
                                      effective_state_outage_tolerance(opt_)};
  fw.instances_needing = [this](std::size_t b) {
    std::uint64_t n = 0;
    for (auto& inst : instances_) n += inst->needs[b] ? 1 : 0;
    return n;
  };
  fw.failure = &state_failure_;
  fw.max_spool_bytes = opt_.max_spool_bytes;
  fw.zstd_window_bytes = decoder_window_budget_bytes(opt_.max_memory_bytes);
  feeder_ = std::make_unique<Feeder>(std::move(fw));

  MapWorkers::Wiring mw;
  mw.bundles = &bundles;
  mw.map = opt_.map;
  mw.map.redactor = redactor_.get();
  mw.map.no_content = opt_.no_content;
  if (mw.map.now_ms == 0) mw.map.now_ms = wall_clock_ms();
  mw.reader = opt_.reader;
  mw.reader.max_window_bytes = decoder_window_budget_bytes(opt_.max_memory_bytes);
  mw.spool = &feeder_->spool();
  mw.quiet = opt_.quiet;
  mw.work = work_.get();
  mw.results = results_.get();
  mw.problems = problems_.get();
  mw.stop_requested = stop_requested;
  const bool any_lookup =
      std::any_of(instances_.begin(), instances_.end(), [](auto& i) { return i->lookup_settled; });
  if (!opt_.resend && (lease_mode || any_lookup))
    mw.check = [this](std::size_t b, const std::vector<std::uint64_t>& keys) {
      return check_bundle(b, keys);
    };
  mw.workers = std::max<std::size_t>(opt_.workers, 1);
  for (auto& inst : instances_)  // the dispatcher's route order
    mw.encode.push_back({inst->exporter.get(), &inst->encode_ahead});
  workers_ = std::make_unique<MapWorkers>(std::move(mw));

  dw.bundles = &bundles;
  dw.any_need = &any_need_;
  dw.results = results_.get();
  dw.outcomes = outcomes_.get();
  dw.budget = &*budget_;
  dw.ordered = ordered_output_;
  dw.lease = lease_.get();
  dw.drain = &drain_;
  dw.stop_requested = stop_requested;
  dw.request_stop = [this] { runner_.request_stop(); };
  dispatcher_ = std::make_unique<Dispatcher>(std::move(dw));
}

// Per instance that needs the bundle, the state's view of its span keys. Lease mode: another
// worker may have delivered some of these since this run started (a resume copy in another
// bundle, or a crashed worker's unit). A local state too large to load whole is asked the same
// way (lookup_settled).
std::vector<BundleCheck> SyncRun::check_bundle(std::size_t bundle,
                                               const std::vector<std::uint64_t>& keys) {
  std::vector<BundleCheck> checks(instances_.size());
  for (std::size_t ii = 0; ii < instances_.size(); ++ii) {
    const Instance& inst = *instances_[ii];
    if (!inst.needs[bundle]) continue;
    try {
      if (work_table_) checks[ii] = state_->check_bundle(inst.spec.instance, keys);
      else if (inst.lookup_settled)
        checks[ii].settled = state_->settled_among(inst.spec.instance, keys);
    } catch (const std::exception& e) {
      state_failure_.fail("state: ", e);
    }
  }
  return checks;
}

void SyncRun::start_metrics() {
  // Sampled on scrape from the stages' counters (docs/operations.md).
  metrics_.set_sampler([this](std::vector<MetricSample>& out) { sample_metrics(out); });
  if (opt_.metrics_listen.empty()) return;
  try {
    metrics_server_ = std::make_unique<MetricsServer>(metrics_, opt_.metrics_listen);
  } catch (const std::runtime_error& e) {
    throw ConfigError(e.what());
  }
  if (!opt_.quiet)
    opt_.logger.info(fmt::format("metrics at http://127.0.0.1:{}/metrics",
                                 static_cast<unsigned>(metrics_server_->port())));
}

void SyncRun::start_threads() {
  feeder_->start(runner_);
  workers_->start(runner_);
  dispatcher_->start(runner_);

  Watcher::Wiring ww;
  ww.quiet = opt_.quiet;
  ww.logger = opt_.logger;
  // A live line only when stderr is a terminal and stdout does not share it (console output).
  ww.progress_tty = ::isatty(2) && !(::isatty(1) && ordered_output_);
  ww.progress_interval = opt_.progress_interval;
  ww.start = t_start_;
  ww.snapshot = [this] { return progress_snapshot(); };
  ww.runner = &runner_;
  ww.failure = &state_failure_;
  ww.stop_stages = [this] { ask_stages_to_stop(); };
  ww.interrupt_exporters = [this] {
    for (auto& inst : instances_) inst->exporter->interrupt();
  };
  ww.work_table = work_table_;
  ww.lease = opt_.lease;
  ww.worker_progress = [this] { return worker_progress(); };
  watcher_ = std::make_unique<Watcher>(std::move(ww));
}

ProgressSnapshot SyncRun::progress_snapshot() const {
  ProgressSnapshot ps;
  ps.files_total = files_to_read_;
  ps.bytes_total = disk_bytes_to_read_;
  ps.files_done = dispatcher_->files_done();
  ps.bytes_done = dispatcher_->disk_bytes_done();
  ps.bytes_read = workers_->bytes_read();
  for (const auto& inst : instances_) {
    auto st = inst->exporter->stats();
    ps.spans_sent += st.spans_delivered;
    ps.dead += st.spans_dead;
    ps.in_flight += st.in_flight;
    for (auto& [k, v] : st.retries) ps.retries += v;
    if (!st.last_error.empty()) ps.last_error = inst->spec.instance + ": " + st.last_error;
  }
  return ps;
}

WorkerProgress SyncRun::worker_progress() const {
  WorkerProgress p;
  if (lease_) p.units_done = lease_->counts().done;
  for (const auto& inst : instances_) p.spans_sent += inst->ledger->counts().delivered;
  p.bytes_read = workers_->bytes_read();
  return p;
}

void SyncRun::sample_metrics(std::vector<MetricSample>& out) const {
  auto add = [&](const char* n, std::string l, double v) { out.push_back({n, std::move(l), v}); };
  auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  add("chsync_run_start_timestamp_seconds", "", run_start_s_);
  add("chsync_files_total", "", d(files_updated_));
  add("chsync_files_done", "", d(dispatcher_->files_done()));
  add("chsync_bytes_read_total", "", d(workers_->bytes_read()));
  for (auto& [k, v] : problems_->bad_lines_by_kind())
    add("chsync_bad_lines_total", metric_label("kind", k), d(v));
  if (redactor_)
    for (auto& [k, v] : redactor_->counts())
      add("chsync_redactions_total", metric_label("kind", k), d(v));
  add("chsync_queue_bytes", metric_label("queue", "work"), d(work_->queued_bytes()));
  add("chsync_queue_bytes", metric_label("queue", "result"), d(results_->queued_bytes()));
  add("chsync_stage_blocked_seconds_total", metric_label("stage", "feeder"),
      d(work_->counters().push_blocked_ns.load()) / 1e9);
  add("chsync_stage_blocked_seconds_total", metric_label("stage", "mapper"),
      d(results_->counters().push_blocked_ns.load()) / 1e9);
  for (const auto& inst : instances_) {
    const std::string b = metric_label("backend", inst->spec.instance);
    const DeliveryCounts c = inst->ledger->counts();
    add("chsync_spans_synced_total", b, d(c.delivered));
    add("chsync_dead_letters_total", b, d(c.dead));
    const ExporterStats st = inst->exporter->stats();
    add("chsync_bytes_sent_total", b, d(st.bytes_wire));
    add("chsync_in_flight_requests", b, d(st.in_flight));
    for (const auto& [code, n] : st.status_counts)
      add("chsync_requests_total", b + "," + metric_label("status", std::to_string(code)), d(n));
    for (const auto& [cause, n] : st.retries)
      add("chsync_retries_total", b + "," + metric_label("cause", cause), d(n));
    add("chsync_stage_blocked_seconds_total",
        metric_label("stage", "sender." + inst->spec.instance), d(st.time_blocked_ms) / 1e3);
  }
}

// A stop asked while the stages run (signal, state failure, fatal exporter, a stage's error; the
// watcher calls this every 50 ms once the run's stop flag is set): the feeder and the map workers
// close their output queues, so nothing new is read or mapped and no thread stays blocked on a
// full queue. The dispatcher and the senders see the run's stop flag and send nothing new. The
// deadline has passed: nothing waits here; stop_stages() finishes the stop after the joins.
void SyncRun::ask_stages_to_stop() noexcept {
  drain_.arm();  // the stop starts the run's one drain deadline (unless the input's end did)
  const Deadline now = std::chrono::steady_clock::now();
  if (feeder_) feeder_->stop(now);
  else if (work_) work_->close();
  if (workers_) workers_->stop(now);
  else if (results_) results_->close();
}

// Every pipeline thread has returned (input exhausted, or a stop was asked): each stage is
// stopped in pipeline order by the run's one drain deadline. The dispatcher stops the exporters
// without a sender of their own (senders stopped theirs by the same deadline when their queue
// ended), then the ledgers record what finished.
void SyncRun::stop_stages(Deadline drain_deadline) noexcept {
  feeder_->stop(drain_deadline);
  workers_->stop(drain_deadline);
  dispatcher_->stop(drain_deadline);
  // The last progress line was drawn while the exporters drained. The watcher's loop ends at
  // once; one still inside a heartbeat at the deadline is left to it (its line is cleared now,
  // nothing more is drawn, the destructor joins it).
  watcher_->stop(drain_deadline);
}

int SyncRun::run() {
  start_threads();
  runner_.join_all();
  // Fixed by the stop request when there was one (a stop does not wait --drain-timeout again
  // after a slow feeder, map worker or sender has returned), else now.
  stop_stages(drain_.arm());

  bool any_fatal = false;
  for (auto& inst : instances_)
    if (inst->exporter->fatal()) any_fatal = true;
  finish_state(any_fatal);

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
  const Totals t = totals();
  const int code = exit_code(t, any_fatal);
  if (!opt_.report_path.empty()) write_report(t, code, secs);
  run_finished_ = true;
  if (!opt_.metrics_file.empty()) write_metrics_file(code, secs);
  // Only after the report is on disk: a kill before this point leaves the records, and the next
  // run counts those repeats again (over-counting is safe, losing a count is not).
  if (state_ && !opt_.dry_run) carry_over_in_flight();
  if (!opt_.quiet) print_summary(t, secs);
  return code;
}

void SyncRun::finish_state(bool any_fatal) {
  if (state_ && !opt_.dry_run && !state_failure_.failed()) {
    try {
      state_->flush();
    } catch (const std::exception& e) {
      state_failure_.fail("state: ", e);
    }
  }
  if (!work_table_) return;
  // Units still claimed here go back to pending; the worker row says how the run ended.
  const bool ok = !any_fatal && !state_failure_.failed() && received_signal() == 0 &&
                  runner_.first_error().empty();
  try {
    work_table_->finish(worker_progress(), ok);
  } catch (const std::exception& e) {
    opt_.logger.warn(std::string("work table: ") + e.what() +
                     " (this run's leases expire by themselves)");
  }
}

// Earlier records are accounted for (counted in spans_repeated) once their spans were
// delivered; the others carry over to the next run in one record (written before the old ones
// are removed, so a kill in between only over-counts).
void SyncRun::carry_over_in_flight() {
  for (auto& inst : instances_) {
    if (inst->dedupe.in_flight_keys().empty()) continue;
    const std::vector<std::uint64_t> carry = inst->ledger->carry_over();
    try {
      if (!carry.empty()) state_->begin_request(inst->spec.instance, carry);
      state_->clear_in_flight(inst->spec.instance);
    } catch (const std::exception& e) {
      opt_.logger.error(std::string("state: ") + e.what());
    }
  }
  try {
    state_->flush();
  } catch (const std::exception& e) {
    opt_.logger.error(std::string("state: ") + e.what());
  }
}

// Stops and joins every thread and the exporters before any member goes away, so no member's
// lifetime depends on where it is declared.
void SyncRun::shutdown() noexcept {
  if (metrics_server_) metrics_server_->stop(std::chrono::steady_clock::now());
  metrics_.clear_sampler();
  runner_.request_stop();
  ask_stages_to_stop();
  runner_.join_all();
  if (watcher_) watcher_->stop(Deadline::max());
  for (auto& inst : instances_) inst->exporter.reset();
}

SyncRun::~SyncRun() { shutdown(); }

int run_sync(const SyncOptions& options, const ExporterFactory& factory) {
  SyncRun run(options, factory);
  return run.run();
}

}  // namespace chsync
