// TempDir: the one temporary-directory helper of the C++ tests. A fresh private directory under
// the system temp dir (mkdtemp, so parallel ctest runs never share one), removed with everything
// in it when the object goes. Throws std::runtime_error when it cannot be made.
#pragma once

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace chsync::test {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "chsync-test") {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The path of `name` inside the directory (not created).
  std::string file(std::string_view name) const { return (path_ / name).string(); }
  // Writes `content` to `name` inside the directory; returns its path.
  std::string file(std::string_view name, std::string_view content) const {
    std::string p = file(name);
    std::ofstream(p, std::ios::binary).write(content.data(), std::streamsize(content.size()));
    return p;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace chsync::test
