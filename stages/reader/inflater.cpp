#include "stages/reader/inflater.h"

#define ZLIB_CONST  // z_stream::next_in is const: zlib only reads the input
#include <zlib.h>

#include <algorithm>
#include <limits>

namespace chsync {

struct Inflater::Stream {
  z_stream z{};
  bool started = false;
};

Inflater::Inflater(Framing framing) : z_(std::make_unique<Stream>()) {
  // 15: the largest window (32 KiB); +32 detects a gzip or zlib header; negative: no header.
  const int window_bits = framing == Framing::kRaw ? -MAX_WBITS : MAX_WBITS + 32;
  z_->started = inflateInit2(&z_->z, window_bits) == Z_OK;
  if (!z_->started) error_ = "cannot start the inflater (out of memory)";
}

Inflater::~Inflater() {
  if (z_->started) inflateEnd(&z_->z);
}

Inflater::Result Inflater::step(const unsigned char*& in, std::size_t& in_bytes,
                                unsigned char*& out, std::size_t& out_bytes) {
  if (!error_.empty()) return Result::kError;
  // zlib counts in uInt (32 bits): a larger buffer is handed over in parts, by later steps.
  constexpr std::size_t kMaxStep = std::numeric_limits<uInt>::max();
  z_stream& z = z_->z;
  z.next_in = in;
  z.avail_in = static_cast<uInt>(std::min(in_bytes, kMaxStep));
  z.next_out = out;
  z.avail_out = static_cast<uInt>(std::min(out_bytes, kMaxStep));
  const std::size_t in_given = z.avail_in, out_given = z.avail_out;
  const int rc = inflate(&z, Z_NO_FLUSH);
  in += in_given - z.avail_in;
  in_bytes -= in_given - z.avail_in;
  out += out_given - z.avail_out;
  out_bytes -= out_given - z.avail_out;
  if (rc == Z_STREAM_END) return Result::kEnd;
  // Z_BUF_ERROR: no progress possible with these buffers (input or output ran out), not damage.
  if (rc == Z_OK || rc == Z_BUF_ERROR) return Result::kProgress;
  error_ = z.msg ? z.msg : "zlib error " + std::to_string(rc);
  return Result::kError;
}

void Inflater::restart() {
  if (z_->started && error_.empty()) inflateReset(&z_->z);
}

}  // namespace chsync
