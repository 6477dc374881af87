// Feeder stage: what reaches the work queue for plain files and for archives (tar, zip, tar.zst
// made here with libarchive), members held in memory or spooled, --max-spool refusals, and a
// stop while the feeder is blocked.
#include "stages/feeder/feeder.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/runtime.h"
#include "stages/discover/discover.h"
#include "tests/support/temp_dir.h"

namespace chsync {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// One transcript line of `session`; `pad` bytes of filler make large members.
std::string line(const std::string& session, const std::string& uuid, std::size_t pad = 0) {
  return "{\"type\":\"user\",\"sessionId\":\"" + session + "\",\"uuid\":\"" + uuid +
         "\",\"pad\":\"" + std::string(pad, 'x') + "\"}\n";
}

// `bytes` or a little more of lines of `session`.
std::string big(const std::string& session, std::uint64_t bytes) {
  std::string s;
  for (int i = 0; s.size() < bytes; ++i) s += line(session, "u" + std::to_string(i), 4000);
  return s;
}

enum class Format { kTar, kZip, kTarZst };

// Everything one feed produced: the work items in push order and what the feeder reported.
struct Fed {
  std::vector<WorkItem> items;
  std::vector<std::string> file_errors;
};

// A failed assertion returns early: the feeder thread is stopped and joined before the Feeder
// goes (a clean run has already done both; doing them again changes nothing).
struct StopOnExit {
  Feeder& feeder;
  StageRunner& runner;
  ~StopOnExit() {
    feeder.stop(Deadline::max());
    runner.join_all();
  }
};

class FeederTest : public ::testing::Test {
 protected:
  // A file of the input tree (relative path -> content), in the order members are archived.
  void put(const std::string& rel, const std::string& content) {
    members_.emplace_back(rel, content);
  }
  std::string write_tree() {
    const fs::path root = tmp_.path() / "tree";
    for (const auto& [rel, content] : members_) {
      fs::create_directories((root / rel).parent_path());
      std::ofstream(root / rel, std::ios::binary) << content;
    }
    return root.string();
  }
  // The same files as one archive, members in the order they were put.
  std::string write_archive(Format f) {
    const char* name = f == Format::kTar ? "in.tar" : f == Format::kZip ? "in.zip" : "in.tar.zst";
    const std::string path = tmp_.file(name);
    archive* a = archive_write_new();
    if (f == Format::kZip) {
      EXPECT_EQ(archive_write_set_format_zip(a), ARCHIVE_OK);
    } else {
      EXPECT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    }
    if (f == Format::kTarZst) {
      EXPECT_EQ(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    }
    EXPECT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
    for (const auto& [rel, content] : members_) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, rel.c_str());
      archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK);
      EXPECT_EQ(archive_write_data(a, content.data(), content.size()),
                static_cast<la_ssize_t>(content.size()));
      archive_entry_free(e);
    }
    EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return path;
  }

  void discover_input(const std::string& input) {
    disc_ = discover({input}, DiscoverOptions{});
    ASSERT_TRUE(disc_.errors.empty())
        << disc_.errors.front().path << ": " << disc_.errors.front().kind;
    need_.assign(disc_.bundles.size(), true);
  }
  // The bundle whose session id is `session` (discover orders bundles its own way).
  std::size_t bundle_of(const std::string& session) const {
    for (std::size_t b = 0; b < disc_.bundles.size(); ++b)
      if (disc_.bundles[b].session_id == session) return b;
    ADD_FAILURE() << "no bundle for session " << session;
    return 0;
  }
  // The content a bundle's file i had when it was put.
  std::string content_of(std::size_t b, std::size_t i) const {
    const FileRef& f = disc_.bundles[b].files[i];
    for (const auto& [rel, content] : members_)
      if (f.member == rel || fs::path(f.path).lexically_normal().string().ends_with(rel))
        return content;
    ADD_FAILURE() << "unknown file " << f.display;
    return {};
  }

  Feeder::Wiring wiring(BoundedQueue<WorkItem>& work) {
    Feeder::Wiring w;
    w.bundles = &disc_.bundles;
    w.any_need = &need_;
    w.discover_errors = &disc_.errors;
    w.work = &work;
    w.budget = &budget_;
    w.problems = &problems_;
    w.max_spool_bytes = max_spool_bytes_;
    return w;
  }

  // Feeds everything on this thread (the queue holds all of it) and collects the items.
  Fed feed_all() {
    BoundedQueue<WorkItem> work(1ull << 40);
    Feeder feeder(wiring(work));
    feeder.run();
    Fed fed;
    while (auto item = work.pop()) fed.items.push_back(std::move(*item));
    fed.file_errors = problems_.file_errors();
    // What was spooled is still on disk (no worker read it): check it before the Feeder goes.
    for (const auto& item : fed.items)
      for (std::size_t i = 0; i < item.member_spool.size(); ++i)
        if (!item.member_spool[i].empty())
          spooled_[item.member_spool[i]] = read(item.member_spool[i]);
    spool_used_at_end_ = feeder.spool().used_bytes();
    return fed;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // The bytes of member i of an item: in memory, or its spool file.
  std::string member_bytes(const WorkItem& item, std::size_t i) const {
    if (!item.member_spool[i].empty()) return spooled_.at(item.member_spool[i]);
    return item.member_data[i];
  }

  test::TempDir tmp_{"chsync-feeder-test"};
  std::vector<std::pair<std::string, std::string>> members_;
  DiscoverResult disc_;
  std::vector<bool> need_;
  // The smallest budget: the queue shares at their floor (a member over about 2.7 MiB is spooled).
  MemoryBudget budget_{1u << 20, false, 1};
  std::vector<std::string> logged_;
  std::mutex log_mu_;
  InputProblems problems_{false, 10, log::Logger([this](log::Level, const std::string& l) {
                            std::lock_guard lock(log_mu_);
                            logged_.push_back(l);
                          })};
  std::uint64_t max_spool_bytes_ = 0;
  std::map<std::string, std::string> spooled_;
  std::uint64_t spool_used_at_end_ = 0;
};

