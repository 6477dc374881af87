#include "cli/commands.h"

#include <archive.h>
#include <boost/version.hpp>
#include <fmt/format.h>
#include <openssl/opensslv.h>
#include <simdjson.h>
#include <sqlite3.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "backends/console/json_writer.h"
#include "app/dead_letters/dead_letters.h"
#include "stages/mapper/mapper.h"
#include "stages/state/state_store.h"

namespace chsync {

int cmd_version(const char* version, const char* revision) {
  std::printf("chsync %s (git %s)\n", version, revision);
  std::printf("built with: simdjson %d.%d.%d, OpenSSL %s, SQLite %s, zlib %s, zstd %s, %s, Boost %d.%d\n",
              int(simdjson::SIMDJSON_VERSION_MAJOR), int(simdjson::SIMDJSON_VERSION_MINOR), int(simdjson::SIMDJSON_VERSION_REVISION), OPENSSL_VERSION_STR, sqlite3_libversion(), zlibVersion(),
              ZSTD_versionString(), archive_version_string(), BOOST_VERSION / 100000,
              BOOST_VERSION / 100 % 1000);
  return 0;
}

int cmd_hash(const std::string& target) {
  auto colon = target.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "chsync: hash: expected FILE:LINE\n");
    return 2;
  }
  std::string path = target.substr(0, colon);
  std::uint64_t want = 0;
  try {
    want = std::stoull(target.substr(colon + 1));
  } catch (...) {
    std::fprintf(stderr, "chsync: hash: bad line number in '%s'\n", target.c_str());
    return 2;
  }
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "chsync: hash: cannot open %s\n", path.c_str());
    return 2;
  }
  std::string line;
  for (std::uint64_t n = 1; std::getline(in, line); ++n) {
    if (n != want) continue;
    std::string h;
    if (!seed_message_hash(line, h)) {
      std::fprintf(stderr, "chsync: hash: %s:%llu is not a JSON object\n", path.c_str(),
                   static_cast<unsigned long long>(want));
      return 1;
    }
    std::printf("%s\n", h.c_str());
    return 0;
  }
  std::fprintf(stderr, "chsync: hash: %s has fewer than %llu lines\n", path.c_str(),
               static_cast<unsigned long long>(want));
  return 2;
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
      std::fprintf(stderr, "chsync: state backup needs a destination file\n");
      return 2;
    }
    st->backup(target);
    std::printf("backed up %s to %s\n", db_path.c_str(), target.c_str());
  } else if (action == "forget") {
    if (target.empty()) {
      std::fprintf(stderr, "chsync: state forget needs a path prefix\n");
      return 2;
    }
    std::uint64_t n = 0;
    std::string prefix = target;
    if (std::filesystem::exists(prefix)) prefix = std::filesystem::canonical(prefix).string();
    for (const auto& inst : st->instances())
      if (instance.empty() || inst == instance) n += st->forget_files(inst, prefix);
    std::printf("forgot %llu file rows under %s (their spans stay delivered; use --resend to "
                "send them again)\n",
                static_cast<unsigned long long>(n), prefix.c_str());
  }
  st->flush();
  return 0;
}

}  // namespace chsync
