#include "app/sync/watcher.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "pipeline/log.h"

namespace chsync {

using Clock = std::chrono::steady_clock;

Watcher::Watcher(Wiring wiring)
    : w_(std::move(wiring)), last_progress_(Clock::now()), last_heartbeat_(Clock::now()) {
  thread_ = std::thread([this] { run(); });
}

Watcher::~Watcher() {
  stop(Deadline::max());
  if (thread_.joinable()) thread_.join();
}

bool Watcher::stop(Deadline deadline) noexcept {
  bool exited = false;
  {
    std::unique_lock lock(exit_mu_);
    done_ = true;
    exited_cv_.notify_all();  // ends the 50 ms wait of run() at once: it draws a last time, ends
    if (deadline == Deadline::max()) exited_cv_.wait(lock, [this] { return exited_; });
    else exited_cv_.wait_until(lock, deadline, [this] { return exited_; });
    exited = exited_;
  }
  {
    // Nothing is drawn from now on (progress() checks `closed_` under this lock), so the live
    // line can be cleared even when the thread is still busy.
    std::lock_guard lock(draw_mu_);
    closed_ = true;
    if (progress_drawn_) {
      std::fputs("\r\x1b[K", stderr);
      progress_drawn_ = false;
    }
  }
  if (!exited) return false;
  std::lock_guard lock(join_mu_);  // two stop() calls must not both join
  if (thread_.joinable()) thread_.join();
  return true;
}

void Watcher::run() {
  for (bool last = false; !last;) {
    if (w_.work_table && !done_.load()) heartbeat();
    {
      std::unique_lock lock(exit_mu_);
      last =
          exited_cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return done_.load(); });
    }
    check_stop();
    progress();  // once more after stop(): off a terminal the last line says where the run ended
  }
  std::lock_guard lock(exit_mu_);
  exited_ = true;
  exited_cv_.notify_all();
}

// Renews this run's leases; a failure is only logged: at worst the leases expire and other
// workers redo those units (deduped by span ID, repeats counted).
void Watcher::heartbeat() {
  // After a failed heartbeat (database away) try again every 500 ms rather than every lease/3:
  // the leases must be renewed as soon as the database is back, before they run out and other
  // workers take units this run is still sending.
  const auto beat = heartbeat_failed_ ? std::min<std::chrono::milliseconds>(
                                            w_.lease / 3, std::chrono::milliseconds(500))
                                      : std::chrono::milliseconds(w_.lease / 3);
  if (Clock::now() - last_heartbeat_ < beat) return;
  last_heartbeat_ = Clock::now();
  try {
    w_.work_table->heartbeat(w_.worker_progress());
    heartbeat_failed_ = false;
    if (!w_.quiet) {
      const WorkCounts c = w_.work_table->counts();
      std::size_t live = 0;
      for (const auto& wr : w_.work_table->workers()) live += wr.live ? 1 : 0;
      lease_note_ = fmt::format("  units {}/{} done, {} claimed, {} live workers", c.done,
                                c.done + c.pending + c.claimed + c.expired, c.claimed, live);
    }
  } catch (const std::exception& e) {
    if (!heartbeat_failed_) w_.logger.warn(std::string("work table heartbeat: ") + e.what());
    heartbeat_failed_ = true;
  }
}

void Watcher::check_stop() {
  StageRunner& runner = *w_.runner;
  if (received_signal() != 0 && !runner.stop_requested()) {
    if (!w_.quiet)
      w_.logger.warn(
          fmt::format("signal {}: stopping, draining in-flight requests", received_signal()));
    runner.request_stop();
    // Retry waits end now; requests on the wire get at most --drain-timeout.
    if (w_.interrupt_exporters) w_.interrupt_exporters();
  }
  if (w_.failure->failed() && !runner.stop_requested()) {
    w_.logger.error("the state cannot be written; stopping (nothing more is sent)");
    runner.request_stop();
  }
  // Nothing new is sent after a stop: every stage is asked (feeder and map workers close their
  // output queues), which also frees workers blocked on a full result queue when the dispatcher
  // itself ended early (an internal error).
  if (runner.stop_requested()) w_.stop_stages();
}

void Watcher::progress() {
  const bool tty = w_.progress_tty;
  const auto every = tty ? std::chrono::milliseconds(250) : w_.progress_interval;
  if (w_.quiet || every.count() <= 0 || Clock::now() - last_progress_ < every) return;
  {
    std::lock_guard lock(draw_mu_);
    if (closed_) return;
  }
  last_progress_ = Clock::now();
  ProgressSnapshot ps = w_.snapshot();
  ps.elapsed_s = std::chrono::duration<double>(Clock::now() - w_.start).count();
  recent_.add(ps.elapsed_s, ps.spans_sent, ps.bytes_read);
  ps.spans_per_s = recent_.spans_per_s();
  ps.bytes_per_s = recent_.bytes_per_s();
  if (ps.retries != last_retries_) last_retry_at_s_ = ps.elapsed_s;
  last_retries_ = ps.retries;
  ps.state = progress_state(
      ps.files_total > 0 && ps.files_done >= ps.files_total, w_.runner->stop_requested(),
      ps.retries > 0 && ps.elapsed_s - last_retry_at_s_ < 3, ps.spans_sent, ps.in_flight);
  std::lock_guard lock(draw_mu_);
  if (closed_) return;  // stopped while the snapshot was taken: the line stays cleared
  if (tty) {
    // Fit the terminal (asked each time, so a resize takes effect at the next redraw); one
    // column stays free so the cursor never wraps to a new line.
    const std::size_t cols = terminal_columns(2);
    const std::string body = render_progress(ps, cols > 1 ? cols - 1 : 79);
    std::string line = "\r\x1b[K" + body;
    if (!lease_note_.empty() && (cols == 0 || body.size() + lease_note_.size() < cols))
      line += lease_note_;
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    progress_drawn_ = true;
  } else {
    w_.logger.write(log::Level::kInfo, "progress: " + render_progress(ps) + lease_note_,
                    progress_fields(ps), /*text_fields=*/false);
  }
}

}  // namespace chsync
