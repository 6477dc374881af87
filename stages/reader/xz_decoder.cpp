#include "stages/reader/xz_decoder.h"

#include "pipeline/text.h"

#include <lzma.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace chsync {

struct XzDecoder::Stream {
  lzma_stream s = LZMA_STREAM_INIT;
};

bool is_xz_magic(const unsigned char* p, std::size_t n) {
  static constexpr unsigned char kMagic[6] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
  return n >= 6 && std::memcmp(p, kMagic, 6) == 0;
}

bool is_lzip_magic(const unsigned char* p, std::size_t n) {
  return n >= 4 && std::memcmp(p, "LZIP", 4) == 0;
}

XzDecoder::XzDecoder(Format format, std::uint64_t max_window_bytes)
    : s_(std::make_unique<Stream>()),
      format_(format),
      limit_((max_window_bytes ? max_window_bytes : std::uint64_t{128} << 20) + (2u << 20)) {
  const lzma_ret rc = format == Format::kXz ? lzma_stream_decoder(&s_->s, limit_, LZMA_CONCATENATED)
                                            : lzma_lzip_decoder(&s_->s, limit_, LZMA_CONCATENATED);
  if (rc != LZMA_OK) {
    error_ = "cannot start the xz decoder";
    failed_ = true;
  }
  in_.resize(1 << 16);
}

XzDecoder::~XzDecoder() { lzma_end(&s_->s); }

long XzDecoder::read(int fd, char* buf, std::size_t n) {
  if (failed_) return -1;
  if (ended_ || n == 0) return 0;
  lzma_stream& s = s_->s;
  s.next_out = reinterpret_cast<std::uint8_t*>(buf);
  s.avail_out = n;
  const char* kind = format_ == Format::kXz ? "xz" : "lzip";
  while (s.avail_out == n) {
    if (s.avail_in == 0 && !eof_) {
      const ssize_t r = ::read(fd, in_.data(), in_.size());
      if (r < 0) {
        if (errno == EINTR) continue;
        error_ = errno_text(errno);
        failed_ = true;
        break;
      }
      if (r == 0) eof_ = true;
      s.next_in = in_.data();
      s.avail_in = static_cast<std::size_t>(r);
    }
    const lzma_ret rc = lzma_code(&s, eof_ ? LZMA_FINISH : LZMA_RUN);
    if (rc == LZMA_OK) continue;
    if (rc == LZMA_STREAM_END) {
      ended_ = true;
      break;
    }
    failed_ = true;
    if (rc == LZMA_MEMLIMIT_ERROR) {
      window_refused_ = true;
      error_ = dictionary_refusal(std::string(kind) + " stream", lzma_memusage(&s), limit_);
    } else if (rc == LZMA_BUF_ERROR) {
      error_ = std::string("truncated ") + kind + " stream";
    } else {
      error_ = std::string("corrupt ") + kind + " stream (liblzma error " +
               std::to_string(static_cast<int>(rc)) + ")";
    }
    break;
  }
  if (s.avail_out < n) return static_cast<long>(n - s.avail_out);
  return failed_ ? -1 : 0;
}

}  // namespace chsync
