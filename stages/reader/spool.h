// Spool: a private temporary folder for archive members that cannot wait in memory.
//
// The archive feeder reads a tar/zip in member order, but a bundle is only mapped once all of its
// members have arrived, and members of one bundle may be scattered. Members that would push the
// bytes held for incomplete bundles over the cap (or that are large on their own) are written
// here and read back by the worker as plain files, so memory stays bounded by --max-memory
// whatever the archive's size or order (docs/inputs.md has the measurements behind the choice).
// The folder is created on first use (mkdtemp under std::filesystem::temp_directory_path(),
// honouring TMPDIR) and removed with everything in it by the destructor.
// Thread: create() and the destructor from one thread; files may be read and removed by others.
// Errors: create_file() returns an empty path and fills `error` (disk full, no temp folder).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace chsync {

class SpoolDir {
 public:
  SpoolDir() = default;
  SpoolDir(const SpoolDir&) = delete;
  SpoolDir& operator=(const SpoolDir&) = delete;
  ~SpoolDir();

  // A new, empty file in the folder, opened for writing (fd returned in `fd`, caller closes).
  std::string create_file(int& fd, std::string& error);
  // The folder ("" until the first create_file).
  const std::string& path() const noexcept { return dir_; }
  std::uint64_t files_created() const noexcept { return files_; }

 private:
  std::mutex mu_;
  std::string dir_;
  std::uint64_t files_ = 0;
};

// Writes all of `data` to fd; false (with errno text in `error`) on failure.
bool write_all(int fd, const char* data, std::size_t n, std::string& error);

}  // namespace chsync
