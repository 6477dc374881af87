#include "stages/state/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string_view>

#include <fmt/core.h>

#include "pipeline/text.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {

std::string now_iso_utc() {
  std::timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  ::gmtime_r(&ts.tv_sec, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) {
    return "unknown-host";
  }
  return buf;
}

// Reads the holder line; empty when the holder has not written it yet.
std::string read_holder(int fd) {
  char buf[512] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) {
    return {};
  }
  std::string_view s(buf, static_cast<std::size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

}  // namespace

RunLock::RunLock(std::string lock_path)
    : path_(std::move(lock_path)), fd_(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
  if (fd_ < 0) {
    throw StateError(StateError::Code::kIo,
                     fmt::format("cannot open state lock {}: {}", path_, errno_text(errno)));
  }
  int rc = 0;
  do {
    rc = ::flock(fd_, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    std::string holder = err == EWOULDBLOCK ? read_holder(fd_) : std::string();
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) {
      throw StateError(StateError::Code::kIo,
                       fmt::format("cannot lock {}: {}", path_, errno_text(err)));
    }
    // Holder line: "pid start_time hostname".
    std::string pid = "unknown", started = "unknown", host;
    if (!holder.empty()) {
      std::string_view h = holder;
      const auto sp1 = h.find(' ');
      pid = std::string(h.substr(0, sp1));
      if (sp1 != std::string_view::npos) {
        const auto rest = h.substr(sp1 + 1);
        const auto sp2 = rest.find(' ');
        started = std::string(rest.substr(0, sp2));
        if (sp2 != std::string_view::npos) {
          host = std::string(rest.substr(sp2 + 1));
        }
      }
    }
    throw StateError(StateError::Code::kLocked,
                     fmt::format("state is locked by another chsync run: pid {} started {}{}{} "
                                 "(lock file {}); wait for it to finish or stop it",
                                 pid, started, host.empty() ? "" : " on ", host, path_));
  }
  const std::string line = fmt::format("{} {} {}\n", ::getpid(), now_iso_utc(), host_name());
  // Best effort: the content is informational; the flock itself is the lock.
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t w = ::pwrite(fd_, line.data(), line.size(), 0);
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) {
    // Leave the holder line: it is only read while the file is locked. Closing releases the lock.
    ::close(fd_);
  }
}

}  // namespace chsync
