// `chsync replay-dead-letters`: sends the dead-letter file's requests again; what is accepted is
// marked delivered in the state, the rest stays in the file.
#include "app/dead_letters/replay.h"

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#include "app/dead_letters/dead_letters.h"
#include "app/sync/sync.h"
#include "backends/http/http_client.h"
#include "backends/http/settings_check.h"
#include "backends/otlp/otlp_env.h"
#include "backends/otlp/otlp_exporter.h"
#include "pipeline/text.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {
std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
}  // namespace

namespace {
// What a replayed request's answer means for the exit code (design Contracts): rejected again
// for good (a final 4xx) is a dead letter (1); anything else that is not a 2xx means the backend
// could not be reached or refused us (3).
enum class Outcome { kDelivered, kRejected, kUnreachable };
Outcome outcome_of(const http::Response& r) {
  if (r.error != http::TransportError::kNone) return Outcome::kUnreachable;
  if (r.status >= 200 && r.status < 300) return Outcome::kDelivered;
  const bool final_4xx = r.status >= 400 && r.status < 500 && r.status != 401 && r.status != 403 &&
                         r.status != 404 && r.status != 408 && r.status != 429;
  return final_4xx ? Outcome::kRejected : Outcome::kUnreachable;
}

// Sends one request and waits for its answer (replay goes one request at a time, in file order).
http::Response post_and_wait(http::Transport& client, http::Request req) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  http::Response resp;
  client.post(std::move(req), [&](http::Response&& r) {
    std::lock_guard lock(mu);
    resp = std::move(r);
    done = true;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  return resp;
}
}  // namespace

int cmd_replay_dead_letters(const ReplayOptions& ro) {
  const log::Logger& log = ro.log;
  const std::string path = dead_letter_path(ro.db_path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::printf("no dead letters in %s\n", path.c_str());
    return 0;
  }
  // The state first: its run lock keeps a sync from appending to the file while it is read and
  // rewritten (SQLite; a shared PostgreSQL state keeps the file per host, see dead_letter_path).
  StateOpenOptions so;
  auto state = open_state(ro.db_path, so);
  DeadLetterFile file = read_dead_letter_file(path);
  std::map<std::string, std::uint64_t> bad_by_kind;
  for (const BadDeadLetterLine& b : file.bad) {
    ++bad_by_kind[b.kind];
    log.write(log::Level::kError,
              fmt::format("replay-dead-letters: {}:{}: {}; the line is kept in the file, not sent",
                          path, b.line, b.reason),
              {{"event", "dead_letter_bad_line"},
               {"file", path},
               {"line", b.line},
               {"kind", b.kind},
               {"error", b.reason}},
              false);
  }

  http::ClientOptions co;
  co.ca_file = ro.ca_file;
  co.insecure = ro.insecure;
  if (ro.insecure) log.warn(http::insecure_warning("replay-dead-letters"));
  co.user_agent = "chsync/" + std::string(otlp::chsync_version());
  auto client = http::make_http_client(co);

  // Headers are checked once, before anything is sent (issue 20 #9: no CR/LF/NUL on the wire).
  http::Headers extra = otlp::parse_headers(env_or_empty("OTEL_EXPORTER_OTLP_HEADERS"));
  for (const auto& h : ro.headers) {
    auto eq = h.find('=');
    if (eq != std::string::npos) extra.emplace_back(h.substr(0, eq), h.substr(eq + 1));
  }
  for (const auto& [k, v] : extra)
    if (auto e = http::header_error(k, v); !e.empty())
      throw ConfigError("replay-dead-letters: " + e);

  std::vector<bool> keep(file.letters.size(), false);
  std::uint64_t replayed_spans = 0, rejected = 0, unreachable = 0;
  for (std::size_t i = 0; i < file.letters.size(); ++i) {
    const DeadLetter& d = file.letters[i];
    std::string endpoint = ro.endpoint.empty() ? d.endpoint : ro.endpoint;
    auto url = http::parse_url(endpoint);
    if (!url) {
      log.error("replay: bad endpoint '" + http::mask_url(endpoint) + "'");
      keep[i] = true;
      ++unreachable;
      continue;
    }
    http::Request req;
    req.url = *url;
    req.headers.emplace_back("Content-Type",
                             d.content_type.empty() ? "application/x-protobuf" : d.content_type);
    for (const auto& kv : extra) req.headers.push_back(kv);
    req.body = std::make_shared<const std::string>(d.body);
    const http::Response resp = post_and_wait(*client, std::move(req));
    const Outcome out = outcome_of(resp);
    if (out == Outcome::kDelivered) {
      state->mark_delivered(d.instance, d.span_keys);
      replayed_spans += d.span_keys.size();
      continue;
    }
    log.error("replay to " + http::mask_url(endpoint) + " failed: " +
              (resp.error != http::TransportError::kNone ? std::string(http::to_string(resp.error))
                                                         : fmt::format("HTTP {}", resp.status)));
    keep[i] = true;
    ++(out == Outcome::kRejected ? rejected : unreachable);
  }
  client->shutdown();
  state->flush();

  // Rewrite the file with what is still dead and every bad line, in the order read (a temp
  // file, then rename). Bad lines keep their bytes; a cut-short last line gets its newline, so
  // the next record a sync appends does not run into it.
  const std::string tmp = path + ".tmp";
  std::vector<std::uint64_t> bad_lines_now;
  std::uint64_t lines_out = 0;
  bool written = true;
  {
    std::remove(tmp.c_str());
    DeadLetterWriter w(tmp);
    for (const DeadLetterFile::Line& l : file.order) {
      if (l.bad) {
        w.write_raw(file.bad[l.index].text);
        bad_lines_now.push_back(++lines_out);
      } else if (keep[l.index]) {
        w.write(file.letters[l.index]);
        ++lines_out;
      }
    }
    written = w.ok();
  }
  int code = kExitOk;
  if (!written) {
    // The old file stays as it was: its replayed requests would be sent again by the next
    // replay (counted as repeats by the backend's dedupe at best), but nothing is lost.
    std::remove(tmp.c_str());
    log.error(fmt::format(
        "replay-dead-letters: could not write {}; {} is left unchanged and still lists the "
        "requests replayed now",
        tmp, path));
    code = kExitPartial;
  } else if (lines_out == 0) {
    std::remove(tmp.c_str());
    std::remove(path.c_str());
  } else if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    log.error(fmt::format("replay-dead-letters: could not rename {} to {}: {}", tmp, path,
                          errno_text(errno)));
    code = kExitPartial;
  }
  const auto still_dead = static_cast<std::size_t>(rejected + unreachable);
  std::string summary = fmt::format("replayed {} spans in {} requests; {} requests still dead",
                                    replayed_spans, file.letters.size() - still_dead, still_dead);
  if (!file.bad.empty()) {
    std::vector<std::string> kinds;
    kinds.reserve(bad_by_kind.size());
    for (const auto& [k, n] : bad_by_kind) kinds.push_back(fmt::format("{} {}", n, k));
    const bool one = file.bad.size() == 1;
    summary += fmt::format(
        "; {} bad line{} ({}) not sent, kept unchanged in {} as line{} {}: fix or delete {}, "
        "then run replay-dead-letters again",
        file.bad.size(), one ? "" : "s", fmt::join(kinds, ", "), path, one ? "" : "s",
        fmt::join(bad_lines_now, ", "), one ? "it" : "them");
  }
  std::printf("%s\n", summary.c_str());
  if (!file.bad.empty() || rejected > 0) code = kExitPartial;
  if (unreachable > 0) code = kExitBackend;
  return code;
}

}  // namespace chsync
