#include "stages/reader/archive_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include "stages/reader/zstd_decoder.h"

namespace chsync {

ArchiveReader::ArchiveReader(const std::string& path, std::uint64_t max_window_bytes)
    : ar_(archive_read_new()) {
  // Every filter of archive_read_support_filter_all except zstd (see the header). Filters that
  // need an external program return ARCHIVE_WARN when it is missing: not an error here.
  archive_read_support_filter_bzip2(ar_);
  archive_read_support_filter_compress(ar_);
  archive_read_support_filter_gzip(ar_);
  archive_read_support_filter_grzip(ar_);
  archive_read_support_filter_lrzip(ar_);
  archive_read_support_filter_lz4(ar_);
  archive_read_support_filter_lzip(ar_);
  archive_read_support_filter_lzma(ar_);
  archive_read_support_filter_lzop(ar_);
  archive_read_support_filter_rpm(ar_);
  archive_read_support_filter_uu(ar_);
  archive_read_support_filter_xz(ar_);
  archive_read_support_format_all(ar_);
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  unsigned char magic[4] = {};
  if (fd_ >= 0 && ::pread(fd_, magic, sizeof magic, 0) == 4 && is_zstd_magic(magic, 4)) {
    zstd_ = std::make_unique<ZstdDecoder>(max_window_bytes);
    out_.resize(256 * 1024);
    open_ = archive_read_open(ar_, this, nullptr, &ArchiveReader::read_zstd, nullptr) == ARCHIVE_OK;
    return;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  open_ = archive_read_open_filename(ar_, path.c_str(), 1 << 20) == ARCHIVE_OK;
}

ArchiveReader::~ArchiveReader() {
  archive_read_free(ar_);
  if (fd_ >= 0) ::close(fd_);
}

long ArchiveReader::read_zstd(struct archive* a, void* self, const void** buf) {
  auto* r = static_cast<ArchiveReader*>(self);
  const long n = r->zstd_->read(r->fd_, r->out_.data(), r->out_.size());
  if (n < 0) {
    archive_set_error(a, -1, "%s", r->zstd_->error().c_str());  // -1: libarchive's "misc" errno
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
  return Next::kEntry;
}

long ArchiveReader::read(char* buf, std::size_t n) {
  const la_ssize_t r = archive_read_data(ar_, buf, n);
  return r < 0 ? -1 : static_cast<long>(r);
}

bool ArchiveReader::skip() { return archive_read_data_skip(ar_) >= ARCHIVE_WARN; }

std::string ArchiveReader::error(const char* fallback) const {
  // libarchive may put its own words ("Truncated tar archive") over the decoder's reason.
  if (zstd_ && !zstd_->error().empty()) return zstd_->error();
  const char* m = archive_error_string(ar_);
  return m ? m : fallback;
}

bool ArchiveReader::window_refused() const noexcept { return zstd_ && zstd_->window_refused(); }

}  // namespace chsync
