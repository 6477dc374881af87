// Run lock: `<state path>.lock`, held with flock(LOCK_EX | LOCK_NB) for the life of the store.
//
// The file holds "pid start_time_iso hostname\n" of the holder, for the message a second run
// prints. flock locks belong to the open file description, so the kernel releases them when the
// holder dies (kill -9 included): a stale lock of a killed run is taken over without any cleanup.
// The lock file is never unlinked (unlinking would let two runs lock two different inodes). Errors:
// StateError kLocked when a live process holds it (message names its pid and start time), kIo when
// the file cannot be created or locked.
#pragma once

#include <string>

namespace chsync {

class RunLock {
 public:
  // Takes the lock or throws StateError. lock_path is the full path of the lock file.
  explicit RunLock(std::string lock_path);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace chsync
