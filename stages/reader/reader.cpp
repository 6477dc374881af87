#include "stages/reader/reader.h"

#include <fcntl.h>
#include <libdeflate.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "pipeline/text.h"
#include "stages/reader/inflater.h"
#include "stages/reader/little_endian.h"
#include "stages/reader/zstd_decoder.h"

namespace chsync {
namespace {

constexpr std::size_t kPadding = 64;  // simdjson::SIMDJSON_PADDING
// A .gz file up to this size is inflated in one call with libdeflate (5x zlib's speed, measured in
// docs/perf-limits.md); larger ones, or multi-member streams, go through zlib streaming.
constexpr std::uint64_t kWholeGzipMaxBytes = 64u << 20;
// ...and only when it inflates to at most this much (the gzip trailer's ISIZE): the inflated copy
// and the line buffer over it are held at once, per worker, so this bounds that stage's memory.
constexpr std::uint64_t kWholeGzipMaxOutBytes = 16u << 20;

// A pull source of bytes. read() returns bytes read, 0 at end, -1 on error (error() says why).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual long read(char* buf, std::size_t n) = 0;
  const std::string& error() const { return error_; }

 protected:
  std::string error_;
};

struct FdCloser {
  int fd = -1;
  FdCloser() = default;
  ~FdCloser() {
    if (fd > 2) ::close(fd);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
};

class FdSource : public ByteSource {
 public:
  explicit FdSource(int fd) : fd_(fd) {}
  long read(char* buf, std::size_t n) override {
    for (;;) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) return static_cast<long>(r);
      if (errno == EINTR) continue;
      error_ = errno_text(errno);
      return -1;
    }
  }

 private:
  int fd_;
};

