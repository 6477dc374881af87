// ArchiveReader: the one place chsync opens an archive (tar, tar.gz/zst/xz/bz2, zip) with
// libarchive. Discover lists members with it, the sync feeder and `chsync bench` read them.
//
// Consumes: a path. Produces: the members in archive order (name, size when the header has one,
// mtime) and each member's bytes. Owns: the libarchive handle (freed by the destructor).
// Thread: one thread at a time. Blocks on file I/O and decompression only.
// Errors: never throws. An archive that cannot be opened has is_open() false and error() says
// why; a damaged header ends the walk (Next::kDamaged); damaged data makes read() return -1.
#pragma once

#include <cstdint>
#include <string>

struct archive;

namespace chsync {

struct ArchiveEntry {
  std::string name;         // member path, any leading "./" removed
  bool regular = false;     // a regular file (not a directory, link, device)
  bool size_known = false;  // zip streams may not declare a size
  std::uint64_t size = 0;   // declared size (0 when unknown)
  std::int64_t mtime_s = 0;
};

class ArchiveReader {
 public:
  explicit ArchiveReader(const std::string& path);
  ~ArchiveReader();
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;

  bool is_open() const noexcept { return open_; }

  enum class Next { kEntry, kEnd, kDamaged };
  // Moves to the next member (the rest of the current one is skipped by libarchive).
  Next next(ArchiveEntry& entry);
  // Reads the current member's data: > 0 bytes read, 0 at its end, -1 when the data is damaged.
  long read(char* buf, std::size_t n);
  // Skips the rest of the current member; false when its data is damaged.
  bool skip();
  // libarchive's last message, or `fallback` when it has none.
  std::string error(const char* fallback) const;

 private:
  struct archive* ar_ = nullptr;
  bool open_ = false;
};

}  // namespace chsync
