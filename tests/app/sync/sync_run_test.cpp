// run_sync as a library call (no CLI): the sync orchestration of app/sync over real transcripts,
// a file backend and a SQLite state; a second run sends nothing again (dedupe + skipped files).
#include "app/sync/sync.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/log.h"
#include "tests/support/temp_dir.h"

namespace chsync {
namespace {

namespace fs = std::filesystem;

std::size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.empty() ? 0 : 1;
  return n;
}

class SyncRunTest : public ::testing::Test {
 protected:
  SyncOptions options(const std::string& out) const {
    SyncOptions o;
    o.inputs = {std::string(CHSYNC_SOURCE_DIR) + "/tests/data/real"};
    o.backends = {BackendSpec{"file", "", {{"output", out}}, {}, {}}};
    o.format = ConsoleFormat::kJson;
    o.db_path = dir_ + "/state.db";
    o.report_path = dir_ + "/report.json";
    o.workers = 2;
    o.quiet = true;
    o.map.settle_ms = 0;  // the checkout's mtimes are recent: nothing is held back
    return o;
  }

  const test::TempDir tmp_{"sync-run-test"};
  const std::string dir_ = tmp_.path().string();
};

TEST_F(SyncRunTest, ARunSendsEverySpanOnceAndARerunSendsNothing) {
  const std::string out1 = dir_ + "/out1.jsonl", out2 = dir_ + "/out2.jsonl";
  const int rc1 = run_sync(options(out1), nullptr);
  EXPECT_TRUE(rc1 == kExitOk || rc1 == kExitPartial) << rc1;  // real data may hold bad lines
  const std::size_t sent = count_lines(out1);
  EXPECT_GT(sent, 1000u);
  const int rc2 = run_sync(options(out2), nullptr);
  EXPECT_EQ(rc2, rc1);
  EXPECT_EQ(count_lines(out2), 0u);
  std::ifstream report(dir_ + "/report.json");
  std::string text((std::istreambuf_iterator<char>(report)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"spans_synced\":0"), std::string::npos) << text;
}

// The progress line is built every millisecond from every backend's stats while the dispatcher
// and the senders write them (issue 20 item 17): under ThreadSanitizer (.ci/run) a stat read
// without the exporter's lock is a reported race. Two file backends and a null one get the same
// spans.
TEST_F(SyncRunTest, ProgressReadsEveryBackendsStatsWhileTheyDeliver) {
  const std::string out_a = dir_ + "/a.jsonl", out_b = dir_ + "/b.jsonl";
  SyncOptions o = options(out_a);
  o.backends = {BackendSpec{"file", "a", {{"output", out_a}}, {}, {}},
                BackendSpec{"file", "b", {{"output", out_b}}, {}, {}},
                BackendSpec{"null", "n", {}, {}, {}}};
  o.quiet = false;
  o.progress_interval = std::chrono::milliseconds(1);
  o.workers = 3;
  const int rc = run_sync(o, nullptr);
  EXPECT_TRUE(rc == kExitOk || rc == kExitPartial) << rc;
  const std::size_t sent = count_lines(out_a);
  EXPECT_GT(sent, 1000u);
  EXPECT_EQ(count_lines(out_b), sent);
}

// Library code logs through the logger it is given (issue 18 "One logger"): the summary and the
// per-backend lines of a run reach the sink, and nothing of the run goes to stderr (progress
// lines, if the run lasts long enough for one, go the same way).
TEST_F(SyncRunTest, EveryLineGoesToTheLoggerItIsGiven) {
  std::mutex mu;
  std::vector<std::string> lines;
  SyncOptions o = options(dir_ + "/a.jsonl");
  o.backends = {BackendSpec{"file", "a", {{"output", dir_ + "/a.jsonl"}}, {}, {}},
                BackendSpec{"null", "n", {}, {}, {}}};
  o.quiet = false;
  o.progress_interval = std::chrono::milliseconds(1);
  o.logger = log::Logger([&](log::Level, const std::string& line) {
    std::lock_guard lock(mu);
    lines.push_back(line);
  });
  ::testing::internal::CaptureStderr();
  const int rc = run_sync(o, nullptr);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(rc == kExitOk || rc == kExitPartial) << rc;
  EXPECT_EQ(err, "");
  auto said = [&](const std::string& what) {
    for (const auto& l : lines)
      if (l.find(what) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(said("files scanned")) << lines.size();  // the summary
  EXPECT_TRUE(said("backend a: "));                    // per backend (there are two)
}

TEST_F(SyncRunTest, StartUpErrorsThrowBeforeAnyWork) {
  SyncOptions o = options(dir_ + "/out.jsonl");
  o.backends.clear();
  EXPECT_THROW(run_sync(o, nullptr), ConfigError);
  o = options(dir_ + "/out.jsonl");
  o.backends.push_back(o.backends.front());  // the same instance twice
  EXPECT_THROW(run_sync(o, nullptr), ConfigError);
  EXPECT_FALSE(fs::exists(dir_ + "/report.json"));  // no run, no report
}

}  // namespace
}  // namespace chsync
