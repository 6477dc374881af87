// Zip members compressed with LZMA (zip method 14) or XZ (method 95), decoded by chsync under the
// decoder window budget instead of by libarchive, whose zip reader runs liblzma without a memory
// limit: a 200-byte member naming a 1.5 GiB dictionary was allocated whatever --max-memory said.
//
// read_zip_directory reads a zip's central directory (zip64 included) and every member's local
// header; ArchiveReader (archive_reader.h) then reads each LZMA/XZ member through a
// ZipLzmaReader and leaves the other members to libarchive. The layout read here is PKWARE's
// APPNOTE: the end of central directory record (and its zip64 locator and record), central
// directory headers, local file headers; method 14 data starts with a 2-byte version, a 2-byte
// properties size and the 5-byte LZMA properties; method 95 data is one .xz stream.
//
// Consumes: an open file descriptor of the zip (pread(2) only, the offset is never moved).
// Produces: the member's bytes, checked against its CRC-32 and size from the central directory.
// Thread: one thread at a time per reader. Errors: never throws; read() returns -1, error().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace chsync {

struct ZipLzmaMember {
  // The central directory's method, low byte only as libarchive reads it: 14 LZMA, 95 XZ, ...
  std::uint16_t method = 0;
  std::uint16_t flags = 0;  // general purpose bit flag (bit 0: encrypted)
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_bytes = 0;
  std::uint64_t uncompressed_bytes = 0;
  std::uint64_t local_header_offset = 0;  // in the file (a self-extracting prefix included)
  bool local_header_found = false;        // a local header stands at that offset
  std::uint16_t local_method = 0;         // the method its local header names (low byte)
  // The central directory or the local header names LZMA/XZ (libarchive decodes by the local
  // header's method, so a zip whose two headers disagree must not reach it).
  bool lzma() const noexcept;
};

// Every member of a zip's central directory, by name as stored there (a name can repeat).
struct ZipDirectory {
  std::unordered_map<std::string, std::vector<ZipLzmaMember>> by_name;
  bool any_lzma = false;        // some member's directory entry or local header names LZMA/XZ
  bool any_unverified = false;  // some member has no local header where its entry says
};

// Reads the central directory of the zip open on `fd` (zip64 included; a prefix before the zip,
// as in a self-extracting zip, is allowed) and each member's local header method into `out`.
// False when the directory cannot be found or read (or is over 64 MiB, about a million
// entries).
bool read_zip_directory(int fd, ZipDirectory& out);

class ZipLzmaReader {
 public:
  // max_window_bytes: the dictionary budget (decoder_window_budget_bytes; 0: 128 MiB). The
  // decoder may use it plus 2 MiB of state, as XzDecoder.
  ZipLzmaReader(int fd, const ZipLzmaMember& member, std::uint64_t max_window_bytes);
  ~ZipLzmaReader();
  ZipLzmaReader(const ZipLzmaReader&) = delete;
  ZipLzmaReader& operator=(const ZipLzmaReader&) = delete;

  // > 0 bytes, 0 at the member's end, -1 on error (bytes before damage are returned first).
  long read(char* buf, std::size_t n);
  const std::string& error() const noexcept { return error_; }
  // The member asked for a dictionary over the budget; nothing of it was allocated.
  bool window_refused() const noexcept { return window_refused_; }

 private:
  bool start();
  bool fail(std::string why);

  struct Stream;
  std::unique_ptr<Stream> s_;
  int fd_;
  ZipLzmaMember m_;
  std::uint64_t limit_bytes_;
  std::uint64_t next_in_offset_ = 0;  // file offset of the next compressed byte to read
  std::uint64_t in_left_bytes_ = 0;   // compressed bytes of the member not yet read
  std::uint64_t out_bytes_ = 0;
  std::uint32_t crc_ = 0;
  std::vector<unsigned char> in_;
  bool started_ = false, ended_ = false, failed_ = false, window_refused_ = false;
  std::string error_;
};

}  // namespace chsync
