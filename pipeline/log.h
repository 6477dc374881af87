// Operator-facing log lines on stderr: plain text ("chsync: message") or, with --log-format json,
// one JSON object per line ({"ts","level","msg", typed fields}) for log shippers.
// Thread-safe: each line is formatted first and written with a single fwrite under a mutex.
// install_spdlog_sink() routes the library's spdlog messages through here too, so every line
// chsync writes to stderr follows --log-format.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace chsync::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format { kText, kJson };

// One extra field: a string, a number or a boolean (JSON keeps the type).
struct Field {
  Field(std::string k, std::string v) : key(std::move(k)), value(std::move(v)), quoted(true) {}
  Field(std::string k, const char* v) : key(std::move(k)), value(v), quoted(true) {}
  Field(std::string k, std::uint64_t v) : key(std::move(k)), value(std::to_string(v)) {}
  Field(std::string k, std::int64_t v) : key(std::move(k)), value(std::to_string(v)) {}
  Field(std::string k, int v) : key(std::move(k)), value(std::to_string(v)) {}
  Field(std::string k, double v);
  Field(std::string k, bool v) : key(std::move(k)), value(v ? "true" : "false") {}
  std::string key, value;
  bool quoted = false;
};

void configure(Format format, Level min_level);
Format format();
bool enabled(Level level);

// Fields become JSON keys; in text format they are appended as " key=value" when text_fields.
void write(Level level, std::string_view message, const std::vector<Field>& fields = {},
           bool text_fields = true);
// The text of a JSON log line (no newline), for callers that write it themselves.
std::string json_line(Level level, std::string_view message, const std::vector<Field>& fields);

// The formatted line (newline included) of a message, as write() would put it on stderr.
std::string format_line(Level level, std::string_view message, const std::vector<Field>& fields,
                        bool text_fields);

// A logger object, passed to the library code that logs (the app layer through its options,
// stages and backends through their constructors or options) instead of reached as a global:
// only the command line (cli/) calls this header's free functions. Level and format are the
// process's (configure()); the lines go to stderr, or to `sink` (tests capture what a module
// says). Thread-safe like write(); copying is cheap (a sink shares its target).
class Logger {
 public:
  using Sink = std::function<void(Level, const std::string& line)>;
  Logger() = default;  // stderr
  explicit Logger(Sink sink) : sink_(std::move(sink)) {}
  void write(Level level, std::string_view message, const std::vector<Field>& fields = {},
             bool text_fields = true) const;
  // The process's format and level (configure()), for a caller that shapes its output by them.
  Format format() const;
  bool enabled(Level level) const;
  void info(std::string_view m) const { write(Level::kInfo, m); }
  void warn(std::string_view m) const { write(Level::kWarn, m); }
  void error(std::string_view m) const { write(Level::kError, m); }
  void debug(std::string_view m) const { write(Level::kDebug, m); }

 private:
  Sink sink_;
};
// The process's stderr logger (what the free functions above write through).
const Logger& stderr_logger();

// Makes spdlog's default logger write through this logger (level and format follow configure()).
void install_spdlog_sink();

inline void info(std::string_view m) { write(Level::kInfo, m); }
inline void warn(std::string_view m) { write(Level::kWarn, m); }
inline void error(std::string_view m) { write(Level::kError, m); }
inline void debug(std::string_view m) { write(Level::kDebug, m); }

}  // namespace chsync::log
