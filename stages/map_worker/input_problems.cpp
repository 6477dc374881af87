#include "stages/map_worker/input_problems.h"

#include <fmt/format.h>

#include "pipeline/log.h"

namespace chsync {

void InputProblems::bad_line(const BadLine& bl) {
  std::lock_guard lock(bad_mu_);
  by_kind_[bl.kind]++;
  if (!quiet_ && printed_ < max_printed_) {
    log_.write(log::Level::kWarn,
               fmt::format("{}:{}: bad line ({}): {}", bl.file, bl.line, bl.kind, bl.message),
               {{"event", "bad_line"},
                {"file", bl.file},
                {"line", static_cast<std::uint64_t>(bl.line)},
                {"kind", bl.kind},
                {"error", bl.message}},
               false);
    if (++printed_ == max_printed_) log_.warn("further bad lines are counted but not printed");
  }
}

void InputProblems::file_error(const std::string& message) {
  std::lock_guard lock(err_mu_);
  file_errors_.push_back(message);
  if (!quiet_)
    log_.write(log::Level::kWarn, message, {{"event", "input_error"}, {"error", message}}, false);
}

std::map<std::string, std::uint64_t> InputProblems::bad_lines_by_kind() const {
  std::lock_guard lock(bad_mu_);
  return by_kind_;
}

std::uint64_t InputProblems::bad_lines_total() const {
  std::lock_guard lock(bad_mu_);
  std::uint64_t n = 0;
  for (const auto& [k, v] : by_kind_) n += v;
  return n;
}

std::vector<std::string> InputProblems::file_errors() const {
  std::lock_guard lock(err_mu_);
  return file_errors_;
}

}  // namespace chsync
