#include "stages/reader/archive_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include "stages/reader/bounded_decoder.h"
#include "stages/reader/zip_lzma.h"

namespace chsync {

ArchiveReader::ArchiveReader(const std::string& path, std::uint64_t max_window_bytes)
    : ar_(archive_read_new()) {
  // The filters of archive_read_support_filter_all whose memory is small and fixed (gzip 32 KiB,
  // bzip2 900 KiB, lz4 blocks ≤ 4 MiB, ...). Not zstd, xz, lzip, lzma (see the header). Filters
  // that need an external program return ARCHIVE_WARN when it is missing: not an error here.
  archive_read_support_filter_bzip2(ar_);
  archive_read_support_filter_compress(ar_);
  archive_read_support_filter_gzip(ar_);
  archive_read_support_filter_grzip(ar_);
  archive_read_support_filter_lrzip(ar_);
  archive_read_support_filter_lz4(ar_);
  archive_read_support_filter_lzop(ar_);
  archive_read_support_filter_rpm(ar_);
  archive_read_support_filter_uu(ar_);
  // The formats chsync documents (tar in all its dialects, zip) and empty files; not
  // format_all: 7z, RAR5 and cab carry their own dictionaries (up to GiBs) that no filter
  // limit reaches, and a file named .tar could be any of them.
  archive_read_support_format_tar(ar_);
  archive_read_support_format_zip(ar_);
  archive_read_support_format_empty(ar_);
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  unsigned char magic[6] = {};
  const ssize_t got = fd_ >= 0 ? ::pread(fd_, magic, sizeof magic, 0) : -1;
  if (got > 0) dec_ = make_bounded_decoder(magic, static_cast<std::size_t>(got), max_window_bytes);
  if (dec_) {
    out_.resize(256 * 1024);
    open_ =
        archive_read_open(ar_, this, nullptr, &ArchiveReader::read_decoded, nullptr) == ARCHIVE_OK;
    return;
  }
  // A zip's LZMA/XZ members are read from fd_ by ZipLzmaReader (zip_lzma.h); fd_ stays open
  // only for a zip that has them.
  if (fd_ >= 0) zip_lzma_ = scan_zip_lzma_members(fd_);
  if (fd_ >= 0 && zip_lzma_.empty()) {
    ::close(fd_);
    fd_ = -1;
  }
  max_window_bytes_ = max_window_bytes;
  open_ = archive_read_open_filename(ar_, path.c_str(), 1 << 20) == ARCHIVE_OK;
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

ArchiveReader::Next ArchiveReader::next(ArchiveEntry& entry) {
  if (!open_) return Next::kDamaged;
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
  if (!zip_lzma_.empty()) {
    // libarchive names the member as its directory entry does (raw bytes, or UTF-8 when it
    // converted them); either way the member is decoded here, never by libarchive.
    auto it = zip_lzma_.find(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
    const char* utf8 = archive_entry_pathname_utf8(e);
    if (it == zip_lzma_.end() && utf8 != nullptr) it = zip_lzma_.find(utf8);
    if (it != zip_lzma_.end())
      member_ = std::make_unique<ZipLzmaReader>(fd_, it->second, max_window_bytes_);
  }
  return Next::kEntry;
}

long ArchiveReader::read(char* buf, std::size_t n) {
  if (member_) return member_->read(buf, n);
  const la_ssize_t r = archive_read_data(ar_, buf, n);
  return r < 0 ? -1 : static_cast<long>(r);
}

bool ArchiveReader::skip() {
  if (member_) {  // nothing of it was given to libarchive's decoder; the next header seeks past it
    member_.reset();
    return true;
  }
  return archive_read_data_skip(ar_) >= ARCHIVE_WARN;
}

std::string ArchiveReader::error(const char* fallback) const {
  // libarchive may put its own words ("Truncated tar archive") over the decoder's reason.
  if (dec_ && !dec_->error().empty()) return dec_->error();
  if (member_ && !member_->error().empty()) return member_->error();
  const char* m = archive_error_string(ar_);
  return m ? m : fallback;
}

bool ArchiveReader::window_refused() const noexcept {
  return (dec_ && dec_->window_refused()) || (member_ && member_->window_refused());
}

}  // namespace chsync
