// Feeder stage: what reaches the work queue for plain files and for archives (tar, zip, tar.zst
// made here with libarchive), members held in memory or spooled, --max-spool refusals, and a
// stop while the feeder is blocked.
#include "stages/feeder/feeder.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
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
#include "stages/delivery/delivery_ledger.h"
#include "stages/discover/discover.h"
#include "stages/feeder/lease_units.h"
#include "stages/state/work_table.h"
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
  StopOnExit(Feeder& f, StageRunner& r) : feeder(f), runner(r) {}
  ~StopOnExit() {
    feeder.stop(Deadline::max());
    runner.join_all();
  }
  StopOnExit(const StopOnExit&) = delete;  // a copy would stop and join a second time
  StopOnExit& operator=(const StopOnExit&) = delete;
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
    std::string path = tmp_.file(name);
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
  // A damaged input: discover may name the damage itself (the feeder then does not repeat it).
  void discover_damaged(const std::string& input) {
    disc_ = discover({input}, DiscoverOptions{});
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
      for (const auto& spooled : item.member_spool)
        if (!spooled.empty()) spooled_[spooled] = read(spooled);
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

// ---- damaged archives: the damage is named archive!member, the rest goes on ----

// The first byte offset of `needle` in the file at `path` after `from` (npos when absent).
std::size_t find_in_file(const std::string& path, const std::string& needle, std::size_t from = 0) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes.find(needle, from);
}

// Lines of `session` that do not compress to nothing (a deflate stream long enough to damage).
std::string varied(const std::string& session, int lines) {
  std::string s;
  for (int i = 0; i < lines; ++i)
    s += line(session, "u" + std::to_string(i * 7919 % 100003), static_cast<std::size_t>(i % 97));
  return s;
}

// An archive cut in the middle of a member's data: the members before the cut are fed whole,
// the cut member's bundle is fed with what could be decoded of it (a prefix: libarchive hands out
// nothing of a cut plain-tar member, a zstd stream gives what it decoded; the worker passes a cut
// tail as a bad line, and the ledger keeps a member read short incomplete), the damage is
// reported once naming the archive, and nothing after the cut is read.
class FeederTruncatedTest : public FeederTest, public ::testing::WithParamInterface<Format> {};

TEST_P(FeederTruncatedTest, FeedsWhatArrivedAndNamesTheDamageOnce) {
  put("p/s1.jsonl", varied("s1", 40));
  put("p/s2.jsonl", varied("s2", 4000));
  put("p/s3.jsonl", varied("s3", 40));
  const std::string path = write_archive(GetParam());
  if (GetParam() == Format::kTar) {
    // 1000 bytes into s2's data (its header is the 512-byte block holding its name).
    const std::size_t s2_header = find_in_file(path, "p/s2.jsonl");
    ASSERT_NE(s2_header, std::string::npos);
    fs::resize_file(path, (s2_header / 512 + 1) * 512 + 1000);
  } else {
    fs::resize_file(path, fs::file_size(path) / 2);  // s2 is nearly all of it
  }
  discover_damaged(path);
  // Discover lists what it can: s1 and s2 at most (the cut is inside s2's data), never s3.
  ASSERT_GE(disc_.bundles.size(), 1u);
  ASSERT_LE(disc_.bundles.size(), 2u);
  for (const auto& b : disc_.bundles) EXPECT_NE(b.session_id, "s3");

  const Fed fed = feed_all();
  ASSERT_EQ(fed.items.size(), disc_.bundles.size());
  bool s1_seen = false;
  for (const auto& item : fed.items) {
    ASSERT_EQ(item.member_data.size(), 1u);
    EXPECT_TRUE(item.member_error[0].empty()) << item.member_error[0];
    const std::string whole = content_of(item.bundle_index, 0);
    if (item.bundle_index == bundle_of("s1")) {
      s1_seen = true;
      EXPECT_EQ(item.member_data[0], whole);
    } else {
      EXPECT_LT(item.member_data[0].size(), whole.size());
      EXPECT_EQ(item.member_data[0], whole.substr(0, item.member_data[0].size()));
    }
  }
  EXPECT_TRUE(s1_seen);
  // Named once, by discover or by the feeder, with the archive's path.
  std::vector<std::string> named;
  for (const auto& e : disc_.errors) named.push_back(e.path + ": " + e.kind);
  for (const auto& e : fed.file_errors) named.push_back(e);
  ASSERT_EQ(named.size(), 1u) << ::testing::PrintToString(named);
  EXPECT_NE(named[0].find(path), std::string::npos) << named[0];
}

