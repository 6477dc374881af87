// Discover: bundle grouping per layout (transcript-format §7.3), archives in any member order,
// filters and bad paths.
#include "stages/discover/discover.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace chsync {
namespace {

namespace fs = std::filesystem;

std::string entry(const std::string& session, const std::string& uuid) {
  return "{\"type\":\"user\",\"sessionId\":\"" + session + "\",\"uuid\":\"" + uuid + "\"}\n";
}

class DiscoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "discover-test-XXXXXX").string();
    root_ = ::mkdtemp(t.data());
  }
  void TearDown() override { fs::remove_all(root_); }

  void put(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(root_) / "tree" / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    files_[rel] = content;
  }

  // The tree as a tar whose members come in the given order.
  std::string tar(const std::vector<std::string>& order, const std::string& name = "t.tar") {
    std::string path = root_ + "/" + name;
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path.c_str());
    for (const auto& rel : order) {
      const std::string& c = files_.at(rel);
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, rel.c_str());
      archive_entry_set_size(e, static_cast<la_int64_t>(c.size()));
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_write_header(a, e);
      archive_write_data(a, c.data(), c.size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return path;
  }

  std::string dir() const { return root_ + "/tree"; }

  // bundle -> sorted member names (relative to the input root, archive prefix removed)
  static std::map<std::string, std::vector<std::string>> shape(const DiscoverResult& r) {
    std::map<std::string, std::vector<std::string>> m;
    for (const auto& b : r.bundles) {
      std::vector<std::string> names;
      for (const auto& f : b.files) {
        std::string d = f.display;
        auto bang = d.find('!');
        if (bang != std::string::npos) d = d.substr(bang + 1);
        names.push_back(d);
      }
      m[b.project + "/" + b.session_id] = names;
    }
    return m;
  }

  void layouts() {
    // 1.0.x: inline sidechains, one file.
    put("p1/s10.jsonl", entry("s10", "u1"));
    // 2.0.x: flat agent-<8 hex> siblings, linked by the sessionId inside.
    put("p2/s20.jsonl", entry("s20", "u2"));
    put("p2/agent-0000aaaa.jsonl", entry("s20", "a1"));
    put("p2/agent-0000bbbb.jsonl", entry("s20", "a2"));
    put("p2/s21.jsonl", entry("s21", "u3"));
    put("p2/agent-0000cccc.jsonl", entry("s21", "a3"));
    // 2.1.x: <session>/subagents/, and workflows below it.
    put("p3/s30.jsonl", entry("s30", "u4"));
    put("p3/s30/subagents/agent-a123456.jsonl", entry("s30", "a4"));
    put("p3/s30/subagents/agent-acompact-abcdef.jsonl", entry("s30", "a5"));
    put("p3/s30/subagents/workflows/wf1/agent-a999999.jsonl", entry("s30", "a6"));
    put("p3/s30/tool-results/toolu_1.txt", "not a transcript");
    // Orphan: subagents whose main file is missing.
    put("p3/s31/subagents/agent-a777777.jsonl", entry("s31", "a7"));
  }

  std::string root_;
  std::map<std::string, std::string> files_;
};

const std::map<std::string, std::vector<std::string>> kExpected = {
    {"p1/s10", {"p1/s10.jsonl"}},
    {"p2/s20", {"p2/s20.jsonl", "p2/agent-0000aaaa.jsonl", "p2/agent-0000bbbb.jsonl"}},
    {"p2/s21", {"p2/s21.jsonl", "p2/agent-0000cccc.jsonl"}},
    {"p3/s30",
     {"p3/s30.jsonl", "p3/s30/subagents/agent-a123456.jsonl",
      "p3/s30/subagents/agent-acompact-abcdef.jsonl",
      "p3/s30/subagents/workflows/wf1/agent-a999999.jsonl"}},
    {"p3/s31", {"p3/s31/subagents/agent-a777777.jsonl"}},
};

TEST_F(DiscoverTest, GroupsEveryLayoutInADirectory) {
  layouts();
  auto r = discover({dir()}, {});
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(shape(r), kExpected);
  EXPECT_EQ(r.files, 11u);
  for (const auto& b : r.bundles)
    for (const auto& f : b.files) {
      EXPECT_EQ(f.kind, SourceKind::kPlain);
      EXPECT_TRUE(f.settles);
    }
  // Subagent flags and ids from the file name.
  const auto& s30 = *std::find_if(r.bundles.begin(), r.bundles.end(),
                                  [](auto& b) { return b.session_id == "s30"; });
  EXPECT_FALSE(s30.files[0].is_subagent);
  EXPECT_TRUE(s30.files[1].is_subagent);
  EXPECT_EQ(s30.files[1].agent_id, "a123456");
}

