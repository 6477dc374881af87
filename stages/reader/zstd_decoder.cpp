#include "stages/reader/zstd_decoder.h"

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
constexpr std::size_t kFrameHeaderMaxBytes = 18;           // RFC 8878 §3.1.1: 4 + 14
constexpr std::uint64_t kMiB = 1u << 20;

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

std::string size_text(std::uint64_t bytes) {
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  return std::to_string(bytes) + " bytes";
}

}  // namespace

std::uint64_t zstd_window_budget_bytes(std::uint64_t max_memory_bytes) {
  const std::uint64_t quarter = std::max<std::uint64_t>(max_memory_bytes / 4, 8 * kMiB);
  return std::uint64_t{1} << floor_log2(quarter);
}

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

// Copies the next bytes of the current frame's header (from in_[from..]) into header_.
void ZstdDecoder::note_header_bytes(std::size_t from) {
  if (!at_frame_start_) return;
  const std::size_t want = kFrameHeaderMaxBytes - header_.size();
  const std::size_t take = std::min(want, in_size_ - std::min(from, in_size_));
  header_.append(in_.data() + from, take);
  if (header_.size() >= kFrameHeaderMaxBytes) at_frame_start_ = false;
}

long ZstdDecoder::read(int fd, char* buf, std::size_t n) {
  if (failed_) return -1;
  ZSTD_outBuffer out{buf, n, 0};
  while (out.pos == 0) {
    if (in_pos_ == in_size_) {
      const ssize_t r = ::read(fd, in_.data(), in_.size());
      if (r < 0) {
        if (errno == EINTR) continue;
        error_ = std::strerror(errno);
        failed_ = true;
        return -1;
      }
      if (r == 0) {
        if (pending_ != 0) {
          error_ = "truncated zstd stream";
          failed_ = true;
          return -1;
        }
        return 0;
      }
      in_size_ = static_cast<std::size_t>(r);
      in_pos_ = 0;
      note_header_bytes(0);
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
                 (asked ? size_text(asked) : std::string("more than ") + size_text(limit_)) +
                 ", over the limit of " + size_text(limit_) +
                 " (a quarter of --max-memory): raise --max-memory or recompress without --long";
      } else {
        error_ = std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc);
      }
      failed_ = true;
      // Bytes decoded before the damage are handed out first; the error comes next call.
      return out.pos > 0 ? static_cast<long>(out.pos) : -1;
    }
    pending_ = rc;
    if (rc == 0) {  // a frame ended: the next one starts at in_pos_
      header_.clear();
      at_frame_start_ = true;
      note_header_bytes(in_pos_);
    }
  }
  return static_cast<long>(out.pos);
}

}  // namespace chsync
