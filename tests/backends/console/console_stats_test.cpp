// Console, file and null exporters: what each writes and acknowledges, and their stats read by
// another thread while send() runs (the progress thread and the metrics sampler do that during a
// sync; issue 20 item 17). The concurrent cases prove the absence of a data race only under
// ThreadSanitizer, which .ci/run runs them under; in other builds they still check the counts.
#include "backends/console/console.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include "tests/support/spans.h"
#include "tests/support/temp_dir.h"

namespace chsync {
namespace {

namespace fs = std::filesystem;

std::vector<Span> make_spans(int n, int first) {
  return test::tool_spans(n, first,
                          {.output_bytes = 2, .spans_per_bundle = 1, .source_file = "a.jsonl"});
}

std::size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.empty() ? 0 : 1;
  return n;
}

class ConsoleStatsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }
  const test::TempDir tmp_{"console-stats-test"};
  const std::string dir_ = tmp_.path().string();
  int fd_ = -1;
};

constexpr int kBatches = 200;
constexpr int kSpansPerBatch = 5;
constexpr std::size_t kSpansSent = std::size_t{kBatches} * kSpansPerBatch;

// One thread sends batches (the dispatcher), another reads stats(), fatal() and fatal_reason()
// the whole time (the progress thread): the counters only grow, and end exact.
void send_while_reading_stats(Exporter& exp) {
  std::atomic<std::uint64_t> acked{0};
  exp.set_ack_fn([&](Ack&& a) {
    EXPECT_EQ(a.outcome, Ack::Outcome::kDelivered);
    acked += a.spans.size();
  });
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> reads{0};
  std::thread reader([&] {
    ExporterStats last;
    while (!done.load()) {
      ExporterStats st = exp.stats();
      EXPECT_GE(st.spans_delivered, last.spans_delivered);
      EXPECT_GE(st.requests, last.requests);
      EXPECT_EQ(st.requests, st.requests_ok);
      EXPECT_EQ(st.bytes_raw, st.bytes_wire);
      EXPECT_FALSE(exp.fatal()) << exp.fatal_reason();
      last = std::move(st);
      ++reads;
      std::this_thread::yield();
    }
  });
  // Sending starts once the reader runs, and halfway waits for more reads, so stats are read
  // between sends even where sending is quicker than starting a thread.
  while (reads.load() == 0) std::this_thread::yield();
  const std::uint64_t reads_before = reads.load();
  bool sent_all = true;
  for (int b = 0; b < kBatches; ++b) {
    sent_all = exp.send(make_spans(kSpansPerBatch, b * kSpansPerBatch)) && sent_all;
    if (b == kBatches / 2)
      while (reads.load() < reads_before + 2) std::this_thread::yield();
  }
  done = true;
  reader.join();
  EXPECT_TRUE(sent_all);
  const ExporterStats st = exp.stats();
  EXPECT_EQ(st.spans_delivered, std::uint64_t{kSpansSent});
  EXPECT_EQ(st.requests, std::uint64_t{kBatches});
  EXPECT_EQ(acked.load(), std::uint64_t{kSpansSent});
  EXPECT_TRUE(exp.stop(std::chrono::milliseconds(100)));
}

TEST_F(ConsoleStatsTest, FileStatsReadByAnotherThreadWhileSending) {
  const std::string path = dir_ + "/out.jsonl";
  auto exp = make_file_exporter("file", path);
  send_while_reading_stats(*exp);
  EXPECT_EQ(count_lines(path), kSpansSent);
  EXPECT_EQ(exp->stats().bytes_wire, fs::file_size(path));
}

TEST_F(ConsoleStatsTest, NullStatsReadByAnotherThreadWhileSending) {
  auto exp = make_null_exporter("null");
  send_while_reading_stats(*exp);
  EXPECT_EQ(exp->stats().bytes_wire, 0u);  // nothing written
}

TEST_F(ConsoleStatsTest, ConsoleTextStatsReadByAnotherThreadWhileSending) {
  const std::string path = dir_ + "/console.txt";
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd_, 0);
  auto exp = make_console_exporter("console", ConsoleFormat::kText, fd_);
  send_while_reading_stats(*exp);
  EXPECT_EQ(count_lines(path), kSpansSent);
  std::ifstream in(path);
  std::string first;
  std::getline(in, first);
  EXPECT_NE(first.find("execute_tool Bash"), std::string::npos) << first;
  EXPECT_NE(first.find("(a.jsonl:1)"), std::string::npos) << first;
}

// A write error (EPIPE: the pipe's read end is closed) makes the exporter fatal; the reader
// thread sees fatal() turn true with a reason, and the batch comes back kFailed.
TEST_F(ConsoleStatsTest, WriteErrorTurnsFatalWhileAnotherThreadReads) {
  std::signal(SIGPIPE, SIG_IGN);  // as chsync does (pipeline/runtime.cpp): EPIPE, not a signal
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[0]);
  fd_ = p[1];
  auto exp = make_console_exporter("console", ConsoleFormat::kJson, fd_);
  std::atomic<int> failed{0};
  exp->set_ack_fn([&](Ack&& a) {
    if (a.outcome == Ack::Outcome::kFailed) failed += static_cast<int>(a.spans.size());
  });
  std::atomic<bool> seen_fatal{false};
  std::thread reader([&] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!seen_fatal && std::chrono::steady_clock::now() < give_up) {
      (void)exp->stats();
      if (exp->fatal()) {
        EXPECT_NE(exp->fatal_reason().find("write failed"), std::string::npos);
        seen_fatal = true;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_FALSE(exp->send(make_spans(3, 0)));
  reader.join();
  EXPECT_TRUE(seen_fatal.load());
  EXPECT_EQ(failed.load(), 3);
  EXPECT_FALSE(exp->send(make_spans(1, 3)));  // stays fatal
  EXPECT_EQ(exp->stats().spans_delivered, 0u);
}

}  // namespace
}  // namespace chsync
