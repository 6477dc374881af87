// `chsync status`: what the state holds per backend instance and project (text or JSON).
// What the state says is gathered once (StatusView); the text and the JSON rendering read it.
#include "app/status/status.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "app/dead_letters/dead_letters.h"
#include "pipeline/json_writer.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {

struct ProjectTotals {
  std::uint64_t files = 0, bytes = 0, spans = 0, errors = 0;
  std::int64_t last_sync_ms = 0;
};

struct InstanceView {
  std::string name;
  StatusTotals totals;
  std::map<std::string, ProjectTotals> projects;
};

struct StatusView {
  std::string path;
  std::vector<InstanceView> instances;
  // Shared state with work sharing: the work group's workers and units.
  std::optional<WorkCounts> work;
  std::vector<WorkerRow> workers;
  std::uint64_t dead_letter_requests = 0;
  std::uint64_t dead_letter_bad_lines = 0;  // lines that are not records (replay names them)
  std::string dead_letter_file;
};

StatusView gather(StateStore& st, const std::string& db_path) {
  StatusView v;
  v.path = st.path();
  for (const auto& inst : st.instances()) {
    InstanceView iv;
    iv.name = inst;
    iv.totals = st.totals(inst);
    for (const auto& f : st.files(inst)) {
      ProjectTotals& p = iv.projects[f.project];
      ++p.files;
      p.bytes += f.committed_offset;
      p.spans += f.spans;
      p.errors += f.errors;
      p.last_sync_ms = std::max(p.last_sync_ms, f.last_sync_ms);
    }
    v.instances.push_back(std::move(iv));
  }
  if (WorkTable* wt = st.work()) {
    v.work = wt->counts();
    v.workers = wt->workers();
  }
  v.dead_letter_file = dead_letter_path(db_path);
  const DeadLetterFile dl = read_dead_letter_file(v.dead_letter_file);
  v.dead_letter_requests = dl.letters.size();
  v.dead_letter_bad_lines = dl.bad.size();
  return v;
}

std::string rfc3339_or(std::int64_t ms, const char* none) {
  return ms ? format_rfc3339_ms(ms) : std::string(none);
}

std::string render_json(const StatusView& v) {
  std::string out;
  JsonWriter w(out);
  w.begin_object()
      .field("schema", "chsync.status/1")
      .field("db", v.path)  // names are escaped (issue 20 #15)
      .field("exists", true)
      .key("backends")
      .begin_array();
  for (const InstanceView& iv : v.instances) {
    const StatusTotals& t = iv.totals;
    // Every dead span is one the backend refused (4xx, partialSuccess, per-event 4xx):
    // spans_rejected says so in the words of the report (design "No silent success").
    w.begin_object()
        .field("backend", iv.name)
        .field("files", t.files)
        .field("bytes", t.bytes)
        .field("spans_synced", t.spans_delivered)
        .field("spans_dead", t.spans_dead)
        .field("spans_rejected", t.spans_dead)
        .field("spans_in_flight", t.spans_in_flight)
        .field("file_errors", t.file_errors)
        .field("last_sync", rfc3339_or(t.last_sync_ms, ""))
        .key("projects")
        .begin_array();
    for (const auto& [name, p] : iv.projects)
      w.begin_object()
          .field("project", name)
          .field("files", p.files)
          .field("bytes", p.bytes)
          .field("spans_synced", p.spans)
          .field("errors", p.errors)
          .field("last_sync", rfc3339_or(p.last_sync_ms, ""))
          .end_object();
    w.end_array().end_object();
  }
  w.end_array();
  if (v.work) {
    w.key("workers").begin_array();
    for (const auto& x : v.workers)
      w.begin_object()
          .field("worker_id", x.worker_id)
          .field("run_id", x.run_id)
          .field("host", x.host)
          .field("pid", x.pid)
          .field("status", x.status)
          .field("started_at", x.started_at)
          .field("heartbeat_at", x.heartbeat_at)
          .field("units_claimed", x.units_claimed)
          .field("units_done", x.units_done)
          .field("spans_sent", x.spans_sent)
          .field("bytes_read", x.bytes_read)
          .end_object();
    const WorkCounts& c = *v.work;
    w.end_array()
        .key("work")
        .begin_object()
        .field("pending", c.pending)
        .field("claimed", c.claimed)
        .field("expired", c.expired)
        .field("done", c.done)
        .end_object();
  }
  w.field("dead_letter_requests", v.dead_letter_requests)
      .field("dead_letter_bad_lines", v.dead_letter_bad_lines)
      .end_object();
  out += '\n';
  return out;
}

std::string render_text(const StatusView& v) {
  std::string out = fmt::format("Database: {}\n", v.path);
  for (const InstanceView& iv : v.instances) {
    const StatusTotals& t = iv.totals;
    out += fmt::format(
        "Backend {}: {} files, {:.1f} MB committed, {} spans sent, {} dead, "
        "{} in flight at an interrupted run, {} bad lines, last sync {}\n",
        iv.name, t.files, static_cast<double>(t.bytes) / 1e6, t.spans_delivered, t.spans_dead,
        t.spans_in_flight, t.file_errors, rfc3339_or(t.last_sync_ms, "never"));
    for (const auto& [name, p] : iv.projects)
      out +=
          fmt::format("  {:<50} {:>6} files {:>10.1f} MB {:>9} spans {:>5} errors  {}\n",
                      name.empty() ? "(none)" : name, p.files, static_cast<double>(p.bytes) / 1e6,
                      p.spans, p.errors, rfc3339_or(p.last_sync_ms, ""));
  }
  if (v.work) {
    const WorkCounts& c = *v.work;
    out += fmt::format("Work units: {} pending, {} claimed, {} with an expired lease, {} done\n",
                       c.pending, c.claimed, c.expired, c.done);
    out += fmt::format("Workers ({}):\n", v.workers.size());
    for (const auto& x : v.workers)
      out += fmt::format(
          "  {:<28} {:<9} units {:>6} claimed {:>6} done {:>10} spans {:>9.1f} MB  "
          "started {}  heartbeat {}\n",
          x.worker_id, x.status, x.units_claimed, x.units_done, x.spans_sent,
          static_cast<double>(x.bytes_read) / 1e6, x.started_at, x.heartbeat_at);
  }
  out += fmt::format("Dead-letter requests: {} ({})\n", v.dead_letter_requests, v.dead_letter_file);
  if (v.dead_letter_bad_lines)
    out += fmt::format(
        "Dead-letter file: {} bad lines, not replayable (replay-dead-letters names them)\n",
        v.dead_letter_bad_lines);
  return out;
}

}  // namespace

int cmd_status(const std::string& db_path, bool json) {
  StateOpenOptions so;
  so.read_only = true;
  so.take_lock = false;
  std::unique_ptr<StateStore> st;
  try {
    st = open_state(db_path, so);
  } catch (const StateError& e) {
    if (e.code() != StateError::Code::kReadOnlyMissing) throw;
    const std::string shown = display_state_location(db_path);
    if (json) {
      std::string j;
      JsonWriter(j)
          .begin_object()
          .field("schema", "chsync.status/1")
          .field("db", shown)
          .field("exists", false)
          .end_object();
      j += '\n';
      std::fputs(j.c_str(), stdout);
    } else {
      std::printf("Database: %s (not created yet: nothing synced)\n", shown.c_str());
    }
    return 0;
  }
  const StatusView v = gather(*st, db_path);
  const std::string out = json ? render_json(v) : render_text(v);
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace chsync
