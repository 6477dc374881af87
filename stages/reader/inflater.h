// Inflater: zlib's inflate over caller buffers — the one place chsync sets it up, steps it,
// restarts it and names its errors. Two readers use it: the gzip stream of a large .jsonl.gz
// (reader.cpp) and a zip's deflate members when chsync reads the zip itself (zip_reader.cpp).
//
// Framing: kRaw is a bare deflate stream (zip method 8); kGzipOrZlib finds a gzip or zlib header
// by itself. Memory: zlib's fixed 32 KiB window plus its state (~7 KiB), whatever the input.
// step() moves the caller's cursors: it consumes input and fills output until one runs out or
// the stream ends. After kEnd, restart() reads a following stream (concatenated gzip members).
// Thread: one at a time. Errors: never throws; kError with error() naming zlib's reason, and the
// same result from every later step.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace chsync {

class Inflater {
 public:
  enum class Framing { kRaw, kGzipOrZlib };
  enum class Result { kProgress, kEnd, kError };

  explicit Inflater(Framing framing);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // One inflate call. kProgress also when nothing moved because the input ran out (the caller
  // sees in_bytes == 0) or the output is full (out_bytes == 0).
  Result step(const unsigned char*& in, std::size_t& in_bytes, unsigned char*& out,
              std::size_t& out_bytes);
  // Starts the next stream after kEnd (the input left over stays the caller's).
  void restart();
  const std::string& error() const noexcept { return error_; }

 private:
  struct Stream;
  std::unique_ptr<Stream> z_;
  std::string error_;
};

}  // namespace chsync
