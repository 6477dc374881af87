#include "stages/reader/zip_reader.h"

#include <lzma.h>
#include <unistd.h>
#include <zlib.h>  // crc32

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <optional>
#include <unordered_set>
#include <utility>

#include "stages/reader/bounded_decoder.h"
#include "stages/reader/inflater.h"
#include "stages/reader/little_endian.h"

namespace chsync {
namespace {

constexpr std::uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr std::uint32_t kZip64Locator = 0x07064b50;
constexpr std::uint32_t kZip64EndOfCentralDirectory = 0x06064b50;
constexpr std::uint32_t kCentralHeader = 0x02014b50;
constexpr std::uint32_t kLocalHeader = 0x04034b50;
constexpr std::uint16_t kMethodStored = 0;
constexpr std::uint16_t kMethodDeflate = 8;
constexpr std::uint16_t kMethodDeflate64 = 9;
constexpr std::uint16_t kMethodBzip2 = 12;
constexpr std::uint16_t kMethodLzma = 14;
constexpr std::uint16_t kMethodXz = 95;
constexpr std::size_t kEocdBytes = 22;
constexpr std::size_t kMaxCommentBytes = 0xFFFF;
// A central directory larger than this is not read (the zip is refused); 64 MiB holds about a
// million entries.
constexpr std::uint64_t kMaxDirectoryBytes = 64u << 20;

bool pread_all(int fd, unsigned char* buf, std::size_t n, std::uint64_t offset) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return true;
}

struct Directory {
  std::uint64_t offset = 0;  // where the directory really is in the file
  std::uint64_t bytes = 0;
  std::uint64_t entries = 0;  // as the end record counts them
  // Where the directory is minus where the end record says it is: bytes before the zip (a
  // self-extracting prefix), or fewer; added to every offset the directory gives.
  std::int64_t offset_correction = 0;
};

// Finds the central directory from the end of central directory record (the last one in the
// file's final 64 KiB + 22 bytes), following the zip64 locator when the record's fields are
// saturated. Without zip64 the directory ends where the record starts; when the record's offset
// says otherwise, the difference is a prefix before the zip (as libarchive corrects it).
bool find_directory(int fd, std::uint64_t file_bytes, Directory& dir) {
  if (file_bytes < kEocdBytes) return false;
  const std::uint64_t tail_bytes =
      std::min<std::uint64_t>(file_bytes, kEocdBytes + kMaxCommentBytes);
  std::vector<unsigned char> tail(static_cast<std::size_t>(tail_bytes));
  const std::uint64_t tail_offset = file_bytes - tail_bytes;
  if (!pread_all(fd, tail.data(), tail.size(), tail_offset)) return false;
  for (std::size_t i = tail.size() - kEocdBytes + 1; i-- > 0;) {
    if (le32(&tail[i]) != kEndOfCentralDirectory) continue;
    const unsigned char* e = &tail[i];
    const std::uint64_t eocd_offset = tail_offset + i;
    dir.bytes = le32(e + 12);
    dir.entries = le16(e + 10);
    const std::uint64_t claimed = le32(e + 16);
    if (claimed != 0xFFFFFFFF && dir.bytes != 0xFFFFFFFF && dir.entries != 0xFFFF) {
      if (dir.bytes > eocd_offset) return false;
      dir.offset = eocd_offset - dir.bytes;
      dir.offset_correction =
          static_cast<std::int64_t>(dir.offset) - static_cast<std::int64_t>(claimed);
      return true;
    }
    // zip64: the locator stands right before the record and points at the zip64 record.
    if (eocd_offset < 20) return false;
    unsigned char loc[20];
    if (!pread_all(fd, loc, sizeof loc, eocd_offset - 20) || le32(loc) != kZip64Locator)
      return false;
    unsigned char rec[56];
    if (!pread_all(fd, rec, sizeof rec, le64(loc + 8)) || le32(rec) != kZip64EndOfCentralDirectory)
      return false;
    dir.entries = le64(rec + 32);
    dir.bytes = le64(rec + 40);
    dir.offset = le64(rec + 48);
    return true;
  }
  return false;
}

// Reads the extra fields of a central directory header: zip64 (0x0001) replaces the saturated
// 32-bit fields by 64-bit values, in this order and only for the saturated ones; the extended
// timestamp (0x5455) gives the modification time.
void apply_extra_fields(const unsigned char* extra, std::size_t extra_bytes, ZipMember& m) {
  std::size_t i = 0;
  while (i + 4 <= extra_bytes) {
    const std::uint16_t id = le16(extra + i);
    const std::uint16_t size = le16(extra + i + 2);
    const unsigned char* p = extra + i + 4;
    const unsigned char* end = p + std::min<std::size_t>(size, extra_bytes - i - 4);
    if (id == 0x0001) {
      auto take = [&](std::uint64_t& field) {
        if (field != 0xFFFFFFFF || p + 8 > end) return;
        field = le64(p);
        p += 8;
      };
      take(m.uncompressed_bytes);
      take(m.compressed_bytes);
      take(m.local_header_offset);
    } else if (id == 0x5455 && end - p >= 5 && (p[0] & 1)) {
      m.mtime_s = static_cast<std::int32_t>(le32(p + 1));
    }
    i += 4 + size;
  }
}

// A DOS date and time (local time, two-second resolution), as libarchive converts it.
std::int64_t dos_time(std::uint16_t date, std::uint16_t time) {
  std::tm tm{};
  tm.tm_year = ((date >> 9) & 0x7f) + 80;
  tm.tm_mon = ((date >> 5) & 0xf) - 1;
  tm.tm_mday = date & 0x1f;
  tm.tm_hour = (time >> 11) & 0x1f;
  tm.tm_min = (time >> 5) & 0x3f;
  tm.tm_sec = (time << 1) & 0x3e;
  tm.tm_isdst = -1;
  return static_cast<std::int64_t>(std::mktime(&tm));
}

}  // namespace

