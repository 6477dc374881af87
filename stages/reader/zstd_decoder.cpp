#include "stages/reader/zstd_decoder.h"

#include "pipeline/text.h"

#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace chsync {
namespace {

constexpr std::uint32_t kFrameMagic = 0xFD2FB528u;
constexpr std::uint32_t kSkippableMagic = 0x184D2A50u;  // ..0x184D2A5F
constexpr std::size_t kFrameHeaderMaxBytes = 18;        // RFC 8878 §3.1.1: 4 + 14

std::uint64_t le(const unsigned char* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = n; i > 0; --i) v = (v << 8) | p[i - 1];
  return v;
}

unsigned floor_log2(std::uint64_t v) {
  unsigned log = 0;
  while (v > 1) {
    v >>= 1;
    ++log;
  }
  return log;
}

}  // namespace

bool is_zstd_magic(const unsigned char* p, std::size_t n) {
  if (n < 4) return false;
  const auto m = static_cast<std::uint32_t>(le(p, 4));
  return m == kFrameMagic || (m & 0xFFFFFFF0u) == kSkippableMagic;
}

// RFC 8878 §3.1.1.1: Frame_Header_Descriptor, then Window_Descriptor unless Single_Segment_Flag,
// Dictionary_ID, Frame_Content_Size. A single-segment frame's window is its content size.
std::uint64_t zstd_frame_window_bytes(const unsigned char* p, std::size_t n) {
  if (n < 5 || le(p, 4) != kFrameMagic) return 0;
  const unsigned fhd = p[4];
  const unsigned fcs_flag = fhd >> 6;
  const bool single_segment = (fhd >> 5) & 1;
  if (!single_segment) {
    if (n < 6) return 0;
    const unsigned exponent = p[5] >> 3, mantissa = p[5] & 7;
    const std::uint64_t base = std::uint64_t{1} << (10 + exponent);
    return base + base / 8 * mantissa;
  }
  static constexpr std::size_t kDictIdBytes[4] = {0, 1, 2, 4};
  static constexpr std::size_t kFcsBytes[4] = {1, 2, 4, 8};  // flag 0 with single segment: 1
  const std::size_t pos = 5 + kDictIdBytes[fhd & 3];
  const std::size_t fcs_bytes = kFcsBytes[fcs_flag];
  if (n < pos + fcs_bytes) return 0;
  return le(p + pos, fcs_bytes) + (fcs_bytes == 2 ? 256 : 0);
}

ZstdDecoder::ZstdDecoder(std::uint64_t max_window_bytes) : ds_(ZSTD_createDCtx()) {
  const ZSTD_bounds b = ZSTD_dParam_getBounds(ZSTD_d_windowLogMax);
  int log = 27;  // libzstd's default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT)
  if (max_window_bytes > 0) log = static_cast<int>(floor_log2(max_window_bytes));
  if (!ZSTD_isError(b.error)) log = std::clamp(log, b.lowerBound, b.upperBound);
  ZSTD_DCtx_setParameter(ds_, ZSTD_d_windowLogMax, log);
  limit_ = std::uint64_t{1} << log;
  in_.resize(ZSTD_DStreamInSize());
}

ZstdDecoder::~ZstdDecoder() { ZSTD_freeDCtx(ds_); }

// Makes at least `want` unconsumed input bytes available (fewer only at the end of the file):
// moves the rest to the front of in_ and reads more. False on a read error (error_ set).
bool ZstdDecoder::fill(int fd, std::size_t want) {
  if (in_size_ - in_pos_ >= want || eof_) return true;
  std::memmove(in_.data(), in_.data() + in_pos_, in_size_ - in_pos_);
  in_size_ -= in_pos_;
  in_pos_ = 0;
  while (in_size_ < want && !eof_) {
    const ssize_t r = ::read(fd, in_.data() + in_size_, in_.size() - in_size_);
    if (r < 0) {
      if (errno == EINTR) continue;
      error_ = errno_text(errno);
      return false;
    }
    if (r == 0) eof_ = true;
    in_size_ += static_cast<std::size_t>(r);
  }
  return true;
}

long ZstdDecoder::fail(std::size_t decoded) {
  failed_ = true;
  // Bytes decoded before the damage are handed out first; the error comes with the next call.
  return decoded > 0 ? static_cast<long>(decoded) : -1;
}

long ZstdDecoder::read(int fd, char* buf, std::size_t n) {
  if (failed_) return -1;
  ZSTD_outBuffer out{buf, n, 0};
  while (out.pos == 0) {
    if (at_frame_start_) {
      // libzstd must not see a frame before its magic number is checked here: it still decodes
      // legacy frames (v0.5-v0.7), whose decoders ignore ZSTD_d_windowLogMax (a fuzzed 18-byte
      // v0.5 frame allocated 64 MiB under an 8 MiB limit). The header is kept to name the
      // window if the frame is refused.
      if (!fill(fd, kFrameHeaderMaxBytes)) return fail(out.pos);
      const std::size_t avail = in_size_ - in_pos_;
      const auto* p = reinterpret_cast<const unsigned char*>(in_.data() + in_pos_);
      if (avail == 0) return 0;  // the end of the stream, between frames
      if (avail < 4) {
        error_ = "truncated zstd stream";
        return fail(out.pos);
      }
      if (!is_zstd_magic(p, avail)) {
        error_ = "not a zstd frame (damaged, or a legacy zstd format, which is not read)";
        return fail(out.pos);
      }
      header_.assign(in_.data() + in_pos_, std::min(avail, kFrameHeaderMaxBytes));
      at_frame_start_ = false;
    }
    if (in_pos_ == in_size_) {
      in_size_ = in_pos_ = 0;
      if (!fill(fd, 1)) return fail(out.pos);
      if (in_size_ == 0) {  // the file ends inside a frame
        error_ = "truncated zstd stream";
        return fail(out.pos);
      }
    }
    ZSTD_inBuffer input{in_.data(), in_size_, in_pos_};
    const std::size_t rc = ZSTD_decompressStream(ds_, &out, &input);
    in_pos_ = input.pos;
    if (ZSTD_isError(rc)) {
      if (ZSTD_getErrorCode(rc) == ZSTD_error_frameParameter_windowTooLarge) {
        window_refused_ = true;
        const std::uint64_t asked = zstd_frame_window_bytes(
            reinterpret_cast<const unsigned char*>(header_.data()), header_.size());
        error_ = "zstd frame asks for a decoder window of " +
                 (asked ? window_size_text(asked)
                        : std::string("more than ") + window_size_text(limit_)) +
                 ", over the limit of " + window_size_text(limit_) +
                 " (a quarter of --max-memory): raise --max-memory or recompress without --long";
      } else {
        error_ = std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc);
      }
      return fail(out.pos);
    }
    if (rc == 0) at_frame_start_ = true;  // a frame ended: the next one starts at in_pos_
  }
  return static_cast<long>(out.pos);
}

}  // namespace chsync
