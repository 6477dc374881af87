// Spool: a private temporary folder for archive members that cannot wait in memory.
//
// The archive feeder reads a tar/zip in member order, but a bundle is only mapped once all of its
// members have arrived, and members of one bundle may be scattered. Members that would push the
// bytes held for incomplete bundles over the cap (or that are large on their own) are written
// here and read back by the worker as plain files, so memory stays bounded by --max-memory
// whatever the archive's size or order (docs/inputs.md has the measurements behind the choice).
// The folder is created on first use (mkdtemp under std::filesystem::temp_directory_path(),
// honouring TMPDIR) and removed with everything in it by the destructor.
// Disk cap (--max-spool, issue 20 #13: a 21 KB .tar.zst spooled 401 MB): the writer books
// every byte with charge() before writing it; the reader of a file gives its bytes back with
// remove(). A charge that cannot fit even once every file released to the workers is read
// (the caller's own unreleased bytes plus n over the limit) fails at once: the member is left
// out with an error. One that would fit later waits for the workers (backpressure, like the
// work queue), checking `stop` every 100 ms.
// Thread: create_file() and the destructor from one thread; files may be read and removed by
// others; charge() and remove() from any thread.
// Errors: create_file() returns an empty path and fills `error` (disk full, no temp folder).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace chsync {

class SpoolDir {
 public:
  // limit_bytes: the most bytes of spool files on disk at once (0: no limit).
  explicit SpoolDir(std::uint64_t limit_bytes = 0) : limit_(limit_bytes) {}
  SpoolDir(const SpoolDir&) = delete;
  SpoolDir& operator=(const SpoolDir&) = delete;
  ~SpoolDir();

  // A new, empty file in the folder, opened for writing (fd returned in `fd`, caller closes).
  std::string create_file(int& fd, std::string& error);
  // The folder ("" until the first create_file).
  const std::string& path() const noexcept { return dir_; }
  std::uint64_t files_created() const noexcept { return files_; }

  enum class Charge { kBooked, kOverLimit, kStopped };
  // Books n more bytes about to be written. `own_unreleased_bytes`: bytes the caller has booked
  // for files no reader can remove yet (its incomplete bundles and the file being written); only
  // the rest can come back. kOverLimit: own + n is over the limit (nothing booked); kStopped:
  // `stop` turned true while waiting for readers (nothing booked).
  Charge charge(std::uint64_t n, std::uint64_t own_unreleased_bytes,
                const std::function<bool()>& stop);
  // Removes a spool file and gives back the `bytes` booked for it.
  void remove(const std::string& path, std::uint64_t bytes);
  // Gives back bytes booked for a file that was removed some other way.
  void refund(std::uint64_t bytes);
  std::uint64_t limit_bytes() const noexcept { return limit_; }
  std::uint64_t used_bytes() const;
  std::uint64_t peak_bytes() const;

 private:
  std::mutex mu_;
  std::string dir_;
  std::uint64_t files_ = 0;
  const std::uint64_t limit_;
  mutable std::mutex budget_mu_;
  std::condition_variable freed_;
  std::uint64_t used_ = 0, peak_ = 0;
};

// Writes all of `data` to fd; false (with errno text in `error`) on failure.
bool write_all(int fd, const char* data, std::size_t n, std::string& error);

}  // namespace chsync
