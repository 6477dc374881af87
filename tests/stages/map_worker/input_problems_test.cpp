// InputProblems (stages/map_worker/input_problems.h) through a capturing logger (pipeline/log.h
// Logger with a sink): what a run says about bad input, and how much of it.
#include "stages/map_worker/input_problems.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chsync {
namespace {

struct Captured {
  std::vector<std::string> lines;
  log::Logger logger() {
    return log::Logger([this](log::Level, const std::string& line) { lines.push_back(line); });
  }
};

TEST(InputProblemsTest, BadLinesAreAllCountedAndPrintedUpToTheLimit) {
  Captured c;
  InputProblems p(/*quiet=*/false, /*max_bad_line_messages=*/2, c.logger());
  for (int i = 1; i <= 5; ++i)
    p.bad_line(BadLine{"a.jsonl", static_cast<std::uint64_t>(i), "json", "oops"});
  p.bad_line(BadLine{"b.jsonl", 9, "utf8", "bad bytes"});
  EXPECT_EQ(p.bad_lines_total(), 6u);
  EXPECT_EQ(p.bad_lines_by_kind(),
            (std::map<std::string, std::uint64_t>{{"json", 5}, {"utf8", 1}}));
  ASSERT_EQ(c.lines.size(), 3u);
  EXPECT_EQ(c.lines[0], "chsync: a.jsonl:1: bad line (json): oops\n");
  EXPECT_EQ(c.lines[1], "chsync: a.jsonl:2: bad line (json): oops\n");
  EXPECT_EQ(c.lines[2], "chsync: further bad lines are counted but not printed\n");
}

TEST(InputProblemsTest, FileErrorsAreKeptAndSaid) {
  Captured c;
  InputProblems p(/*quiet=*/false, 10, c.logger());
  p.file_error("x.jsonl.gz: corrupt stream");
  EXPECT_EQ(p.file_errors(), (std::vector<std::string>{"x.jsonl.gz: corrupt stream"}));
  ASSERT_EQ(c.lines.size(), 1u);
  EXPECT_EQ(c.lines[0], "chsync: x.jsonl.gz: corrupt stream\n");
}

TEST(InputProblemsTest, QuietCountsButSaysNothing) {
  Captured c;
  InputProblems p(/*quiet=*/true, 10, c.logger());
  p.bad_line(BadLine{"a.jsonl", 1, "json", "oops"});
  p.file_error("gone");
  EXPECT_EQ(p.bad_lines_total(), 1u);
  EXPECT_EQ(p.file_errors().size(), 1u);
  EXPECT_TRUE(c.lines.empty());
}

}  // namespace
}  // namespace chsync
