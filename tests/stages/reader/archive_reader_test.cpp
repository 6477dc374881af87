// ArchiveReader: members in archive order, their bytes, damage and open errors.
#include "stages/reader/archive_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace chsync {
namespace {

namespace fs = std::filesystem;

class ArchiveReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "archive-reader-test-XXXXXX").string();
    dir_ = ::mkdtemp(t.data());
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A tar with these (name, content) members, plus a directory entry first.
  std::string tar(const std::vector<std::pair<std::string, std::string>>& members) {
    std::string path = dir_ + "/a.tar";
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path.c_str());
    archive_entry* d = archive_entry_new();
    archive_entry_set_pathname(d, "./dir/");
    archive_entry_set_filetype(d, AE_IFDIR);
    archive_entry_set_perm(d, 0755);
    archive_write_header(a, d);
    archive_entry_free(d);
    for (const auto& [name, data] : members) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, name.c_str());
      archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_mtime(e, 1700000000, 0);
      archive_write_header(a, e);
      archive_write_data(a, data.data(), data.size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return path;
  }

  std::string dir_;
};

std::string read_all(ArchiveReader& ar) {
  std::string out;
  char buf[7];  // small on purpose: several reads per member
  for (long n = 0; (n = ar.read(buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

TEST_F(ArchiveReaderTest, ListsMembersInOrderWithTheirBytes) {
  ArchiveReader ar(tar({{"./p/s1.jsonl", "{\"a\":1}\n{\"b\":2}\n"}, {"p/s2.jsonl", "x\n"}}), 0);
  ASSERT_TRUE(ar.is_open());
  ArchiveEntry e;
  ASSERT_EQ(ar.next(e), ArchiveReader::Next::kEntry);
  EXPECT_EQ(e.name, "dir/");  // "./" removed
  EXPECT_FALSE(e.regular);
  ASSERT_EQ(ar.next(e), ArchiveReader::Next::kEntry);
  EXPECT_EQ(e.name, "p/s1.jsonl");
  EXPECT_TRUE(e.regular);
  EXPECT_TRUE(e.size_known);
  EXPECT_EQ(e.size, 16u);
  EXPECT_EQ(e.mtime_s, 1700000000);
  EXPECT_EQ(read_all(ar), "{\"a\":1}\n{\"b\":2}\n");
  ASSERT_EQ(ar.next(e), ArchiveReader::Next::kEntry);
  EXPECT_EQ(e.name, "p/s2.jsonl");
  EXPECT_TRUE(ar.skip());  // unread data is skipped
  EXPECT_EQ(ar.next(e), ArchiveReader::Next::kEnd);
}

TEST_F(ArchiveReaderTest, AMissingFileIsNotOpenAndSaysWhy) {
  ArchiveReader ar(dir_ + "/missing.tar", 0);
  EXPECT_FALSE(ar.is_open());
  EXPECT_FALSE(ar.error("fallback").empty());
  ArchiveEntry e;
  EXPECT_EQ(ar.next(e), ArchiveReader::Next::kDamaged);
}

TEST_F(ArchiveReaderTest, ACutArchiveEndsInDamageNotInSilence) {
  std::string big(std::size_t{64} * 1024, 'x');
  const std::string path = tar({{"a.jsonl", big}, {"b.jsonl", big}});
  fs::resize_file(path, fs::file_size(path) / 2);  // inside the second half of the members
  ArchiveReader ar(path, 0);
  ASSERT_TRUE(ar.is_open());
  ArchiveEntry e;
  bool damaged = false;
  for (int i = 0; i < 5 && !damaged; ++i) {
    const auto next = ar.next(e);
    if (next == ArchiveReader::Next::kDamaged) damaged = true;
    if (next == ArchiveReader::Next::kEnd) break;
    if (next == ArchiveReader::Next::kEntry && e.regular) {
      std::string out;
      char buf[4096];
      long n = 0;
      while ((n = ar.read(buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
      if (n < 0) damaged = true;
    }
  }
  EXPECT_TRUE(damaged);
  EXPECT_FALSE(ar.error("fallback").empty());
}

}  // namespace
}  // namespace chsync
