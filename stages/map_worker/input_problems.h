// InputProblems: what went wrong with the input of a sync, counted and said once.
//
// Bad lines are counted by kind (all of them) and printed up to a limit; file errors (unreadable
// files, damaged archives, spooling failures) are kept for the report and printed as they come.
// Nothing here stops a run: bad input is counted, reported, and the rest goes on.
// Thread: any; one mutex per list. Messages go to the logger it is given.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/log.h"
#include "stages/mapper/mapper.h"

namespace chsync {

class InputProblems {
 public:
  InputProblems(bool quiet, std::size_t max_bad_line_messages, log::Logger logger)
      : quiet_(quiet), max_printed_(max_bad_line_messages), log_(std::move(logger)) {}

  void bad_line(const BadLine& bl);
  void file_error(const std::string& message);

  std::map<std::string, std::uint64_t> bad_lines_by_kind() const;
  std::uint64_t bad_lines_total() const;
  std::vector<std::string> file_errors() const;
  bool quiet() const noexcept { return quiet_; }
  // Where the run's input messages go (map workers log through it too).
  const log::Logger& logger() const noexcept { return log_; }

 private:
  const bool quiet_;
  const std::size_t max_printed_;
  const log::Logger log_;
  mutable std::mutex bad_mu_;
  std::map<std::string, std::uint64_t> by_kind_;
  std::uint64_t printed_ = 0;
  mutable std::mutex err_mu_;
  std::vector<std::string> file_errors_;
};

}  // namespace chsync
