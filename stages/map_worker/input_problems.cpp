#include "stages/map_worker/input_problems.h"

#include <cstdio>

namespace chsync {

void InputProblems::bad_line(const BadLine& bl) {
  std::lock_guard lock(bad_mu_);
  by_kind_[bl.kind]++;
  if (!quiet_ && printed_ < max_printed_) {
    std::fprintf(stderr, "chsync: %s:%llu: bad line (%s): %s\n", bl.file.c_str(),
                 static_cast<unsigned long long>(bl.line), bl.kind.c_str(), bl.message.c_str());
    if (++printed_ == max_printed_)
      std::fprintf(stderr, "chsync: further bad lines are counted but not printed\n");
  }
}

void InputProblems::file_error(const std::string& message) {
  std::lock_guard lock(err_mu_);
  file_errors_.push_back(message);
  if (!quiet_) std::fprintf(stderr, "chsync: %s\n", message.c_str());
}

std::map<std::string, std::uint64_t> InputProblems::bad_lines_by_kind() const {
  std::lock_guard lock(bad_mu_);
  return by_kind_;
}

std::uint64_t InputProblems::bad_lines_total() const {
  std::lock_guard lock(bad_mu_);
  std::uint64_t n = 0;
  for (auto& [k, v] : by_kind_) n += v;
  return n;
}

std::vector<std::string> InputProblems::file_errors() const {
  std::lock_guard lock(err_mu_);
  return file_errors_;
}

}  // namespace chsync
