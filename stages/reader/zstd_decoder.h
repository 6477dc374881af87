// ZstdDecoder: a streaming zstd decoder whose window is bounded, shared by the reader (.jsonl.zst)
// and ArchiveReader (.tar.zst, fed to libarchive already decompressed).
//
// Why: a zstd frame names the window its decoder must keep (RFC 8878 §3.1.1.1.2); `zstd --long=27`
// asks for 128 MiB, `--long=31` for 2 GiB, and a decoder allocates it whatever --max-memory says
// (issue 20 #13: a 21 KB .tar.zst took 152 MB). Here a frame asking for more than
// max_window_bytes fails the stream with a clear error (window_refused() true) before anything
// is allocated for it (libzstd's ZSTD_d_windowLogMax, so the check holds for every frame of a
// multi-frame stream, not only the first). Only zstd frames (RFC 8878) and skippable frames are
// passed to libzstd: its legacy decoders (v0.5-v0.7 frames) ignore the window limit.
// Consumes: a file descriptor (read with read(2), never seeked). Produces: decompressed bytes.
// Memory: the window (at most max_window_bytes) plus libzstd's block and input buffers (~256 KiB).
// Thread: one thread at a time. Errors: never throws; read() returns -1 and error() says why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stages/reader/bounded_decoder.h"

struct ZSTD_DCtx_s;

namespace chsync {

// True when `p` starts with a zstd frame or a skippable frame (needs 4 bytes).
bool is_zstd_magic(const unsigned char* p, std::size_t n);

// The window a zstd frame header at `p` asks for, in bytes (the frame content size for a
// single-segment frame); 0 when `p` does not hold a whole zstd frame header (or a skippable one).
std::uint64_t zstd_frame_window_bytes(const unsigned char* p, std::size_t n);

// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): BoundedDecoder deletes the copies
class ZstdDecoder : public BoundedDecoder {
 public:
  // max_window_bytes: the largest window accepted (rounded down to a power of two, at least
  // 1 KiB); 0 keeps libzstd's default limit (128 MiB).
  explicit ZstdDecoder(std::uint64_t max_window_bytes);
  ~ZstdDecoder() override;

  // Decompresses from `fd` into buf: > 0 bytes, 0 at the end of the stream, -1 on error (bytes
  // decoded before damage are returned first; the error comes with the next call).
  long read(int fd, char* buf, std::size_t n) override;
  // The limit in force (a power of two), in bytes.
  std::uint64_t window_limit_bytes() const noexcept { return limit_; }

 private:
  bool fill(int fd, std::size_t want);
  long fail(std::size_t decoded);

  ZSTD_DCtx_s* ds_;
  std::uint64_t limit_ = 0;
  std::vector<char> in_;
  std::size_t in_size_ = 0, in_pos_ = 0;  // unconsumed input is in_[in_pos_, in_size_)
  bool eof_ = false;
  // The first bytes of the current frame, kept to name its window when it is refused.
  std::string header_;
  bool at_frame_start_ = true;  // the next input byte starts a frame (magic not checked yet)
  bool failed_ = false;
};

}  // namespace chsync
