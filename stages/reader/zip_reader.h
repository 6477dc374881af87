// Zips that libarchive must not read: its zip reader decodes LZMA (zip method 14) and XZ (95)
// members with liblzma's memory limit off, so a 200-byte member naming a 1.5 GiB dictionary was
// allocated whatever --max-memory said; PPMd (98) takes up to 256 MiB the same way; and it picks
// the method from the local header, keeping only its low byte, so a member can be LZMA to
// libarchive while its directory entry says "stored" (fuzz_archive_reader found all three).
//
// read_zip_directory reads a zip's central directory (zip64 included) and every member's local
// header. ArchiveReader (archive_reader.h) leaves a zip to libarchive only when every header
// names stored, deflate, deflate64 or bzip2 and both headers of every member agree; any other zip
// is read here, member by member from its directory, through ZipMemberReader: stored (0),
// deflate (8, zlib), LZMA and XZ (liblzma, under the decoder window budget); its members of
// other methods are named and not read.
//
// The layout read is PKWARE's APPNOTE: the end of central directory record (and its zip64
// locator and record), central directory headers, local file headers; method 14 data starts with
// a 2-byte version, a 2-byte properties size and the 5-byte LZMA properties; method 95 data is
// one .xz stream.
//
// Consumes: an open file descriptor of the zip (pread(2) only, the offset is never moved).
// Produces: the members' names, sizes and times; a member's bytes, checked against its CRC-32
// and size from the central directory. Thread: one thread at a time per reader. Errors: never
// throws; read() returns -1, error().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace chsync {

struct ZipMember {
  std::string name;  // as stored in the central directory
  // The central directory's method, low byte only as libarchive reads it: 0 stored, 8 deflate,
  // 14 LZMA, 95 XZ, ...
  std::uint16_t method = 0;
  std::uint16_t flags = 0;  // general purpose bit flag (bit 0: encrypted)
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_bytes = 0;
  std::uint64_t uncompressed_bytes = 0;
  std::uint64_t local_header_offset = 0;  // in the file (a self-extracting prefix included)
  bool local_header_found = false;        // a local header stands at that offset
  std::uint16_t local_method = 0;         // the method its local header names (low byte)
  std::int64_t mtime_s = 0;               // extended timestamp, else the DOS time
  // The central directory or the local header names a method whose decoder libarchive sizes
  // from the data with no limit (LZMA, XZ, PPMd, zstd, ...): any but stored, deflate, deflate64
  // and bzip2, whose memory is small and fixed.
  bool unbounded() const noexcept;
};

struct ZipDirectory {
  std::vector<ZipMember> members;  // in directory order
  bool any_unbounded = false;      // some member is unbounded() (LZMA, XZ, PPMd, ...)
  // Every entry the end record counts was read, names are unique, and every member's local
  // header is where its entry says and names the same method.
  bool consistent = false;
  // libarchive may read this zip: nothing in it can reach its unbounded LZMA decoder.
  bool libarchive_may_read() const noexcept { return consistent && !any_unbounded; }
};

// Reads the central directory of the zip open on `fd` (zip64 included; a prefix before the zip,
// as in a self-extracting zip, is allowed) and each member's local header into `out`. False
// when the directory cannot be found or read (or is over 64 MiB, about a million entries).
bool read_zip_directory(int fd, ZipDirectory& out);

// True when `p` starts with a zip local file header's signature ("PK\3\4").
bool is_zip_local_header(const unsigned char* p, std::size_t n) noexcept;

// Methods whose decoders in libarchive take small, fixed memory: stored (0), deflate (8),
// deflate64 (9), bzip2 (12); `method` is the low byte, as libarchive reads it.
bool zip_method_is_bounded(std::uint16_t method) noexcept;

class ZipMemberReader {
 public:
  // max_window_bytes: the LZMA/XZ dictionary budget (decoder_window_budget_bytes; 0: 128 MiB).
  // The decoder may use it plus 2 MiB of state, as XzDecoder.
  ZipMemberReader(int fd, ZipMember member, std::uint64_t max_window_bytes);
  ~ZipMemberReader();
  ZipMemberReader(const ZipMemberReader&) = delete;
  ZipMemberReader& operator=(const ZipMemberReader&) = delete;

  // > 0 bytes, 0 at the member's end, -1 on error (bytes before damage are returned first).
  long read(char* buf, std::size_t n);
  const std::string& error() const noexcept { return error_; }
  // The member asked for a dictionary over the budget; nothing of it was allocated.
  bool window_refused() const noexcept { return window_refused_; }

 private:
  bool start();
  bool start_lzma();
  bool fail(std::string why);
  // One decoding step over in/out; sets ended_ at the end of the member's stream.
  bool step(const unsigned char*& in, std::size_t& in_bytes, unsigned char*& out,
            std::size_t& out_bytes, bool input_done);

  struct Stream;
  std::unique_ptr<Stream> s_;
  int fd_;
  ZipMember m_;
  std::uint64_t limit_bytes_;
  std::uint64_t next_in_offset_ = 0;  // file offset of the next compressed byte to read
  std::uint64_t in_left_bytes_ = 0;   // compressed bytes of the member not yet read
  std::uint64_t out_bytes_ = 0;
  std::uint32_t crc_ = 0;
  std::vector<unsigned char> in_;
  const unsigned char* in_next_ = nullptr;
  std::size_t in_avail_ = 0;
  bool started_ = false, ended_ = false, failed_ = false, window_refused_ = false;
  std::string error_;
};

}  // namespace chsync
