#include "pipeline/log.h"

#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>

#include "pipeline/json_writer.h"
#include "pipeline/span.h"

namespace chsync::log {
namespace {
// The process-wide stderr logger's settings (--log-format, --log-level), set once at start-up.
std::mutex g_mu;                  // NOLINT(*-avoid-non-const-global-variables): see above
Format g_format = Format::kText;  // NOLINT(*-avoid-non-const-global-variables): see above
Level g_min = Level::kInfo;       // NOLINT(*-avoid-non-const-global-variables): see above

const char* level_name(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

// spdlog messages (library code: exporters, state stores) as chsync log lines.
class Sink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& m) override {
    Level l = Level::kInfo;
    if (m.level <= spdlog::level::debug) l = Level::kDebug;
    else if (m.level == spdlog::level::warn) l = Level::kWarn;
    else if (m.level >= spdlog::level::err) l = Level::kError;
    write(l, std::string_view(m.payload.data(), m.payload.size()));
  }
  void flush_() override {}
};
}  // namespace

Field::Field(std::string k, double v) : key(std::move(k)) {
  value = std::isfinite(v) ? fmt::format("{}", v) : "null";
}

void configure(Format format, Level min_level) {
  std::lock_guard lock(g_mu);
  g_format = format;
  g_min = min_level;
  spdlog::set_level(min_level == Level::kDebug  ? spdlog::level::debug
                    : min_level == Level::kInfo ? spdlog::level::info
                    : min_level == Level::kWarn ? spdlog::level::warn
                                                : spdlog::level::err);
}

Format format() { return g_format; }
bool enabled(Level level) { return level >= g_min; }

std::string json_line(Level level, std::string_view message, const std::vector<Field>& fields) {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::string line;
  JsonWriter w(line);
  w.begin_object()
      .field("ts", format_rfc3339_ms(now))
      .field("level", level_name(level))
      .field("msg", message);
  for (const auto& f : fields) {
    w.key(f.key);
    if (f.quoted) w.value(f.value);
    else w.raw(f.value);  // formatted by Field: a number, true/false or null
  }
  w.end_object();
  return line;
}

void write(Level level, std::string_view message, const std::vector<Field>& fields,
           bool text_fields) {
  stderr_logger().write(level, message, fields, text_fields);
}

const Logger& stderr_logger() {
  static const Logger logger;
  return logger;
}

// Members, not static: callers ask the logger they were handed, whatever it reads today.
Format Logger::format() const { return g_format; }  // NOLINT(*-convert-member-functions-to-static)
bool Logger::enabled(Level level) const {           // NOLINT(*-convert-member-functions-to-static)
  return level >= g_min;
}

void Logger::write(Level level, std::string_view message, const std::vector<Field>& fields,
                   bool text_fields) const {
  if (level < g_min) return;
  const std::string line = format_line(level, message, fields, text_fields);
  if (sink_) {
    sink_(level, line);
    return;
  }
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::string format_line(Level level, std::string_view message, const std::vector<Field>& fields,
                        bool text_fields) {
  std::string line;
  if (g_format == Format::kJson) {
    line = json_line(level, message, fields) + "\n";
  } else {
    line = "chsync: ";
    // One line per message: a backend's answer may hold newlines or control characters.
    for (char c : message) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '\n') line += "\\n";
      else if (c == '\r') line += "\\r";
      else if (u < 0x20 && c != '\t') line += fmt::format("\\x{:02x}", u);
      else line.push_back(c);
    }
    if (text_fields)
      for (const auto& f : fields) line += " " + f.key + "=" + f.value;
    line += "\n";
  }
  return line;
}

void install_spdlog_sink() {
  auto logger = std::make_shared<spdlog::logger>("chsync", std::make_shared<Sink>());
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
}

}  // namespace chsync::log
