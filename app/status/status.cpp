// `chsync status`: what the state holds per backend instance and project (text or JSON).
#include "app/status/status.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "app/dead_letters/dead_letters.h"
#include "pipeline/json_writer.h"
#include "stages/state/state_store.h"

namespace chsync {

int cmd_status(const std::string& db_path, bool json) {
  StateOpenOptions so;
  so.read_only = true;
  so.take_lock = false;
  std::unique_ptr<StateStore> st;
  try {
    st = open_state(db_path, so);
  } catch (const StateError& e) {
    if (e.code() == StateError::Code::kReadOnlyMissing) {
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
    throw;
  }
  std::uint64_t dead_count = 0;
  {
    std::uint64_t bad = 0;
    dead_count = read_dead_letters(dead_letter_path(db_path), bad).size();
  }
  std::string out;
  JsonWriter w(out);
  if (json) {
    w.begin_object()
        .field("schema", "chsync.status/1")
        .field("db", st->path())  // names are escaped (issue 20 #15)
        .field("exists", true)
        .key("backends")
        .begin_array();
  } else {
    out = fmt::format("Database: {}\n", st->path());
  }
  const auto rfc3339_or = [](std::int64_t ms, const char* none) {
    return ms ? format_rfc3339_ms(ms) : std::string(none);
  };
  for (const auto& inst : st->instances()) {
    auto t = st->totals(inst);
    auto files = st->files(inst);
    std::map<std::string, std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t, std::int64_t>> proj;
    for (const auto& f : files) {
      auto& [n, bytes, spans, errors, last] = proj[f.project];
      ++n;
      bytes += f.committed_offset;
      spans += f.spans;
      errors += f.errors;
      last = std::max(last, f.last_sync_ms);
    }
    if (json) {
      // Every dead span is one the backend refused (4xx, partialSuccess, per-event 4xx):
      // spans_rejected says so in the words of the report (design "No silent success").
      w.begin_object()
          .field("backend", inst)
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
      for (auto& [p, v] : proj) {
        auto& [n, bytes, spans, errors, last] = v;
        w.begin_object()
            .field("project", p)
            .field("files", n)
            .field("bytes", bytes)
            .field("spans_synced", spans)
            .field("errors", errors)
            .field("last_sync", rfc3339_or(last, ""))
            .end_object();
      }
      w.end_array().end_object();
    } else {
      out += fmt::format("Backend {}: {} files, {:.1f} MB committed, {} spans sent, {} dead, "
                         "{} in flight at an interrupted run, {} bad lines, last sync {}\n",
                         inst, t.files, static_cast<double>(t.bytes) / 1e6, t.spans_delivered,
                         t.spans_dead, t.spans_in_flight, t.file_errors,
                         rfc3339_or(t.last_sync_ms, "never"));
      for (auto& [p, v] : proj) {
        auto& [n, bytes, spans, errors, last] = v;
        out += fmt::format("  {:<50} {:>6} files {:>10.1f} MB {:>9} spans {:>5} errors  {}\n",
                           p.empty() ? "(none)" : p, n, static_cast<double>(bytes) / 1e6, spans,
                           errors, rfc3339_or(last, ""));
      }
    }
  }
  if (json) w.end_array();
  if (WorkTable* wt = st->work()) {
    // Shared state: the workers of the work group and where the units stand.
    const WorkCounts c = wt->counts();
    const auto ws = wt->workers();
    if (json) {
      w.key("workers").begin_array();
      for (const auto& x : ws) {
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
      }
      w.end_array()
          .key("work")
          .begin_object()
          .field("pending", c.pending)
          .field("claimed", c.claimed)
          .field("expired", c.expired)
          .field("done", c.done)
          .end_object();
    } else {
      out += fmt::format("Work units: {} pending, {} claimed, {} with an expired lease, {} done\n",
                         c.pending, c.claimed, c.expired, c.done);
      out += fmt::format("Workers ({}):\n", ws.size());
      for (const auto& x : ws)
        out += fmt::format("  {:<28} {:<9} units {:>6} claimed {:>6} done {:>10} spans {:>9.1f} MB  "
                           "started {}  heartbeat {}\n",
                           x.worker_id, x.status, x.units_claimed, x.units_done, x.spans_sent,
                           static_cast<double>(x.bytes_read) / 1e6, x.started_at, x.heartbeat_at);
    }
  }
  if (json) {
    w.field("dead_letter_requests", dead_count).end_object();
    out += '\n';
  } else
    out += fmt::format("Dead-letter requests: {} ({})\n", dead_count, dead_letter_path(db_path));
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace chsync
