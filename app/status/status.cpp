// `chsync status`: what the state holds per backend instance and project (text or JSON).
#include "app/status/status.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "app/dead_letters/dead_letters.h"
#include "backends/console/json_writer.h"
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
        std::string j = "{\"schema\":\"chsync.status/1\",\"db\":";
        append_json_string(j, shown);
        j += ",\"exists\":false}\n";
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
  if (json) {
    out = "{\"schema\":\"chsync.status/1\",\"db\":";
    append_json_string(out, st->path());  // names are escaped (issue 20 #15)
    out += ",\"exists\":true,\"backends\":[";
  }
  else out = fmt::format("Database: {}\n", st->path());
  bool first_inst = true;
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
      out += first_inst ? "{\"backend\":" : ",{\"backend\":";
      append_json_string(out, inst);
      out += fmt::format(",\"files\":{},\"bytes\":{},\"spans_synced\":{},"
                         "\"spans_dead\":{},\"spans_rejected\":{},\"spans_in_flight\":{},\"file_errors\":{},"
                         "\"last_sync\":\"{}\",\"projects\":[",
                         t.files, t.bytes, t.spans_delivered,
                         t.spans_dead, t.spans_dead, t.spans_in_flight, t.file_errors,
                         t.last_sync_ms ? format_rfc3339_ms(t.last_sync_ms) : "");
      bool first = true;
      for (auto& [p, v] : proj) {
        auto& [n, bytes, spans, errors, last] = v;
        out += first ? "" : ",";
        first = false;
        out += "{\"project\":";
        append_json_string(out, p);
        out += fmt::format(",\"files\":{},\"bytes\":{},\"spans_synced\":{},\"errors\":{},"
                           "\"last_sync\":\"{}\"}}",
                           n, bytes, spans, errors, last ? format_rfc3339_ms(last) : "");
      }
      out += "]}";
    } else {
      out += fmt::format("Backend {}: {} files, {:.1f} MB committed, {} spans sent, {} dead, "
                         "{} in flight at an interrupted run, {} bad lines, last sync {}\n",
                         inst, t.files, static_cast<double>(t.bytes) / 1e6, t.spans_delivered,
                         t.spans_dead, t.spans_in_flight, t.file_errors,
                         t.last_sync_ms ? format_rfc3339_ms(t.last_sync_ms) : "never");
      for (auto& [p, v] : proj) {
        auto& [n, bytes, spans, errors, last] = v;
        out += fmt::format("  {:<50} {:>6} files {:>10.1f} MB {:>9} spans {:>5} errors  {}\n",
                           p.empty() ? "(none)" : p, n, static_cast<double>(bytes) / 1e6, spans,
                           errors, last ? format_rfc3339_ms(last) : "");
      }
    }
    first_inst = false;
  }
  if (json) out += "]";
  if (WorkTable* w = st->work()) {
    // Shared state: the workers of the work group and where the units stand.
    const WorkCounts c = w->counts();
    const auto ws = w->workers();
    if (json) {
      out += ",\"workers\":[";
      for (std::size_t i = 0; i < ws.size(); ++i) {
        const auto& x = ws[i];
        out += i ? ",{" : "{";
        out += "\"worker_id\":";
        append_json_string(out, x.worker_id);
        out += ",\"run_id\":";
        append_json_string(out, x.run_id);
        out += ",\"host\":";
        append_json_string(out, x.host);
        out += fmt::format(",\"pid\":{},\"status\":\"{}\",\"started_at\":\"{}\","
                           "\"heartbeat_at\":\"{}\",\"units_claimed\":{},\"units_done\":{},"
                           "\"spans_sent\":{},\"bytes_read\":{}}}",
                           x.pid, x.status, x.started_at, x.heartbeat_at, x.units_claimed,
                           x.units_done, x.spans_sent, x.bytes_read);
      }
      out += fmt::format("],\"work\":{{\"pending\":{},\"claimed\":{},\"expired\":{},\"done\":{}}}",
                         c.pending, c.claimed, c.expired, c.done);
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
  if (json)
    out += fmt::format(",\"dead_letter_requests\":{}}}\n", dead_count);
  else
    out += fmt::format("Dead-letter requests: {} ({})\n", dead_count, dead_letter_path(db_path));
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace chsync