class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::string_view data) : data_(data) {}
  long read(char* buf, std::size_t n) override {
    std::size_t k = std::min(n, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return static_cast<long>(k);
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

class GzipStreamSource : public ByteSource {
 public:
  explicit GzipStreamSource(int fd) : fd_(fd), in_(std::size_t{1} << 20) {
    if (!inflater_.error().empty()) fail(inflater_.error());
  }
  long read(char* buf, std::size_t n) override {
    if (failed_) return -1;
    auto* out = reinterpret_cast<unsigned char*>(buf);
    std::size_t out_left = n;
    while (out_left == n) {
      if (in_left_ == 0) {
        if (eof_) {
          if (!stream_end_) {
            fail("truncated gzip stream");
            break;
          }
          return 0;
        }
        const ssize_t r = ::read(fd_, in_.data(), in_.size());
        if (r < 0) {
          if (errno == EINTR) continue;
          fail(errno_text(errno));
          break;
        }
        if (r == 0) {
          eof_ = true;
          continue;
        }
        next_in_ = in_.data();
        in_left_ = static_cast<std::size_t>(r);
      }
      if (stream_end_) {  // concatenated gzip members: start the next one
        inflater_.restart();
        stream_end_ = false;
      }
      const Inflater::Result rc = inflater_.step(next_in_, in_left_, out, out_left);
      if (rc == Inflater::Result::kEnd) stream_end_ = true;
      if (rc == Inflater::Result::kError) {
        fail("corrupt gzip stream: " + inflater_.error());
        break;
      }
    }
    // Bytes inflated before the damage are handed out first; the error comes with the next call.
    if (out_left < n) return static_cast<long>(n - out_left);
    return failed_ ? -1 : 0;
  }

 private:
  void fail(std::string why) {
    error_ = std::move(why);
    failed_ = true;
  }

  int fd_;
  Inflater inflater_{Inflater::Framing::kGzipOrZlib};
  std::vector<unsigned char> in_;
  const unsigned char* next_in_ = nullptr;
  std::size_t in_left_ = 0;
  bool eof_ = false;
  bool stream_end_ = false;
  bool failed_ = false;
};

// zstd through the bounded decoder (stages/reader/zstd_decoder.h): a frame asking for a window
// over options.max_window_bytes fails the file with a clear error instead of allocating it.
class ZstdSource : public ByteSource {
 public:
  ZstdSource(int fd, std::uint64_t max_window_bytes) : fd_(fd), dec_(max_window_bytes) {}
  long read(char* buf, std::size_t n) override {
    const long r = dec_.read(fd_, buf, n);
    if (r < 0) error_ = dec_.error();
    return r;
  }

 private:
  int fd_;
  ZstdDecoder dec_;
};

// The line splitter shared by every source.
ReadResult split_lines(ByteSource& src, const ReaderOptions& opt, const LineFn& on_line,
                       const TooLongFn& on_too_long) {
  ReadResult res;
  std::size_t cap = std::max<std::size_t>(opt.chunk_bytes, 4096);
  std::unique_ptr<char[]> buf(new char[cap + kPadding]);
  std::size_t begin = 0, end = 0;           // unconsumed data is buf[begin, end)
  std::uint64_t offset = opt.start_offset;  // stream offset of buf[begin]
  std::uint64_t line_no = opt.start_line;
  bool skipping = false;  // inside an oversize line, discarding until '\n'
  std::uint64_t skipped_bytes = 0;
  bool eof = false;
  res.end_offset = opt.start_offset;
  res.end_line = opt.start_line;

  for (;;) {
    // Deliver every complete line in the buffer.
    while (begin < end) {
      char* nl = static_cast<char*>(std::memchr(buf.get() + begin, '\n', end - begin));
      if (!nl) break;
      auto len = static_cast<std::size_t>(nl - (buf.get() + begin));
      ++line_no;
      if (!skipping && len > opt.max_line_bytes) {
        // The buffer may be larger than max_line_bytes (chunk size, whole-file gzip): the limit
        // is on the line, not on the buffer.
        skipping = true;
      }
      if (skipping) {
        skipped_bytes += len;
        if (on_too_long) on_too_long(line_no, skipped_bytes);
        ++res.too_long;
        skipping = false;
        skipped_bytes = 0;
      } else {
        ++res.lines;
        std::string_view line(buf.get() + begin, len);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!on_line(line, cap + kPadding - begin, line_no, offset, false)) {
          res.end_offset = offset + len + 1;
          res.end_line = line_no;
          return res;
        }
      }
      begin += len + 1;
      offset += len + 1;
      res.end_offset = offset;
      res.end_line = line_no;
    }
    if (eof) break;
    // Make room: move the partial line to the front, or grow for a long line.
    if (begin > 0) {
      std::memmove(buf.get(), buf.get() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    if (end == cap) {
      if (skipping || cap >= opt.max_line_bytes) {
        // Oversize line: drop what we hold and discard until the next newline.
        skipping = true;
        skipped_bytes += end;
        offset += end;
        end = 0;
      } else {
        std::size_t ncap = std::min(cap * 2, std::max(opt.max_line_bytes, cap));
        std::unique_ptr<char[]> nbuf(new char[ncap + kPadding]);
        std::memcpy(nbuf.get(), buf.get(), end);
        buf = std::move(nbuf);
        cap = ncap;
      }
    }
    long r = src.read(buf.get() + end, cap - end);
    if (r < 0) {
      res.error = src.error();
      eof = true;
      // Deliver nothing more: a partial tail after a read error is not trusted.
      break;
    }
    if (r == 0) {
      eof = true;
      continue;
    }
    end += static_cast<std::size_t>(r);
    res.bytes += static_cast<std::uint64_t>(r);
  }
  if (res.error.empty() && end > begin) {
    if (skipping || end - begin > opt.max_line_bytes) {
      ++line_no;
      ++res.too_long;
      if (on_too_long) on_too_long(line_no, skipped_bytes + (end - begin));
    } else {
      ++line_no;
      res.had_tail = true;
      std::memset(buf.get() + end, 0, kPadding);
      on_line(std::string_view(buf.get() + begin, end - begin), cap + kPadding - begin, line_no,
              offset, true);
    }
  }
  return res;
}

// Whole-file gzip via libdeflate. Returns false (and leaves `out` empty) when the file is not a
// single gzip member of a size we accept, so the caller falls back to zlib streaming.
bool inflate_whole(int fd, std::uint64_t size, std::string& out, std::string& error) {
  if (size < 18 || size > kWholeGzipMaxBytes) return false;
  unsigned char trailer[4];
  if (::pread(fd, trailer, 4, static_cast<off_t>(size - 4)) != 4) return false;
  if (le32(trailer) > kWholeGzipMaxOutBytes) return false;  // before reading the whole file
  std::string in(size, '\0');
  std::size_t got = 0;
  while (got < size) {
    ssize_t r = ::pread(fd, in.data() + got, size - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  std::uint32_t isize = le32(reinterpret_cast<const unsigned char*>(in.data()) + size - 4);
  std::size_t guess = std::max<std::size_t>(isize, 1);
  if (guess > kWholeGzipMaxOutBytes) return false;
  out.resize(guess);
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  std::size_t in_used = 0, actual = 0;
  libdeflate_result rc = libdeflate_gzip_decompress_ex(d, in.data(), in.size(), out.data(),
                                                       out.size(), &in_used, &actual);
  libdeflate_free_decompressor(d);
  if (rc != LIBDEFLATE_SUCCESS || in_used != in.size()) {
    out.clear();
    if (rc == LIBDEFLATE_BAD_DATA) error = "corrupt gzip stream";
    return false;  // multi-member, wrong ISIZE (>4 GiB) or damage: let zlib stream it
  }
  out.resize(actual);
  return true;
}

}  // namespace

ReadResult read_lines(const FileRef& file, const ReaderOptions& options, const LineFn& on_line,
                      const TooLongFn& on_too_long) {
  FdCloser fdc;
  if (file.kind == SourceKind::kStdin) {
    fdc.fd = 0;
  } else {
    fdc.fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fdc.fd < 0) {
      ReadResult r;
      r.error = std::string("cannot open: ") + errno_text(errno);
      return r;
    }
  }
  switch (file.kind) {
    case SourceKind::kPlain: {
      if (options.start_offset > 0 &&
          ::lseek(fdc.fd, static_cast<off_t>(options.start_offset), SEEK_SET) < 0) {
        ReadResult r;
        r.error = std::string("cannot seek: ") + errno_text(errno);
        return r;
      }
      ::posix_fadvise(fdc.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      FdSource src(fdc.fd);
      return split_lines(src, options, on_line, on_too_long);
    }
    case SourceKind::kStdin: {
      FdSource src(fdc.fd);
      return split_lines(src, options, on_line, on_too_long);
    }
    case SourceKind::kGzip: {
      std::string whole, err;
      if (inflate_whole(fdc.fd, file.size, whole, err)) {
        MemorySource src(whole);
        ReaderOptions o = options;
        o.chunk_bytes = std::max(whole.size(), o.chunk_bytes);
        return split_lines(src, o, on_line, on_too_long);
      }
      ::lseek(fdc.fd, 0, SEEK_SET);
      GzipStreamSource src(fdc.fd);
      return split_lines(src, options, on_line, on_too_long);
    }
    case SourceKind::kZstd: {
      ZstdSource src(fdc.fd, options.max_window_bytes);
      return split_lines(src, options, on_line, on_too_long);
    }
    case SourceKind::kArchiveMember: {
      ReadResult r;
      r.error = "archive members are read by the archive feeder";
      return r;
    }
  }
  return {};
}

ReadResult read_memory_lines(std::string_view data, const ReaderOptions& options,
                             const LineFn& on_line, const TooLongFn& on_too_long) {
  MemorySource src(data);
  return split_lines(src, options, on_line, on_too_long);
}

}  // namespace chsync