bool is_zip_local_header(const unsigned char* p, std::size_t n) noexcept {
  return n >= 4 && le32(p) == kLocalHeader;
}

bool zip_method_is_bounded(std::uint16_t method) noexcept {
  return method == kMethodStored || method == kMethodDeflate || method == kMethodDeflate64 ||
         method == kMethodBzip2;
}

bool ZipMember::unbounded() const noexcept {
  return !zip_method_is_bounded(method) ||
         (local_header_found && !zip_method_is_bounded(local_method));
}

bool read_zip_directory(int fd, ZipDirectory& out) {
  out = ZipDirectory{};
  const off_t end = fd < 0 ? -1 : ::lseek(fd, 0, SEEK_END);
  Directory dir;
  if (end <= 0 || !find_directory(fd, static_cast<std::uint64_t>(end), dir)) return false;
  if (dir.bytes > kMaxDirectoryBytes || dir.offset + dir.bytes > static_cast<std::uint64_t>(end))
    return false;
  std::vector<unsigned char> cd(static_cast<std::size_t>(dir.bytes));
  if (!pread_all(fd, cd.data(), cd.size(), dir.offset)) return false;
  bool agree = true;
  std::unordered_set<std::string> names;
  std::size_t i = 0;
  while (i + 46 <= cd.size() && le32(&cd[i]) == kCentralHeader) {
    const unsigned char* h = &cd[i];
    const std::size_t name_bytes = le16(h + 28), extra_bytes = le16(h + 30),
                      comment_bytes = le16(h + 32);
    if (i + 46 + name_bytes + extra_bytes + comment_bytes > cd.size()) break;
    ZipMember m;
    m.name.assign(reinterpret_cast<const char*>(h + 46), name_bytes);
    // libarchive keeps only the low byte of a method (0x740e is LZMA to it): so does chsync.
    m.method = le16(h + 10) & 0xFF;
    m.flags = le16(h + 8);
    m.mtime_s = dos_time(le16(h + 14), le16(h + 12));
    m.crc32 = le32(h + 16);
    m.compressed_bytes = le32(h + 20);
    m.uncompressed_bytes = le32(h + 24);
    m.local_header_offset = le32(h + 42);
    apply_extra_fields(h + 46 + name_bytes, extra_bytes, m);
    const std::int64_t at =
        static_cast<std::int64_t>(m.local_header_offset) + dir.offset_correction;
    m.local_header_offset = at < 0 ? 0 : static_cast<std::uint64_t>(at);
    unsigned char lh[30];
    m.local_header_found = at >= 0 && pread_all(fd, lh, sizeof lh, m.local_header_offset) &&
                           is_zip_local_header(lh, sizeof lh);
    if (m.local_header_found) m.local_method = le16(lh + 8) & 0xFF;
    out.any_unbounded = out.any_unbounded || m.unbounded();
    agree =
        agree && m.local_header_found && m.local_method == m.method && names.insert(m.name).second;
    out.members.push_back(std::move(m));
    i += 46 + name_bytes + extra_bytes + comment_bytes;
  }
  out.consistent = agree && out.members.size() == dir.entries;
  return true;
}

