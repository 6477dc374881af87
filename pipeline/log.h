// Operator-facing log lines on stderr: plain text ("chsync: message") or, with --log-format json,
// one JSON object per line ({"ts","level","msg", extra fields}) for log shippers.
// Thread-safe: each line is formatted first and written with a single fwrite under a mutex.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chsync::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format { kText, kJson };

void configure(Format format, Level min_level);
Format format();
bool enabled(Level level);

// Fields are appended as extra JSON keys (text format: " key=value").
void write(Level level, std::string_view message,
           const std::vector<std::pair<std::string, std::string>>& fields = {});

inline void info(std::string_view m) { write(Level::kInfo, m); }
inline void warn(std::string_view m) { write(Level::kWarn, m); }
inline void error(std::string_view m) { write(Level::kError, m); }
inline void debug(std::string_view m) { write(Level::kDebug, m); }

}  // namespace chsync::log
