#include "stages/reader/spool.h"

#include "pipeline/text.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace chsync {

SpoolDir::~SpoolDir() {
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);  // best effort: a leftover only costs temp space
}

std::string SpoolDir::create_file(int& fd, std::string& error) {
  std::lock_guard lock(mu_);
  fd = -1;
  if (dir_.empty()) {
    std::error_code ec;
    auto base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string tmpl = (base / "chsync-spool-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      error = "cannot create spool folder in " + base.string() + ": " + errno_text(errno);
      return "";
    }
    dir_ = buf.data();
  }
  std::string p = dir_ + "/m" + std::to_string(files_++);
  fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = "cannot create spool file " + p + ": " + errno_text(errno);
    return "";
  }
  return p;
}

SpoolDir::Charge SpoolDir::charge(std::uint64_t n, std::uint64_t own_unreleased_bytes,
                                  const std::function<bool()>& stop) {
  std::unique_lock lock(budget_mu_);
  if (limit_ > 0) {
    if (own_unreleased_bytes > limit_ || n > limit_ - own_unreleased_bytes)
      return Charge::kOverLimit;
    // It fits once the files released to the workers are read: wait for them.
    while (used_ > limit_ - n) {
      if (stop && stop()) return Charge::kStopped;
      freed_.wait_for(lock, std::chrono::milliseconds(100));
    }
  }
  used_ += n;
  peak_ = std::max(peak_, used_);
  return Charge::kBooked;
}

void SpoolDir::refund(std::uint64_t bytes) {
  {
    std::lock_guard lock(budget_mu_);
    used_ -= std::min(used_, bytes);
  }
  freed_.notify_all();
}

void SpoolDir::remove(const std::string& path, std::uint64_t bytes) {
  ::unlink(path.c_str());
  refund(bytes);
}

std::uint64_t SpoolDir::used_bytes() const {
  std::lock_guard lock(budget_mu_);
  return used_;
}

std::uint64_t SpoolDir::peak_bytes() const {
  std::lock_guard lock(budget_mu_);
  return peak_;
}

bool write_all(int fd, const char* data, std::size_t n, std::string& error) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      error = errno_text(errno);
      return false;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace chsync
