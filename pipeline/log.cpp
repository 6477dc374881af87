#include "pipeline/log.h"

#include <chrono>
#include <cstdio>
#include <mutex>

#include "pipeline/json_escape.h"
#include "pipeline/span.h"

namespace chsync::log {
namespace {
std::mutex g_mu;
Format g_format = Format::kText;
Level g_min = Level::kInfo;

const char* level_name(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}
}  // namespace

void configure(Format format, Level min_level) {
  std::lock_guard lock(g_mu);
  g_format = format;
  g_min = min_level;
}

Format format() { return g_format; }
bool enabled(Level level) { return level >= g_min; }

void write(Level level, std::string_view message,
           const std::vector<std::pair<std::string, std::string>>& fields) {
  if (level < g_min) return;
  std::string line;
  if (g_format == Format::kJson) {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    line = "{\"ts\":\"" + format_rfc3339_ms(now) + "\",\"level\":\"" + level_name(level) +
           "\",\"msg\":";
    append_json_string(line, message);
    for (const auto& [k, v] : fields) {
      line += ",";
      append_json_string(line, k);
      line += ":";
      append_json_string(line, v);
    }
    line += "}\n";
  } else {
    line = "chsync: ";
    line.append(message);
    for (const auto& [k, v] : fields) line += " " + k + "=" + v;
    line += "\n";
  }
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace chsync::log
