// `chsync replay-dead-letters`: sends the dead-letter file's requests again; what is accepted is
// marked delivered in the state, the rest stays in the file.
#include "app/dead_letters/replay.h"

#include <fmt/format.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>

#include "app/dead_letters/dead_letters.h"
#include "app/sync/sync.h"
#include "backends/http/http_client.h"
#include "backends/http/settings_check.h"
#include "backends/otlp/otlp_env.h"
#include "backends/otlp/otlp_exporter.h"
#include "pipeline/log.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {
std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
}  // namespace

int cmd_replay_dead_letters(const ReplayOptions& ro) {
  const std::string path = dead_letter_path(ro.db_path);
  std::uint64_t bad = 0;
  auto letters = read_dead_letters(path, bad);
  if (letters.empty()) {
    std::printf("no dead letters in %s\n", path.c_str());
    return bad ? 1 : 0;
  }
  StateOpenOptions so;
  auto state = open_state(ro.db_path, so);

  http::ClientOptions co;
  co.ca_file = ro.ca_file;
  co.insecure = ro.insecure;
  if (ro.insecure)
    log::warn(
        "replay-dead-letters: --insecure: TLS certificates and host names are NOT verified; anyone "
        "on "
        "the path can read the API keys and spans. Use --ca-file for a private CA instead.");
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

  std::vector<DeadLetter> still_dead;
  std::uint64_t replayed_spans = 0, failed = 0;
  for (auto& d : letters) {
    std::string endpoint = ro.endpoint.empty() ? d.endpoint : ro.endpoint;
    auto url = http::parse_url(endpoint);
    if (!url) {
      log::error("replay: bad endpoint '" + http::mask_url(endpoint) + "'");
      still_dead.push_back(std::move(d));
      ++failed;
      continue;
    }
    http::Request req;
    req.url = *url;
    req.headers.emplace_back("Content-Type",
                             d.content_type.empty() ? "application/x-protobuf" : d.content_type);
    for (const auto& kv : extra) req.headers.push_back(kv);
    req.body = std::make_shared<const std::string>(d.body);
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    http::Response resp;
    client->post(std::move(req), [&](http::Response&& r) {
      std::lock_guard lock(mu);
      resp = std::move(r);
      done = true;
      cv.notify_all();
    });
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done; });
    }
    if (resp.error == http::TransportError::kNone && resp.status >= 200 && resp.status < 300) {
      state->mark_delivered(d.instance, d.span_keys);
      replayed_spans += d.span_keys.size();
    } else {
      log::error("replay to " + http::mask_url(endpoint) + " failed: " +
                 (resp.error != http::TransportError::kNone
                      ? std::string(http::to_string(resp.error))
                      : fmt::format("HTTP {}", resp.status)));
      still_dead.push_back(std::move(d));
      ++failed;
    }
  }
  client->shutdown();
  state->flush();
  // Rewrite the file with what is still dead (write a temp file, then rename).
  const std::string tmp = path + ".tmp";
  {
    DeadLetterWriter w(tmp);
    for (const DeadLetter& d : still_dead) w.write(d);
  }
  if (still_dead.empty()) {
    std::remove(tmp.c_str());
    std::remove(path.c_str());
  } else {
    std::rename(tmp.c_str(), path.c_str());
  }
  std::printf("replayed %llu spans in %zu requests; %llu requests still dead\n",
              static_cast<unsigned long long>(replayed_spans), letters.size() - still_dead.size(),
              static_cast<unsigned long long>(failed));
  return failed ? 3 : 0;
}

}  // namespace chsync