TEST_F(FeederTest, DirectoryFeedsOneItemPerNeededBundleAndClosesTheQueue) {
  put("p/s1.jsonl", line("s1", "a"));
  put("p/s2.jsonl", line("s2", "b"));
  put("p/s2/subagents/agent-a1.jsonl", line("s2", "c"));
  put("p/s3.jsonl", line("s3", "d"));
  discover_input(write_tree());
  ASSERT_EQ(disc_.bundles.size(), 3u);
  need_[bundle_of("s3")] = false;  // e.g. every backend has it already

  const Fed fed = feed_all();
  std::set<std::size_t> got;
  for (const auto& item : fed.items) {
    EXPECT_TRUE(got.insert(item.bundle_index).second) << "bundle fed twice";
    // Plain files are read by the map worker, not the feeder.
    for (const auto& d : item.member_data) EXPECT_TRUE(d.empty());
  }
  EXPECT_EQ(got, (std::set<std::size_t>{bundle_of("s1"), bundle_of("s2")}));
  EXPECT_TRUE(fed.file_errors.empty());
}

class FeederArchiveTest : public FeederTest, public ::testing::WithParamInterface<Format> {};

// Members of a bundle scattered through the archive: each bundle is released once, when its
// last member has been read, with every member's bytes.
TEST_P(FeederArchiveTest, BundlesAreReleasedWholeWithTheirMembersBytes) {
  put("p/s2/subagents/agent-a1.jsonl", line("s2", "c"));  // before its main file
  put("p/s1.jsonl", line("s1", "a") + line("s1", "a2"));
  put("p/s2.jsonl", line("s2", "b"));
  put("p/s3.jsonl", line("s3", "d"));
  put("p/s2/subagents/agent-a2.jsonl", line("s2", "e"));
  discover_input(write_archive(GetParam()));
  ASSERT_EQ(disc_.bundles.size(), 3u);

  const Fed fed = feed_all();
  ASSERT_EQ(fed.items.size(), 3u);
  std::set<std::size_t> got;
  for (const auto& item : fed.items) {
    got.insert(item.bundle_index);
    const Bundle& b = disc_.bundles[item.bundle_index];
    ASSERT_EQ(item.member_data.size(), b.files.size());
    for (std::size_t i = 0; i < b.files.size(); ++i) {
      EXPECT_EQ(b.files[i].kind, SourceKind::kArchiveMember);
      EXPECT_TRUE(item.member_spool[i].empty()) << "small members stay in memory";
      EXPECT_TRUE(item.member_error[i].empty()) << item.member_error[i];
      EXPECT_EQ(item.member_data[i], content_of(item.bundle_index, i)) << b.files[i].member;
    }
  }
  EXPECT_EQ(got.size(), 3u);
  // s3 and s1 are complete before s2's last member: they are released first.
  EXPECT_EQ(fed.items.back().bundle_index, bundle_of("s2"));
  EXPECT_TRUE(fed.file_errors.empty());
}

INSTANTIATE_TEST_SUITE_P(Formats, FeederArchiveTest,
                         ::testing::Values(Format::kTar, Format::kZip, Format::kTarZst),
                         [](const ::testing::TestParamInfo<Format>& p) {
                           return p.param == Format::kTar   ? std::string("tar")
                                  : p.param == Format::kZip ? std::string("zip")
                                                            : std::string("tar_zst");
                         });

