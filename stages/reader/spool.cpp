#include "stages/reader/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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
      error = "cannot create spool folder in " + base.string() + ": " + std::strerror(errno);
      return "";
    }
    dir_ = buf.data();
  }
  std::string p = dir_ + "/m" + std::to_string(files_++);
  fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = "cannot create spool file " + p + ": " + std::strerror(errno);
    return "";
  }
  return p;
}

bool write_all(int fd, const char* data, std::size_t n, std::string& error) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      error = std::strerror(errno);
      return false;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace chsync
