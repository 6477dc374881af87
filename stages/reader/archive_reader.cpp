#include "stages/reader/archive_reader.h"

#include <algorithm>
#include <string_view>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include "stages/reader/bounded_decoder.h"
#include "stages/reader/little_endian.h"
#include "stages/reader/zip_reader.h"

namespace chsync {

namespace {

// A libarchive handle for the formats and filters chsync reads. zip_streaming: the zip reader
// that walks local headers (only for a zip without a readable directory, see the constructor);
// otherwise the seekable one, which reads the central directory.
struct archive* new_handle(bool zip_streaming) {
  struct archive* ar = archive_read_new();
  // The filters of archive_read_support_filter_all whose memory is small and fixed (gzip 32 KiB,
  // bzip2 900 KiB, lz4 blocks ≤ 4 MiB, ...). Not zstd, xz, lzip, lzma (see the header). Filters
  // that need an external program return ARCHIVE_WARN when it is missing: not an error here.
  archive_read_support_filter_bzip2(ar);
  archive_read_support_filter_compress(ar);
  archive_read_support_filter_gzip(ar);
  archive_read_support_filter_grzip(ar);
  archive_read_support_filter_lrzip(ar);
  archive_read_support_filter_lz4(ar);
  archive_read_support_filter_lzop(ar);
  archive_read_support_filter_rpm(ar);
  archive_read_support_filter_uu(ar);
  // The formats chsync documents (tar in all its dialects, zip) and empty files; not
  // format_all: 7z, RAR5 and cab carry their own dictionaries (up to GiBs) that no filter
  // limit reaches, and a file named .tar could be any of them.
  archive_read_support_format_tar(ar);
  // Zip through its central directory (the seekable reader): chsync reads the same directory
  // and reads the zip itself when libarchive must not (zip_reader.h). The streaming reader is the
  // fallback for a zip cut before its directory, where chsync checks each member's local header
  // instead.
  if (zip_streaming) archive_read_support_format_zip_streamable(ar);
  else archive_read_support_format_zip_seekable(ar);
  archive_read_support_format_empty(ar);
  return ar;
}

constexpr std::uint16_t kZipFlagSizesAfterData = 8;  // bit 3: sizes in a data descriptor

}  // namespace

ArchiveReader::ArchiveReader(const std::string& path, std::uint64_t max_window_bytes)
    : ar_(new_handle(false)),
      fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)),
      max_window_bytes_(max_window_bytes) {
  unsigned char magic[6] = {};
  const ssize_t got = fd_ >= 0 ? ::pread(fd_, magic, sizeof magic, 0) : -1;
  if (got > 0) dec_ = make_bounded_decoder(magic, static_cast<std::size_t>(got), max_window_bytes);
  const bool zip_magic = got > 0 && is_zip_local_header(magic, static_cast<std::size_t>(got));
  if (dec_) {
    out_.resize(std::size_t{256} * 1024);
    open_ =
        archive_read_open(ar_, this, nullptr, &ArchiveReader::read_decoded, nullptr) == ARCHIVE_OK;
    return;
  }
  // fd_ stays open: a zip's LZMA/XZ members and local headers are read from it.
  open_ = archive_read_open_filename(ar_, path.c_str(), 1 << 20) == ARCHIVE_OK;
  if (!open_ && zip_magic) {
    // A zip without a readable directory (cut short): the members before the damage are still
    // read, through their local headers, as before chsync read zips by their directory.
    archive_read_free(ar_);
    ar_ = new_handle(true);
    zip_streaming_ = true;
    open_ = archive_read_open_filename(ar_, path.c_str(), 1 << 20) == ARCHIVE_OK;
  }
}

ArchiveReader::~ArchiveReader() {
  archive_read_free(ar_);
  if (fd_ >= 0) ::close(fd_);
}

long ArchiveReader::read_decoded(struct archive* a, void* self, const void** buf) {
  auto* r = static_cast<ArchiveReader*>(self);
  const long n = r->dec_->read(r->fd_, r->out_.data(), r->out_.size());
  if (n < 0) {
    archive_set_error(a, -1, "%s", r->dec_->error().c_str());  // -1: libarchive's "misc" errno
    return -1;
  }
  *buf = r->out_.data();
  return n;
}

// A zip read through its local headers: libarchive would decode an LZMA, XZ or PPMd member with
// no memory limit, so a member of any method but stored, deflate, deflate64 and bzip2 is not read
// (there is no directory to check it against). libarchive puts the header position at the member's
// local header; a member whose local header is not there, or whose size is only known after its
// data (libarchive would have to decode it to skip it), ends the walk.
void ArchiveReader::check_streamed_zip_member() {
  unsigned char lh[30];
  const la_int64_t pos = archive_read_header_position(ar_);
  const bool header = pos >= 0 && ::pread(fd_, lh, sizeof lh, pos) == sizeof lh &&
                      is_zip_local_header(lh, sizeof lh);
  const std::uint16_t flags = header ? le16(lh + 6) : 0;
  const std::uint16_t method = header ? lh[8] : 0;  // libarchive reads only the low byte
  if (header && zip_method_is_bounded(method)) return;
  member_error_ = header ? "member of a zip without a readable central directory compressed with "
                           "method " +
                               std::to_string(method) +
                               " (LZMA, XZ, PPMd, ...): not read, its decoder's memory could "
                               "not be bounded"
                         : "zip member without a local header where libarchive found it: not read";
  // Skipping it would make libarchive decode it when its size is unknown: stop after it.
  if (!header || (flags & kZipFlagSizesAfterData)) walk_ended_ = true;
}

