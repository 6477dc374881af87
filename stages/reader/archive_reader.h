// ArchiveReader: the one place chsync opens an archive (tar, tar.gz/zst/xz/bz2, zip) with
// libarchive. Discover lists members with it, the sync feeder and `chsync bench` read them.
//
// Consumes: a path. Produces: the members in archive order (name, size when the header has one,
// mtime) and each member's bytes. Owns: the libarchive handle (freed by the destructor).
// Thread: one thread at a time. Blocks on file I/O and decompression only.
// Decoders: a zstd, xz or lzip compressed archive (found by its magic number, whatever its name)
// is decompressed here by a BoundedDecoder (stages/reader/bounded_decoder.h) whose window is
// bounded by max_window_bytes, and libarchive reads the tar inside. libarchive's own zstd, xz,
// lzip and lzma filters are never enabled (they accept windows of 128 MiB to 1 GiB, outside
// --max-memory), so such a stream nested in another filter is refused too, and .tar.lzma
// (LZMA-alone, no magic number) is not read. A stream asking for a larger window fails the
// archive (window_refused(), error() names the sizes) before the window is allocated. The other
// filters (gzip, bzip2, lz4, ...) are libarchive's: their memory is small and fixed. Formats:
// tar (every dialect) and zip only, not libarchive's others (7z, RAR, cab, ...: their own
// dictionaries are beyond any limit here). Zips: chsync reads the central directory and every
// local header first (zip_reader.h); libarchive reads the zip only when no header names LZMA or
// XZ (zip methods 14/95, which its zip reader decodes with no memory limit) and both headers of
// every member agree. Any other zip is read by chsync itself from its directory (stored,
// deflate, LZMA, XZ; LZMA/XZ under the same window budget): a member over the budget fails
// alone (read() returns -1, window_refused() and error() say why) and the walk goes on. A zip
// cut before its directory (a partial download) is read by libarchive through its local
// headers, where LZMA/XZ members are not read at all; a zip inside a compression filter
// (.zip.gz, .zip.zst) is not read (libarchive's zip reader needs to seek).
// Errors: never throws. An archive that cannot be opened has is_open() false and error() says
// why; a damaged header ends the walk (Next::kDamaged); damaged data makes read() return -1.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stages/reader/zip_reader.h"

struct archive;
struct archive_entry;

namespace chsync {

struct ArchiveEntry {
  std::string name;         // member path, any leading "./" removed
  bool regular = false;     // a regular file (not a directory, link, device)
  bool size_known = false;  // zip streams may not declare a size
  std::uint64_t size = 0;   // declared size (0 when unknown)
  std::int64_t mtime_s = 0;
};

class BoundedDecoder;

class ArchiveReader {
 public:
  // max_window_bytes: the largest decoder window accepted (decoder_window_budget_bytes of
  // --max-memory); 0: 128 MiB.
  ArchiveReader(const std::string& path, std::uint64_t max_window_bytes);
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
  // The zstd decoder's message when it failed, else libarchive's last message, else `fallback`.
  std::string error(const char* fallback) const;
  // The archive is zstd/xz/lzip, or the current member is a zip LZMA/XZ member, and asked for a
  // decoder window over max_window_bytes.
  bool window_refused() const noexcept;
  // read() failed for a reason of the current member alone (a zip LZMA/XZ member read by
  // chsync: its dictionary, CRC or data; a member of a zip libarchive reads through its central
  // directory, which finds the next member without this one's data), not of the archive: the
  // next member can be read.
  bool damage_is_local() const noexcept {
    return (member_ && !member_->error().empty()) || !member_error_.empty() || data_damage_local_;
  }

 private:
  static long read_decoded(struct archive* a, void* self, const void** buf);
  Next next_own_zip_member(ArchiveEntry& entry);
  void check_streamed_zip_member();

  struct archive* ar_ = nullptr;
  bool open_ = false;
  int fd_ = -1;  // the archive file: decoders and zip members read it, zip headers are checked
  std::unique_ptr<BoundedDecoder> dec_;
  std::uint64_t max_window_bytes_ = 0;
  std::unique_ptr<ZipDirectory> zip_;        // a zip read through its directory: its members
  bool own_zip_ = false;                     // chsync reads the zip, not libarchive
  std::vector<std::size_t> own_order_;       // zip_->members by the offset of their data
  std::size_t own_next_ = 0;                 // the next of own_order_ that next() gives
  std::unique_ptr<ZipMemberReader> member_;  // the current member, when chsync reads it
  std::string member_error_;        // the current member is refused before any byte is decoded
  bool data_damage_local_ = false;  // libarchive failed on this member's data, not the archive
  std::string zip_error_;           // the zip's directory could not be read by chsync
  bool zip_checked_ = false;        // the format was looked at (on the first header)
  bool zip_streaming_ = false;      // a zip without a directory, read by its local headers
  bool walk_ended_ = false;         // no member can be read safely any more: next() says kDamaged
  std::vector<char> out_;           // decompressed bytes handed to libarchive
};

}  // namespace chsync
