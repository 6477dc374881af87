// BoundedDecoder: the stream decompressors chsync runs itself so that their memory counts
// against --max-memory (issue 20 #13): a zstd window or an xz/lzip dictionary is named in the
// stream's headers and a decoder allocates it whatever the caller's budget, so a 21 KB archive
// could take 128 MiB (zstd --long=27) or 1.5 GiB (xz --lzma2=dict=1536MiB). Each decoder here
// refuses a stream asking for more than its window budget before allocating it
// (window_refused(), error() names both sizes).
// Consumes: a file descriptor (read(2), never seeked). Produces: decompressed bytes.
// Thread: one thread at a time per decoder. Errors: never throws; read() returns -1, error().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace chsync {

class BoundedDecoder {
 public:
  BoundedDecoder() = default;
  virtual ~BoundedDecoder() = default;
  // A decoder owns its library stream (and its window): it is never copied, whatever its kind.
  BoundedDecoder(const BoundedDecoder&) = delete;
  BoundedDecoder& operator=(const BoundedDecoder&) = delete;
  // Decompresses from `fd` into buf: > 0 bytes, 0 at the end of the stream, -1 on error (bytes
  // decoded before damage are returned first; the error comes with the next call).
  virtual long read(int fd, char* buf, std::size_t n) = 0;
  const std::string& error() const noexcept { return error_; }
  // The stream failed because it asked for a window (dictionary) over the budget.
  bool window_refused() const noexcept { return window_refused_; }

 protected:
  std::string error_;
  bool window_refused_ = false;
};

// The window a decoder may keep for a --max-memory: a quarter of it, at least 8 MiB, rounded
// down to a power of two (libzstd bounds windows by their log). 64 MiB at the default 256 MiB.
std::uint64_t decoder_window_budget_bytes(std::uint64_t max_memory_bytes);

// The bounded decoder for a stream whose first bytes are `head` (zstd or skippable frame, xz,
// lzip), or null when it is none of these (libarchive reads it). max_window_bytes: the window
// budget (0: 128 MiB, libzstd's default limit).
std::unique_ptr<BoundedDecoder> make_bounded_decoder(const unsigned char* head, std::size_t n,
                                                     std::uint64_t max_window_bytes);

// "64 MiB" for whole MiB, else "N bytes" (error messages).
std::string window_size_text(std::uint64_t bytes);
// The refusal of an LZMA-family stream whose dictionary needs more than the limit, one wording for
// every reader: "<what> needs N MiB to decode (its dictionary), over the limit of M MiB ...".
std::string dictionary_refusal(std::string_view what, std::uint64_t need_bytes,
                               std::uint64_t limit_bytes);

}  // namespace chsync
