#include "cli/commands.h"

#include <archive.h>
#include <fmt/format.h>
#include <openssl/opensslv.h>
#include <simdjson.h>
#include <sqlite3.h>
#include <zlib.h>
#include <zstd.h>
#include <boost/version.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "app/dead_letters/dead_letters.h"
#include "pipeline/json_writer.h"
#include "pipeline/log.h"
#include "stages/mapper/mapper.h"
#include "stages/state/state_store.h"

namespace chsync {

int cmd_version(const char* version, const char* revision) {
  std::printf("chsync %s (git %s)\n", version, revision);
  std::printf(
      "built with: simdjson %d.%d.%d, OpenSSL %s, SQLite %s, zlib %s, zstd %s, %s, Boost %d.%d\n",
      int(simdjson::SIMDJSON_VERSION_MAJOR), int(simdjson::SIMDJSON_VERSION_MINOR),
      int(simdjson::SIMDJSON_VERSION_REVISION), OPENSSL_VERSION_STR, sqlite3_libversion(),
      zlibVersion(), ZSTD_versionString(), archive_version_string(), BOOST_VERSION / 100000,
      BOOST_VERSION / 100 % 1000);
  return 0;
}

int cmd_hash(const std::vector<std::string>& file_colon_lines) {
  // Parse every FILE:LINE first; each distinct file is then read once, whatever the number of
  // its lines asked for (tests/data/vectors checks all 11,506 corpus lines in ~100 runs).
  std::vector<std::pair<std::string, std::uint64_t>> wanted;
  std::map<std::string, std::map<std::uint64_t, std::string>> by_file;  // path -> line -> hash
  for (const std::string& target : file_colon_lines) {
    const auto colon = target.rfind(':');
    if (colon == std::string::npos) {
      log::error(fmt::format("hash: expected FILE:LINE, got '{}'", target));
      return 2;
    }
    std::uint64_t want = 0;
    try {
      want = std::stoull(target.substr(colon + 1));
    } catch (...) {
      want = 0;
    }
    if (want == 0) {
      log::error(fmt::format("hash: bad line number in '{}'", target));
      return 2;
    }
    wanted.emplace_back(target.substr(0, colon), want);
    by_file[wanted.back().first][want];
  }
  for (auto& [path, lines] : by_file) {
    std::ifstream in(path);
    if (!in) {
      log::error(fmt::format("hash: cannot open {}", path));
      return 2;
    }
    std::string line;
    std::uint64_t n = 0;
    for (auto it = lines.begin(); it != lines.end() && std::getline(in, line);) {
      if (++n != it->first) continue;
      if (!seed_message_hash(line, it->second)) {
        log::error(fmt::format("hash: {}:{} is not a JSON object", path, n));
        return 1;
      }
      ++it;
    }
    if (n < lines.rbegin()->first) {
      log::error(fmt::format("hash: {} has fewer than {} lines", path, lines.rbegin()->first));
      return 2;
    }
  }
  for (const auto& [path, n] : wanted) std::printf("%s\n", by_file[path][n].c_str());
  return 0;
}

int cmd_state(const std::string& db_path, const std::string& action, const std::string& target,
              const std::string& instance) {
  StateOpenOptions so;
  auto st = open_state(db_path, so);
  if (action == "vacuum") {
    st->vacuum();
    std::printf("vacuumed %s\n", db_path.c_str());
  } else if (action == "backup") {
    if (target.empty()) {
      log::error("state backup needs a destination file");
      return 2;
    }
    st->backup(target);
    std::printf("backed up %s to %s\n", db_path.c_str(), target.c_str());
  } else if (action == "forget") {
    if (target.empty()) {
      log::error("state forget needs a path prefix");
      return 2;
    }
    std::uint64_t n = 0;
    std::string prefix = target;
    if (std::filesystem::exists(prefix)) prefix = std::filesystem::canonical(prefix).string();
    for (const auto& inst : st->instances())
      if (instance.empty() || inst == instance) n += st->forget_files(inst, prefix);
    std::printf(
        "forgot %llu file rows under %s (their spans stay delivered; use --resend to "
        "send them again)\n",
        static_cast<unsigned long long>(n), prefix.c_str());
  }
  st->flush();
  return 0;
}

}  // namespace chsync
