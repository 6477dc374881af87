#include "backends/otlp/gzip.h"

#include <libdeflate.h>
#include <zlib.h>

#include <memory>

namespace chsync::otlp {

namespace {
struct CompressorFree {
  void operator()(libdeflate_compressor* c) const noexcept { libdeflate_free_compressor(c); }
};
}  // namespace

bool gzip_libdeflate(std::string_view in, std::string& out, int level) {
  // One compressor per thread and level (allocation is ~1 MB at high levels).
  thread_local std::unique_ptr<libdeflate_compressor, CompressorFree> comp;
  thread_local int comp_level = -1;
  if (!comp || comp_level != level) {
    comp.reset(libdeflate_alloc_compressor(level));
    comp_level = level;
    if (!comp) return false;
  }
  // Compressed into a per-thread scratch sized for the worst case, then copied out at its real
  // size: a request body waiting in flight holds ~1/4 of the bound, not all of it (16 requests
  // of 4 MiB held 16 x 4 MiB of mostly unused capacity).
  thread_local std::string scratch;
  scratch.resize(libdeflate_gzip_compress_bound(comp.get(), in.size()));
  const std::size_t n =
      libdeflate_gzip_compress(comp.get(), in.data(), in.size(), scratch.data(), scratch.size());
  if (n == 0) return false;
  out.assign(scratch.data(), n);
  return true;
}

bool gzip_zlib(std::string_view in, std::string& out, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): zlib reads next_in, never writes it
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const std::size_t n = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return false;
  out.resize(n);
  return true;
}

bool gunzip(std::string_view in, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return false;
  out.clear();
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): zlib reads next_in, never writes it
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  char buf[65536];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return false;
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return false;  // truncated
    }
  }
  inflateEnd(&zs);
  return true;
}

}  // namespace chsync::otlp