INSTANTIATE_TEST_SUITE_P(Formats, FeederTruncatedTest,
                         ::testing::Values(Format::kTar, Format::kTarZst),
                         [](const ::testing::TestParamInfo<Format>& p) {
                           return p.param == Format::kTar ? std::string("tar")
                                                          : std::string("tar_zst");
                         });

// A zip whose one member's compressed bytes are damaged: the damage is reported with the
// archive!member name, that member is fed with what decoded before the damage (nothing of it is
// lost silently: its file has an error), and the members after it are fed whole (a zip's
// members are independent: the walk goes on).
TEST_F(FeederTest, ZipWithABadMemberNamesArchiveAndMemberAndTheRestGoesOn) {
  put("p/s1.jsonl", varied("s1", 200));
  put("p/s2.jsonl", varied("s2", 2000));
  put("p/s3.jsonl", varied("s3", 200));
  const std::string zip = write_archive(Format::kZip);
  discover_input(zip);  // the central directory is intact: discover sees nothing wrong
  ASSERT_EQ(disc_.bundles.size(), 3u);
  // Overwrite bytes inside s2's compressed data (its local header holds its name first).
  const std::size_t s2_local = find_in_file(zip, "p/s2.jsonl");
  const std::size_t s3_local = find_in_file(zip, "p/s3.jsonl");
  ASSERT_NE(s2_local, std::string::npos);
  ASSERT_GT(s3_local, s2_local + 2000);
  {
    std::fstream f(zip, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(s2_local + 1000));
    const std::string junk(64, '\xff');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }

  const Fed fed = feed_all();
  ASSERT_EQ(fed.items.size(), 3u);
  for (const auto& item : fed.items) {
    const std::string whole = content_of(item.bundle_index, 0);
    if (item.bundle_index == bundle_of("s2")) {
      EXPECT_LT(item.member_data[0].size(), whole.size());
      EXPECT_EQ(item.member_data[0], whole.substr(0, item.member_data[0].size()));
    } else {
      EXPECT_EQ(item.member_data[0], whole) << disc_.bundles[item.bundle_index].files[0].member;
      EXPECT_TRUE(item.member_error[0].empty());
    }
  }
  ASSERT_EQ(fed.file_errors.size(), 1u) << ::testing::PrintToString(fed.file_errors);
  EXPECT_NE(fed.file_errors[0].find(zip + "!p/s2.jsonl: truncated or corrupt archive member"),
            std::string::npos)
      << fed.file_errors[0];
}

// ---- lease mode: only the units this run claims are fed ----

// An in-memory work table (one group of workers): units pending, claimed (by this run or by
// another), or done; every claim a new fence token; complete/release only under the holder's
// token, as the PostgreSQL one does.
class MemoryWorkTable final : public WorkTable {
 public:
  struct Row {
    std::uint64_t seq = 0;
    std::string owner;  // "" pending, else the run holding it
    std::int64_t fence = 0;
    bool done = false;
  };
  const std::string& run_id() const override { return me_; }
  void register_units(const std::vector<WorkUnitSpec>& units) override {
    std::lock_guard lock(mu_);
    for (const auto& u : units) rows_.try_emplace(u.key, Row{u.seq, "", 0, false});
  }
  std::vector<ClaimedUnit> claim(std::size_t max,
                                 const std::vector<std::string>& exclude) override {
    std::lock_guard lock(mu_);
    std::vector<std::pair<std::uint64_t, std::string>> free;
    for (const auto& [k, r] : rows_)
      if (!r.done && r.owner.empty() &&
          std::find(exclude.begin(), exclude.end(), k) == exclude.end())
        free.emplace_back(r.seq, k);
    std::sort(free.begin(), free.end());
    std::vector<ClaimedUnit> out;
    for (std::size_t i = 0; i < free.size() && out.size() < max; ++i) {
      Row& r = rows_[free[i].second];
      r.owner = me_;
      ++r.fence;
      ++claims[free[i].second];
      out.push_back(ClaimedUnit{free[i].second, claims[free[i].second], "", r.fence, false});
    }
    return out;
  }
  void complete(const UnitFence& u) override {
    std::lock_guard lock(mu_);
    Row& r = rows_.at(u.key);
    if (r.owner != me_ || r.fence != u.fence) return;
    r.done = true;
    r.owner.clear();
    completed.push_back(u);
  }
  void release(const UnitFence& u) override {
    std::lock_guard lock(mu_);
    Row& r = rows_.at(u.key);
    if (r.owner != me_ || r.fence != u.fence) return;
    r.owner.clear();
    released.push_back(u);
  }
  WorkCounts counts() override {
    std::lock_guard lock(mu_);
    WorkCounts c;
    for (const auto& [k, r] : rows_) {
      if (r.done) ++c.done;
      else if (r.owner.empty()) ++c.pending;
      else ++c.claimed, c.claimed_by_me += r.owner == me_ ? 1 : 0;
    }
    return c;
  }
  std::uint64_t heartbeat(const WorkerProgress& /*progress*/) override { return 0; }
  void finish(const WorkerProgress& /*progress*/, bool /*ok*/) override {}
  std::vector<WorkerRow> workers() override { return {}; }
  std::chrono::milliseconds lease() const override { return std::chrono::milliseconds(400); }

