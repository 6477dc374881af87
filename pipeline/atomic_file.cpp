#include "pipeline/atomic_file.h"

#include "pipeline/text.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace chsync {

namespace {
bool write_all(int fd, std::string_view content) {
  while (!content.empty()) {
    const ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    content.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}
}  // namespace

bool replace_file(const std::string& path, std::string_view content, mode_t mode,
                  std::string& error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // /dev/stdout, a FIFO: no rename possible; write in place (no O_CREAT: it exists).
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      error = path + ": " + errno_text(errno);
      return false;
    }
    const bool ok = write_all(fd, content);
    const int saved = errno;
    ::close(fd);
    if (!ok) error = path + ": write failed: " + errno_text(saved);
    return ok;
  }
  std::vector<char> tmpl(path.begin(), path.end());
  const char suffix[] = ".tmp.XXXXXX";
  tmpl.insert(tmpl.end(), suffix, suffix + sizeof(suffix));  // with the NUL
  const int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) {
    error = std::string(tmpl.data()) + ": " + errno_text(errno);
    return false;
  }
  const std::string tmp(tmpl.data());
  bool ok = ::fchmod(fd, mode) == 0 && write_all(fd, content);
  int saved = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    error = path + ": " + errno_text(saved);
    ::unlink(tmp.c_str());
  }
  return ok;
}

void restrict_umask() noexcept {
  const mode_t old = ::umask(077);
  ::umask(old | 077);
}

}  // namespace chsync