struct ZipMemberReader::Stream {
  lzma_stream lz = LZMA_STREAM_INIT;
  lzma_options_lzma* options = nullptr;  // method 14: from lzma_properties_decode (malloc'd)
  std::optional<Inflater> inflater;      // method 8
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    lzma_end(&lz);
    free(options);  // NOLINT(cppcoreguidelines-no-malloc): liblzma allocated it with malloc
  }
};

ZipMemberReader::ZipMemberReader(int fd, ZipMember member, std::uint64_t max_window_bytes)
    : s_(std::make_unique<Stream>()),
      fd_(fd),
      m_(std::move(member)),
      limit_bytes_((max_window_bytes ? max_window_bytes : std::uint64_t{128} << 20) + (2u << 20)) {}

ZipMemberReader::~ZipMemberReader() = default;

bool ZipMemberReader::fail(std::string why) {
  failed_ = true;
  error_ = std::move(why);
  return false;
}

// Checks the headers, finds the data after the local header and starts the method's decoder.
bool ZipMemberReader::start() {
  started_ = true;
  if (!m_.local_header_found)
    return fail("corrupt zip member: no local header where its directory entry says");
  if (m_.local_method != m_.method)
    return fail(
        "corrupt zip member: its directory entry and local header name different "
        "compression methods (" +
        std::to_string(m_.method) + ", " + std::to_string(m_.local_method) + ")");
  if (m_.flags & 1) return fail("encrypted zip member (not supported)");
  unsigned char lh[30];
  if (!pread_all(fd_, lh, sizeof lh, m_.local_header_offset) || !is_zip_local_header(lh, sizeof lh))
    return fail("corrupt zip member: no local header where its directory entry says");
  next_in_offset_ = m_.local_header_offset + 30 + le16(lh + 26) + le16(lh + 28);
  in_left_bytes_ = m_.compressed_bytes;
  in_.resize(1 << 16);
  switch (m_.method) {
    case kMethodStored:
      if (m_.compressed_bytes != m_.uncompressed_bytes)
        return fail("corrupt zip member: stored, but its two sizes differ");
      return true;
    case kMethodDeflate:
      s_->inflater.emplace(Inflater::Framing::kRaw);
      if (!s_->inflater->error().empty()) return fail(s_->inflater->error());
      return true;
    case kMethodXz:
      if (lzma_stream_decoder(&s_->lz, limit_bytes_, 0) != LZMA_OK)
        return fail("cannot start the xz decoder");
      return true;
    case kMethodLzma: return start_lzma();
    default:
      return fail("zip compression method " + std::to_string(m_.method) +
                  " is not read in a zip chsync reads itself (one with LZMA, XZ, PPMd or other "
                  "members whose decoders libarchive does not bound, or with disagreeing "
                  "headers): chsync reads stored, deflate, LZMA and XZ");
  }
}

// Method 14: version (2 bytes), properties size (2 bytes, 5 for LZMA1), properties; the decoder
// starts only when the dictionary they name fits the budget.
bool ZipMemberReader::start_lzma() {
  unsigned char head[9];
  if (in_left_bytes_ < sizeof head || !pread_all(fd_, head, sizeof head, next_in_offset_))
    return fail("truncated LZMA zip member");
  if (le16(head + 2) != 5) return fail("corrupt LZMA zip member: properties are not 5 bytes");
  next_in_offset_ += sizeof head;
  in_left_bytes_ -= sizeof head;
  lzma_filter filters[2] = {{LZMA_FILTER_LZMA1, nullptr}, {LZMA_VLI_UNKNOWN, nullptr}};
  if (lzma_properties_decode(&filters[0], nullptr, head + 4, 5) != LZMA_OK)
    return fail("corrupt LZMA zip member: bad properties");
  s_->options = static_cast<lzma_options_lzma*>(filters[0].options);
  // Bit 1 of the flags says an end marker follows the data; without it the size ends it.
  filters[0].id = LZMA_FILTER_LZMA1EXT;
  s_->options->ext_flags = LZMA_LZMA1EXT_ALLOW_EOPM;
  lzma_set_ext_size(*s_->options, (m_.flags & 2) ? UINT64_MAX : m_.uncompressed_bytes);
  const std::uint64_t need = lzma_raw_decoder_memusage(filters);
  if (need == UINT64_MAX) return fail("corrupt LZMA zip member: bad properties");
  if (need > limit_bytes_) {
    window_refused_ = true;
    return fail(dictionary_refusal("LZMA zip member", need, limit_bytes_));
  }
  if (lzma_raw_decoder(&s_->lz, filters) != LZMA_OK) return fail("cannot start the LZMA decoder");
  return true;
}