// A member over the in-memory share goes to the spool; the worker reads it back from there.
TEST_F(FeederTest, LargeMemberIsSpooledWithItsBytes) {
  const std::uint64_t large = budget_.archive_member_in_memory_bytes() + (64u << 10);
  put("p/s1.jsonl", big("s1", large));
  put("p/s2.jsonl", line("s2", "b"));
  max_spool_bytes_ = 64u << 20;
  discover_input(write_archive(Format::kTar));

  const Fed fed = feed_all();
  ASSERT_EQ(fed.items.size(), 2u);
  for (const auto& item : fed.items) {
    const bool is_large = item.bundle_index == bundle_of("s1");
    EXPECT_EQ(!item.member_spool[0].empty(), is_large);
    EXPECT_EQ(member_bytes(item, 0), content_of(item.bundle_index, 0));
    if (is_large) {
      EXPECT_EQ(item.member_spool_bytes[0], content_of(item.bundle_index, 0).size());
    }
  }
  // Booked until a worker reads and removes it.
  EXPECT_EQ(spool_used_at_end_, content_of(bundle_of("s1"), 0).size());
}

// --max-spool: a member that can never fit is left out with an error naming the flag; the other
// bundles are fed as usual and nothing stays booked.
TEST_F(FeederTest, MemberOverMaxSpoolIsLeftOutAndTheRestGoesOn) {
  const std::uint64_t large = budget_.archive_member_in_memory_bytes() + (64u << 10);
  put("p/s1.jsonl", big("s1", large));
  put("p/s2.jsonl", line("s2", "b"));
  max_spool_bytes_ = 1u << 20;  // under the member's size
  discover_input(write_archive(Format::kTar));

  const Fed fed = feed_all();
  ASSERT_EQ(fed.items.size(), 2u);
  for (const auto& item : fed.items) {
    if (item.bundle_index == bundle_of("s1")) {
      EXPECT_NE(item.member_error[0].find("over --max-spool"), std::string::npos)
          << item.member_error[0];
      EXPECT_TRUE(item.member_spool[0].empty());
      EXPECT_TRUE(item.member_data[0].empty());
    } else {
      EXPECT_TRUE(item.member_error[0].empty());
      EXPECT_EQ(item.member_data[0], line("s2", "b"));
    }
  }
  EXPECT_EQ(spool_used_at_end_, 0u);
}

// stop() while the feeder is blocked on a full work queue: run() returns, the queue is closed,
// and the bundles not yet fed never reach it.
TEST_F(FeederTest, StopWhileBlockedOnAFullQueueEndsTheFeed) {
  for (int i = 0; i < 6; ++i)
    put("p/s" + std::to_string(i) + ".jsonl", line("s" + std::to_string(i), "u"));
  discover_input(write_tree());
  ASSERT_EQ(disc_.bundles.size(), 6u);
  BoundedQueue<WorkItem> work(1);  // one plain bundle (charged 1 byte) fills it
  StageRunner runner;
  Feeder feeder(wiring(work));
  feeder.start(runner);
  const StopOnExit guard{feeder, runner};
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (work.queued_bytes() == 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(work.queued_bytes(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // blocked on the next push
  EXPECT_EQ(work.queued_bytes(), 1u);

  const auto t0 = Clock::now();
  EXPECT_TRUE(feeder.stop(Clock::now() + std::chrono::seconds(10)));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  runner.join_all();
  EXPECT_EQ(runner.first_error(), "");
  std::size_t fed = 0;
  while (work.pop()) ++fed;
  EXPECT_EQ(fed, 1u);  // the one queued before the stop; closed: nothing after it
  EXPECT_FALSE(work.push(WorkItem{}, 1));
}

// stop() while the feeder waits for spool room (the first bundle's spool file was released to
// the workers, but none reads it here): the wait ends and the second bundle is not fed.
TEST_F(FeederTest, StopWhileWaitingForSpoolRoomEndsTheFeed) {
  const std::uint64_t large = budget_.archive_member_in_memory_bytes() + (64u << 10);
  put("p/s1.jsonl", big("s1", large));
  put("p/s2.jsonl", big("s2", large));
  max_spool_bytes_ = large + large / 2;  // either fits alone, not both at once
  discover_input(write_archive(Format::kTar));
  ASSERT_EQ(disc_.bundles.size(), 2u);
  BoundedQueue<WorkItem> work(1ull << 40);
  StageRunner runner;
  Feeder feeder(wiring(work));
  feeder.start(runner);
  const StopOnExit guard{feeder, runner};
  const auto until = Clock::now() + std::chrono::seconds(20);
  while (work.queued_bytes() == 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GT(work.queued_bytes(), 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // waiting for room
  EXPECT_TRUE(feeder.spool().used_bytes() <= max_spool_bytes_);
  std::size_t before_stop = 0;
  {
    // Nothing more was fed while the spool is full.
    auto first = work.pop();
    ASSERT_TRUE(first.has_value());
    before_stop = 1;
    bool timed_out = false;
    EXPECT_FALSE(work.pop_for(std::chrono::milliseconds(200), timed_out).has_value());
    EXPECT_TRUE(timed_out);
  }
  EXPECT_TRUE(feeder.stop(Clock::now() + std::chrono::seconds(10)));
  runner.join_all();
  std::size_t after = 0;
  while (work.pop()) ++after;
  EXPECT_EQ(before_stop + after, 1u);
  EXPECT_TRUE(problems_.file_errors().empty());  // a stop is not an input error
}

}  // namespace
}  // namespace chsync
