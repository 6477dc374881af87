#include "stages/reader/archive_reader.h"

#include <archive.h>
#include <archive_entry.h>

namespace chsync {

ArchiveReader::ArchiveReader(const std::string& path) : ar_(archive_read_new()) {
  archive_read_support_filter_all(ar_);
  archive_read_support_format_all(ar_);
  open_ = archive_read_open_filename(ar_, path.c_str(), 1 << 20) == ARCHIVE_OK;
}

ArchiveReader::~ArchiveReader() { archive_read_free(ar_); }

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
  const char* m = archive_error_string(ar_);
  return m ? m : fallback;
}

}  // namespace chsync