TEST_F(DiscoverTest, ScrambledTarGivesTheSameBundles) {
  layouts();
  std::vector<std::string> order;
  for (auto& [k, v] : files_) order.push_back(k);
  std::reverse(order.begin(), order.end());  // subagents before their main files
  std::rotate(order.begin(), order.begin() + 3, order.end());
  auto r = discover({tar(order)}, {});
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(shape(r), kExpected);
  for (const auto& b : r.bundles)
    for (const auto& f : b.files) {
      EXPECT_EQ(f.kind, SourceKind::kArchiveMember);
      EXPECT_FALSE(f.settles);
      EXPECT_EQ(f.key.substr(f.key.size() - f.member.size()), f.member);
      EXPECT_NE(f.key.find(".tar!"), std::string::npos);
    }
  // Bundle order is deterministic and the same as for the directory.
  auto d = discover({dir()}, {});
  ASSERT_EQ(d.bundles.size(), r.bundles.size());
  for (std::size_t i = 0; i < d.bundles.size(); ++i)
    EXPECT_EQ(d.bundles[i].session_id, r.bundles[i].session_id);
}

TEST_F(DiscoverTest, ProjectSessionIncludeExcludeFilters) {
  layouts();
  DiscoverOptions o;
  o.projects = {"p2"};
  EXPECT_EQ(discover({dir()}, o).bundles.size(), 2u);
  o = {};
  o.sessions = {"s3*"};
  EXPECT_EQ(discover({dir()}, o).bundles.size(), 2u);
  o = {};
  o.exclude_globs = {"*/agent-*"};
  auto r = discover({dir()}, o);
  EXPECT_EQ(r.files, 4u);  // main files only; the orphan bundle disappears
  o = {};
  o.include_globs = {"p1/*"};
  r = discover({dir()}, o);
  ASSERT_EQ(r.bundles.size(), 1u);
  EXPECT_EQ(r.bundles[0].session_id, "s10");
}

TEST_F(DiscoverTest, EmptyFilesAreCountedNotErrors) {
  put("p/e.jsonl", "");
  put("p/f.jsonl", entry("f", "u"));
  auto r = discover({dir()}, {});
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.files, 2u);
  EXPECT_EQ(r.empty_files, 1u);
}

TEST_F(DiscoverTest, BrokenSymlinkAndLoopsAreNamedAndTheRestIsFound) {
  put("p/ok.jsonl", entry("ok", "u"));
  fs::create_symlink(root_ + "/nowhere.jsonl", dir() + "/p/broken.jsonl");
  fs::create_symlink(dir() + "/p/self.jsonl", dir() + "/p/self.jsonl");
  fs::create_symlink(dir(), dir() + "/p/up");  // directory loop
  auto r = discover({dir()}, {});
  ASSERT_EQ(r.bundles.size(), 1u);
  std::map<std::string, std::string> kinds;
  for (const auto& e : r.errors) kinds[fs::path(e.path).filename().string()] = e.kind;
  EXPECT_EQ(kinds["broken.jsonl"], "broken_symlink");
  EXPECT_EQ(kinds["self.jsonl"], "symlink_loop");
  EXPECT_EQ(kinds["up"], "symlink_loop");
}

TEST_F(DiscoverTest, MissingInputIsNamed) {
  auto r = discover({root_ + "/nope"}, {});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].kind, "missing");
  EXPECT_EQ(r.errors[0].path, root_ + "/nope");
}

TEST_F(DiscoverTest, CutTarListsMembersBeforeTheDamage) {
  layouts();
  std::vector<std::string> order;
  for (auto& [k, v] : files_) order.push_back(k);
  std::string t = tar(order);
  std::string bytes;
  {
    std::ifstream in(t, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto used = bytes.find_last_not_of('\0');  // the end blocks and record padding are zeros
  fs::resize_file(t, used / 2 + 100);        // mid-archive, inside a header or data block
  auto r = discover({t}, {});
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors[0].kind, "corrupt_archive");
  EXPECT_EQ(r.errors[0].path, t);
  EXPECT_GT(r.files, 0u);
  EXPECT_LT(r.files, 11u);
}

TEST_F(DiscoverTest, StdinIsOneUnsettledFile) {
  auto r = discover({"-"}, {});
  ASSERT_EQ(r.bundles.size(), 1u);
  EXPECT_EQ(r.bundles[0].files[0].kind, SourceKind::kStdin);
  EXPECT_FALSE(r.bundles[0].files[0].settles);
}

TEST_F(DiscoverTest, ArchiveKindsByName) {
  for (const char* p : {"a.tar", "a.tar.gz", "a.tgz", "a.tar.zst", "a.zip"})
    EXPECT_TRUE(is_archive_path(p)) << p;
  for (const char* p : {"a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "tar"})
    EXPECT_FALSE(is_archive_path(p)) << p;
}

}  // namespace
}  // namespace chsync
