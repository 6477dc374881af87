// Watcher: the sync's housekeeping thread. Every 50 ms it turns a SIGINT/SIGTERM or a state
// failure into a stop of the run (and closes the work and result queues, so nothing new is sent
// and no worker stays blocked), renews this run's leases (lease mode, every lease/3; every 500 ms
// after a failed heartbeat), and draws progress: a live line on a terminal (fitted to its width,
// asked at every redraw), a log line every --progress-interval otherwise (typed fields in JSON).
// Consumes: the signal flag, StateFailure, the run's stop flag and the counters behind progress.
// Produces: stop requests (stop_stages: every stage's stop with a deadline already passed, which
// only asks; interrupt_exporters on a signal), lease renewals, progress lines.
// Owns: its thread and the live line (cleared by stop()).
// Thread: its own; the callbacks it is given run there.
// Stop: stop(deadline) ends the thread's 50 ms wait at once (it then checks and draws a last
// time) and joins it by the deadline, then clears the live line (nothing is drawn after it, even
// by a thread still busy); the run calls it with its drain deadline after the pipeline threads
// were joined, so the last progress line is drawn while the exporters drain. False when the
// thread has not returned by the deadline (it is inside a heartbeat or a progress snapshot; a
// deadline already passed only asks): the thread ends on its own once that call returns, and
// the destructor joins it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "app/sync/progress.h"
#include "pipeline/runtime.h"
#include "stages/delivery/delivery_ledger.h"
#include "stages/state/work_table.h"

namespace chsync {

class Watcher {
 public:
  struct Wiring {
    bool quiet = false;
    log::Logger logger;         // progress lines (off a terminal), stop and heartbeat trouble
    bool progress_tty = false;  // a live line (stderr is a terminal not shared with output)
    std::chrono::milliseconds progress_interval{10000};
    std::chrono::steady_clock::time_point start;
    std::function<ProgressSnapshot()> snapshot;  // elapsed_s is filled in here
    StageRunner* runner = nullptr;
    StateFailure* failure = nullptr;
    // Called (every 50 ms) once the run's stop was requested: asks every stage to stop.
    std::function<void()> stop_stages;
    // On the first stop signal: end the exporters' retry waits at once (Exporter::interrupt()).
    std::function<void()> interrupt_exporters;
    // Lease mode only.
    WorkTable* work_table = nullptr;
    std::chrono::milliseconds lease{60000};
    std::function<WorkerProgress()> worker_progress;
  };
  explicit Watcher(Wiring wiring);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  bool stop(Deadline deadline) noexcept;

 private:
  void run();
  void heartbeat();
  void check_stop();
  void progress();

  Wiring w_;
  std::atomic<bool> done_{false};  // set under exit_mu_ (run() waits on it)
  std::mutex exit_mu_;
  std::condition_variable exited_cv_;  // done_ set, or run() returned
  bool exited_ = false;                // run() returned (under exit_mu_)
  std::mutex join_mu_;
  std::mutex draw_mu_;           // the live line: drawn by run(), cleared by stop()
  bool closed_ = false;          // stop() cleared the line: nothing more is drawn (draw_mu_)
  bool progress_drawn_ = false;  // (draw_mu_)
  std::chrono::steady_clock::time_point last_progress_, last_heartbeat_;
  bool heartbeat_failed_ = false;
  std::string lease_note_;  // " | units ... workers ..." from the heartbeat
  RecentRate recent_;       // spans/s and bytes/s over the last few seconds
  std::uint64_t last_retries_ = 0;
  double last_retry_at_s_ = -1e9;
  std::thread thread_;  // last: started once everything above is set
};

}  // namespace chsync
