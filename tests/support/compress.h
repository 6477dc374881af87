// Deflate for the C++ tests: the one helper that makes gzip or raw-deflate bytes with zlib, for
// tests that feed compressed input to chsync's readers or to chsync-sink. Header-only; a test
// using it links ZLIB::ZLIB.
#pragma once

#define ZLIB_CONST  // z_stream::next_in is const: zlib only reads the input
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>
#include <string_view>

namespace chsync::test {

enum class Deflated { kGzip, kRaw };

// `in` compressed at zlib's level 6, as a gzip member or a bare deflate stream (zip method 8).
inline std::string deflate_bytes(std::string_view in, Deflated framing = Deflated::kGzip) {
  const int window_bits = framing == Deflated::kGzip ? MAX_WBITS + 16 : -MAX_WBITS;
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<const Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace chsync::test