ArchiveReader::Next ArchiveReader::next(ArchiveEntry& entry) {
  if (!open_) return Next::kDamaged;
  if (own_zip_) return next_own_zip_member(entry);
  if (walk_ended_) {
    if (zip_error_.empty())
      zip_error_ =
          "zip without a readable central directory: the walk stops at a member that cannot be "
          "skipped without decoding it";
    return Next::kDamaged;
  }
  archive_entry* e = nullptr;
  const int rc = archive_read_next_header(ar_, &e);
  if (rc == ARCHIVE_EOF) return Next::kEnd;
  if (rc < ARCHIVE_WARN) return Next::kDamaged;
  entry.name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
  while (entry.name.rfind("./", 0) == 0) entry.name.erase(0, 2);
  entry.regular = archive_entry_filetype(e) == AE_IFREG;
  entry.size_known = archive_entry_size_is_set(e) != 0;
  entry.size = entry.size_known ? static_cast<std::uint64_t>(archive_entry_size(e)) : 0;
  entry.mtime_s = static_cast<std::int64_t>(archive_entry_mtime(e));
  member_.reset();
  member_error_.clear();
  data_damage_local_ = false;
  if (zip_streaming_) {
    check_streamed_zip_member();
    return Next::kEntry;
  }
  if (!zip_checked_) {
    zip_checked_ = true;
    if ((archive_format(ar_) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_ZIP && !dec_) {
      zip_ = std::make_unique<ZipDirectory>();
      if (fd_ < 0 || !read_zip_directory(fd_, *zip_)) {
        // libarchive found a directory chsync cannot read: nothing of this zip is read, since its
        // members could not be checked for LZMA/XZ.
        walk_ended_ = true;
        zip_error_ = "cannot read the zip's central directory";
        return Next::kDamaged;
      }
      if (!zip_->libarchive_may_read()) {
        // From here on libarchive is not asked for anything: chsync walks the directory.
        own_zip_ = true;
        own_order_.resize(zip_->members.size());
        for (std::size_t i = 0; i < own_order_.size(); ++i) own_order_[i] = i;
        std::stable_sort(own_order_.begin(), own_order_.end(), [&](std::size_t x, std::size_t y) {
          return zip_->members[x].local_header_offset < zip_->members[y].local_header_offset;
        });
        return next_own_zip_member(entry);
      }
    }
  }
  return Next::kEntry;
}

// A member of a zip chsync reads itself (zip_reader.h), in the order of its data in the file.
ArchiveReader::Next ArchiveReader::next_own_zip_member(ArchiveEntry& entry) {
  member_.reset();
  if (own_next_ >= own_order_.size()) return Next::kEnd;
  const ZipMember& m = zip_->members[own_order_[own_next_++]];
  entry.name = m.name;
  while (entry.name.rfind("./", 0) == 0) entry.name.erase(0, 2);
  entry.regular = !m.name.empty() && m.name.back() != '/';
  entry.size_known = true;
  entry.size = m.uncompressed_bytes;
  entry.mtime_s = m.mtime_s;
  member_ = std::make_unique<ZipMemberReader>(fd_, m, max_window_bytes_);
  return Next::kEntry;
}

long ArchiveReader::read(char* buf, std::size_t n) {
  if (member_) return member_->read(buf, n);
  if (!member_error_.empty()) return -1;
  const la_ssize_t r = archive_read_data(ar_, buf, n);
  if (r >= 0) return static_cast<long>(r);
  // A zip read through its central directory (zip_ is set only then) finds each member from
  // the directory: bad data in one (a CRC or size mismatch, a broken deflate stream) leaves the
  // others readable, unless libarchive gave up on the whole archive (ARCHIVE_FATAL).
  data_damage_local_ = zip_ != nullptr && !zip_streaming_ && r != ARCHIVE_FATAL;
  return -1;
}

bool ArchiveReader::skip() {
  if (member_ || !member_error_.empty()) {  // libarchive's decoder never saw it; next() seeks on
    member_.reset();
    member_error_.clear();
    return true;
  }
  return archive_read_data_skip(ar_) >= ARCHIVE_WARN;
}

std::string ArchiveReader::error(const char* fallback) const {
  // libarchive may put its own words ("Truncated tar archive") over the decoder's reason.
  if (dec_ && !dec_->error().empty()) return dec_->error();
  if (member_ && !member_->error().empty()) return member_->error();
  if (!member_error_.empty()) return member_error_;
  if (!zip_error_.empty()) return zip_error_;
  const char* m = archive_error_string(ar_);
  return m ? m : fallback;
}

bool ArchiveReader::window_refused() const noexcept {
  return (dec_ && dec_->window_refused()) || (member_ && member_->window_refused());
}

}  // namespace chsync