bool ZipMemberReader::step(const unsigned char*& in, std::size_t& in_bytes, unsigned char*& out,
                           std::size_t& out_bytes, bool input_done) {
  if (m_.method == kMethodStored) {
    const std::size_t n = std::min(in_bytes, out_bytes);
    std::copy(in, in + n, out);
    in += n, in_bytes -= n, out += n, out_bytes -= n;
    if (input_done && in_bytes == 0) ended_ = true;
    return true;
  }
  if (m_.method == kMethodDeflate) {
    const unsigned char* const out_before = out;
    switch (s_->inflater->step(in, in_bytes, out, out_bytes)) {
      case Inflater::Result::kEnd: ended_ = true; return true;
      case Inflater::Result::kError:
        return fail("corrupt deflate zip member: " + s_->inflater->error());
      case Inflater::Result::kProgress: break;
    }
    // Every byte given, room for output, and still no output and no end: the data is cut.
    if (input_done && in_bytes == 0 && out_bytes > 0 && out == out_before)
      return fail("truncated deflate zip member");
    return true;
  }
  const char* kind = m_.method == kMethodXz ? "XZ" : "LZMA";
  lzma_stream& s = s_->lz;
  s.next_in = in;
  s.avail_in = in_bytes;
  s.next_out = out;
  s.avail_out = out_bytes;
  const lzma_ret rc = lzma_code(&s, input_done ? LZMA_FINISH : LZMA_RUN);
  in = s.next_in, in_bytes = s.avail_in, out = s.next_out, out_bytes = s.avail_out;
  if (rc == LZMA_OK) return true;
  if (rc == LZMA_STREAM_END) {
    ended_ = true;
    return true;
  }
  if (rc == LZMA_MEMLIMIT_ERROR) {
    window_refused_ = true;
    return fail(
        dictionary_refusal(std::string(kind) + " zip member", lzma_memusage(&s), limit_bytes_));
  }
  if (rc == LZMA_BUF_ERROR) return fail(std::string("truncated ") + kind + " zip member");
  return fail(std::string("corrupt ") + kind + " zip member (liblzma error " +
              std::to_string(static_cast<int>(rc)) + ")");
}

long ZipMemberReader::read(char* buf, std::size_t n) {
  if (!started_) start();
  if (failed_) return -1;
  if (ended_ || n == 0) return 0;
  auto* out = reinterpret_cast<unsigned char*>(buf);
  std::size_t out_bytes = n;
  int idle_steps = 0;  // steps that neither read nor wrote: a stream that cannot end
  while (out_bytes == n && !failed_ && !ended_) {
    if (in_avail_ == 0 && in_left_bytes_ > 0) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(in_.size(), in_left_bytes_));
      if (!pread_all(fd_, in_.data(), want, next_in_offset_)) {
        fail("cannot read the zip member's data (the file is shorter than its directory says)");
        break;
      }
      next_in_offset_ += want;
      in_left_bytes_ -= want;
      in_next_ = in_.data();
      in_avail_ = want;
    }
    const std::size_t in_before = in_avail_;
    if (!step(in_next_, in_avail_, out, out_bytes, in_left_bytes_ == 0)) break;
    if (in_avail_ == in_before && out_bytes == n && in_left_bytes_ == 0 && ++idle_steps > 1)
      fail(std::string("truncated zip member (compressed data ended before its stream did)"));
  }
  const std::size_t got = n - out_bytes;
  if (got > 0) {
    crc_ = static_cast<std::uint32_t>(
        ::crc32(crc_, reinterpret_cast<const Bytef*>(buf), static_cast<uInt>(got)));
    out_bytes_ += got;
    if (out_bytes_ > m_.uncompressed_bytes) {
      fail("corrupt zip member: more data than its directory entry says");
      return -1;
    }
  }
  if (ended_ && !failed_ && (out_bytes_ != m_.uncompressed_bytes || crc_ != m_.crc32))
    fail(out_bytes_ != m_.uncompressed_bytes
             ? "corrupt zip member: size differs from its directory entry"
             : "corrupt zip member: CRC-32 mismatch");
  if (got > 0) return static_cast<long>(got);
  return failed_ ? -1 : 0;
}

}  // namespace chsync