  // Another live worker holds `key` / finishes it.
  void held_elsewhere(const std::string& key) {
    std::lock_guard lock(mu_);
    rows_.at(key).owner = "other-run";
  }
  void finished_elsewhere(const std::string& key) {
    std::lock_guard lock(mu_);
    rows_.at(key).owner.clear();
    rows_.at(key).done = true;
  }
  bool done(const std::string& key) {
    std::lock_guard lock(mu_);
    return rows_.at(key).done;
  }

  // Guarded by mu_ while the feeder runs; read after it was joined.
  std::map<std::string, int> claims;
  std::vector<UnitFence> completed, released;

 private:
  const std::string me_ = "this-run";
  std::mutex mu_;
  std::map<std::string, Row> rows_;
};

class FeederLeaseTest : public FeederTest {
 protected:
  // Runs the feeder in lease mode on a thread; a consumer plays the map workers, the dispatcher
  // and the one instance's ledger: every bundle fed is dispatched and finalized (failed the
  // first time when it is in fail_once_). Returns when the feeder has closed the work queue or
  // after `limit`.
  void run_lease(std::chrono::milliseconds limit, const std::function<void()>& meanwhile = {}) {
    lease_ = std::make_unique<LeaseUnits>(table_, disc_.bundles, need_,
                                          log::Logger([](log::Level, const std::string&) {}));
    BoundedQueue<WorkItem> work(1ull << 40);
    Feeder::Wiring w = wiring(work);
    w.lease = lease_.get();
    w.lease_options.workers = 1;
    w.lease_options.lease = table_.lease();
    w.instances_needing = [](std::size_t) { return std::uint64_t{1}; };
    w.failure = &failure_;
    w.stop_requested = [this] { return stop_.load(); };
    StageRunner runner;
    Feeder feeder(std::move(w));
    feeder.start(runner);
    const StopOnExit guard{feeder, runner};
    std::thread consumer([&] {
      while (auto item = work.pop()) {
        const std::size_t b = item->bundle_index;
        fed_.push_back(std::move(*item));
        lease_->bundle_dispatched();
        const bool fail = fail_once_.erase(b) > 0;
        lease_->bundle_finalized(b, fail, false);
      }
    });
    if (meanwhile) meanwhile();
    const auto until = Clock::now() + limit;
    while (!work.closed() && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    closed_in_time_ = work.closed();
    stop_ = true;
    feeder.stop(Clock::now() + std::chrono::seconds(10));
    runner.join_all();
    consumer.join();
    EXPECT_EQ(runner.first_error(), "");
  }
  std::size_t times_fed(std::size_t bundle) const {
    return static_cast<std::size_t>(std::count_if(
        fed_.begin(), fed_.end(), [&](const WorkItem& i) { return i.bundle_index == bundle; }));
  }
  // The work unit of a bundle: the first file's key (plain) or the archive path.
  std::string unit_key(std::size_t b) const {
    const FileRef& f = disc_.bundles[b].files[0];
    return f.kind == SourceKind::kArchiveMember ? f.path : f.key;
  }

  MemoryWorkTable table_;
  std::unique_ptr<LeaseUnits> lease_;
  StateFailure failure_;
  std::atomic<bool> stop_{false};
  std::set<std::size_t> fail_once_;  // consumer thread only, once the feeder started
  std::vector<WorkItem> fed_;        // consumer thread; read after it was joined
  bool closed_in_time_ = false;
};

// Plain bundles are units of their own, an archive is one unit. A unit another live worker
// holds is not fed here; the feeder waits until that worker has finished it, then ends. Each
// unit this run claimed is fed once and completed under its claim's fence once its bundles
// were finalized.
TEST_F(FeederLeaseTest, FeedsOnlyTheUnitsItClaimsAndCompletesThem) {
  put("p/s1.jsonl", line("s1", "a"));
  put("p/s2.jsonl", line("s2", "b"));
  const std::string tree = write_tree();
  members_.clear();
  put("q/s3.jsonl", line("s3", "c"));
  put("q/s4.jsonl", line("s4", "d") + line("s4", "e"));
  const std::string tar = write_archive(Format::kTar);
  disc_ = discover({tree, tar}, DiscoverOptions{});
  ASSERT_TRUE(disc_.errors.empty());
  need_.assign(disc_.bundles.size(), true);
  ASSERT_EQ(disc_.bundles.size(), 4u);
  const std::size_t s2 = bundle_of("s2");
  LeaseUnits registering(table_, disc_.bundles, need_,
                         log::Logger([](log::Level, const std::string&) {}));
  table_.held_elsewhere(unit_key(s2));

  run_lease(std::chrono::seconds(20), [&] {
    // The other worker is still at it: everything else is fed and done, the feed goes on.
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (!(table_.done(unit_key(bundle_of("s1"))) && table_.done(tar)) && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(table_.done(unit_key(s2)));
    table_.finished_elsewhere(unit_key(s2));
  });
  EXPECT_TRUE(closed_in_time_) << "the feed did not end once nothing was left";
  EXPECT_EQ(times_fed(s2), 0u);
  for (const char* s : {"s1", "s3", "s4"}) EXPECT_EQ(times_fed(bundle_of(s)), 1u) << s;
  for (const auto& item : fed_) {
    const Bundle& b = disc_.bundles[item.bundle_index];
    if (b.files[0].kind != SourceKind::kArchiveMember) continue;
    EXPECT_EQ(item.member_data[0], content_of(item.bundle_index, 0));  // archive members' bytes
  }
  EXPECT_EQ(table_.claims.size(), 2u);  // s1's unit and the archive: one claim each
  ASSERT_EQ(table_.completed.size(), 2u);
  for (const auto& u : table_.completed) EXPECT_EQ(u.fence, 1);
  EXPECT_TRUE(table_.released.empty());
  EXPECT_EQ(lease_->counts().claimed, 2u);
  EXPECT_EQ(lease_->counts().done, 2u);
  EXPECT_FALSE(failure_.failed());
}

// A bundle that failed (a span without an outcome) gives its unit back instead of completing it;
// the unit is claimed again under a new fence and fed again, and completed then.
TEST_F(FeederLeaseTest, AFailedUnitIsGivenBackAndClaimedAgain) {
  put("p/s1.jsonl", line("s1", "a"));
  put("p/s2.jsonl", line("s2", "b"));
  discover_input(write_tree());
  fail_once_ = {bundle_of("s1")};

  run_lease(std::chrono::seconds(20));
  EXPECT_TRUE(closed_in_time_);
  EXPECT_EQ(times_fed(bundle_of("s1")), 2u);
  EXPECT_EQ(times_fed(bundle_of("s2")), 1u);
  const std::string k1 = unit_key(bundle_of("s1"));
  ASSERT_EQ(table_.released.size(), 1u);
  EXPECT_EQ(table_.released[0], (UnitFence{k1, 1}));
  EXPECT_EQ(table_.claims[k1], 2);
  EXPECT_TRUE(table_.done(k1));
  EXPECT_NE(std::find(table_.completed.begin(), table_.completed.end(), UnitFence{k1, 2}),
            table_.completed.end());
  EXPECT_EQ(lease_->counts().done, 2u);
}

// A stop while the feeder waits for a unit another worker holds ends the feed at once.
TEST_F(FeederLeaseTest, AStopEndsTheWaitForUnitsHeldElsewhere) {
  put("p/s1.jsonl", line("s1", "a"));
  discover_input(write_tree());
  LeaseUnits registering(table_, disc_.bundles, need_,
                         log::Logger([](log::Level, const std::string&) {}));
  table_.held_elsewhere(unit_key(bundle_of("s1")));
  const auto t0 = Clock::now();
  run_lease(std::chrono::milliseconds(500));  // then stop_ is set
  EXPECT_FALSE(closed_in_time_);              // it was still waiting
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(fed_.empty());
  EXPECT_FALSE(failure_.failed());
}

}  // namespace
}  // namespace chsync
