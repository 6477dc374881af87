// XzDecoder: .xz and .lz (lzip) streams through liblzma with a memory limit, so a .tar.xz whose
// dictionary is over the window budget is refused instead of allocated (libarchive's own xz
// filter allows up to 1 GiB). The limit is the budget plus 2 MiB of decoder state, so `xz -9`
// (64 MiB dictionary, 65 MiB to decode) is read at the default --max-memory.
// Consumes/produces, threads, errors: see bounded_decoder.h. Concatenated streams are read.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "stages/reader/bounded_decoder.h"

namespace chsync {

// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): BoundedDecoder deletes the copies
class XzDecoder : public BoundedDecoder {
 public:
  enum class Format { kXz, kLzip };
  // max_window_bytes: the dictionary budget (0: 128 MiB).
  XzDecoder(Format format, std::uint64_t max_window_bytes);
  ~XzDecoder() override;

  long read(int fd, char* buf, std::size_t n) override;
  std::uint64_t memory_limit_bytes() const noexcept { return limit_; }

 private:
  struct Stream;
  std::unique_ptr<Stream> s_;
  Format format_;
  std::uint64_t limit_ = 0;
  std::vector<unsigned char> in_;
  bool eof_ = false, ended_ = false, failed_ = false;
};

// True when `p` starts with the .xz magic bytes (FD '7zXZ' 00) / the lzip magic ("LZIP").
bool is_xz_magic(const unsigned char* p, std::size_t n);
bool is_lzip_magic(const unsigned char* p, std::size_t n);

}  // namespace chsync
