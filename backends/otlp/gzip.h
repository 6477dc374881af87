// gzip of whole request bodies. libdeflate is the default (see bench/otlp_encode_bench.cpp);
// zlib is kept for the benchmark comparison.
#pragma once

#include <string>
#include <string_view>

namespace chsync::otlp {

// gzip-compresses in into out (replacing it). level 1..12 (libdeflate) / 1..9 (zlib).
// Returns false on an internal failure (out of memory).
bool gzip_libdeflate(std::string_view in, std::string& out, int level);
bool gzip_zlib(std::string_view in, std::string& out, int level);
// Decompression, for tests and the sink-side checks. Returns false when malformed.
bool gunzip(std::string_view in, std::string& out);

}  // namespace chsync::otlp
