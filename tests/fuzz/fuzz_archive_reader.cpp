// libFuzzer: ArchiveReader over arbitrary bytes (tar, zip, gzip/bzip2 by libarchive; zstd and xz
// by chsync's bounded decoders, which hand libarchive the tar inside; a zip's LZMA/XZ members by
// ZipLzmaReader, from the central directory chsync reads itself). The bytes are a file in
// memory (memfd), opened by path like a real input. Invariants: no crash, no leak, no read past a
// buffer (ASan); an archive whose first zstd frame asks for a window over the 8 MiB limit never
// opens (refused before the window is allocated; replaying the seeds with -malloc_limit_mb=32
// shows no allocation of it either); read() never returns more than asked. Decompressed bytes
// are capped per input so a small bomb cannot stall the fuzzer.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "stages/reader/archive_reader.h"
#include "stages/reader/zstd_decoder.h"

using namespace chsync;

#define CHECK(c)            \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = ::memfd_create("fuzz-archive", MFD_CLOEXEC);
  if (fd < 0) return 0;
  for (size_t off = 0; off < size;) {
    const ssize_t w = ::write(fd, data + off, size - off);
    if (w <= 0) {
      ::close(fd);
      return 0;
    }
    off += static_cast<size_t>(w);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  {
    ArchiveReader ar(path, 8u << 20);
    if (zstd_frame_window_bytes(data, size) > (8u << 20)) CHECK(!ar.is_open());
    ArchiveEntry e;
    char buf[4096];
    std::uint64_t total = 0;
    for (int members = 0; members < 64 && total < (16u << 20); ++members) {
      const auto next = ar.next(e);
      if (next != ArchiveReader::Next::kEntry) {
        (void)ar.error("none");
        break;
      }
      if (members % 2 == 1) {
        (void)ar.skip();
        continue;
      }
      for (long n; total < (16u << 20) && (n = ar.read(buf, sizeof buf)) > 0;) {
        CHECK(static_cast<size_t>(n) <= sizeof buf);
        total += static_cast<std::uint64_t>(n);
      }
    }
    (void)ar.window_refused();
  }
  ::close(fd);
  return 0;
}
