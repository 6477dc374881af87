#include "stages/reader/bounded_decoder.h"

#include <fmt/format.h>

#include <algorithm>

#include "stages/reader/xz_decoder.h"
#include "stages/reader/zstd_decoder.h"

namespace chsync {

std::uint64_t decoder_window_budget_bytes(std::uint64_t max_memory_bytes) {
  const std::uint64_t quarter = std::max<std::uint64_t>(max_memory_bytes / 4, 8u << 20);
  std::uint64_t pow2 = 1;
  while (pow2 <= quarter / 2) pow2 <<= 1;
  return pow2;
}

std::unique_ptr<BoundedDecoder> make_bounded_decoder(const unsigned char* head, std::size_t n,
                                                     std::uint64_t max_window_bytes) {
  if (is_zstd_magic(head, n)) return std::make_unique<ZstdDecoder>(max_window_bytes);
  if (is_xz_magic(head, n))
    return std::make_unique<XzDecoder>(XzDecoder::Format::kXz, max_window_bytes);
  if (is_lzip_magic(head, n))
    return std::make_unique<XzDecoder>(XzDecoder::Format::kLzip, max_window_bytes);
  return nullptr;
}

std::string window_size_text(std::uint64_t bytes) {
  constexpr std::uint64_t kMiB = 1u << 20;
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  if (bytes >= kMiB) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / kMiB);
  return std::to_string(bytes) + " bytes";
}

std::string dictionary_refusal(std::string_view what, std::uint64_t need_bytes,
                               std::uint64_t limit_bytes) {
  return fmt::format(
      "{} needs {} to decode (its dictionary), over the limit of {} (a quarter of --max-memory, "
      "plus 2 MiB): raise --max-memory or recompress with a smaller dictionary",
      what, window_size_text(need_bytes), window_size_text(limit_bytes));
}

}  // namespace chsync
