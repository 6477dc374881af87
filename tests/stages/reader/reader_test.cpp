// Reader: line splitting over every source kind, line limits, tails and damaged streams.
#include "stages/reader/reader.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "stages/reader/spool.h"
#include "tests/support/compress.h"
#include "tests/support/temp_dir.h"

namespace chsync {
namespace {

namespace fs = std::filesystem;
using chsync::test::TempDir;

struct Line {
  std::string text;
  std::uint64_t no = 0;
  std::uint64_t offset = 0;
  bool no_newline = false;
};

struct Collected {
  std::vector<Line> lines;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> too_long;  // (line, bytes)
  ReadResult result;
};

LineFn collect_into(Collected& c) {
  return
      [&c](std::string_view line, std::size_t cap, std::uint64_t no, std::uint64_t off, bool nn) {
        EXPECT_GE(cap, line.size() + 64) << "simdjson padding missing at line " << no;
        c.lines.push_back({std::string(line), no, off, nn});
        return true;
      };
}

TooLongFn too_long_into(Collected& c) {
  return [&c](std::uint64_t no, std::uint64_t n) { c.too_long.emplace_back(no, n); };
}

Collected read_mem(std::string_view data, ReaderOptions o = {}) {
  Collected c;
  c.result = read_memory_lines(data, o, collect_into(c), too_long_into(c));
  return c;
}

std::string zstd(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

Collected read_file(const std::string& path, SourceKind kind, ReaderOptions o = {}) {
  FileRef f;
  f.path = path;
  f.kind = kind;
  f.size = fs::file_size(path);
  Collected c;
  c.result = read_lines(f, o, collect_into(c), too_long_into(c));
  return c;
}

// Many short JSON lines, numbered, for the stream tests.
std::string numbered_lines(int n, std::size_t pad = 100) {
  std::string s;
  for (int i = 1; i <= n; ++i)
    s += "{\"n\":" + std::to_string(i) + ",\"p\":\"" + std::string(pad, 'x') + "\"}\n";
  return s;
}

TEST(ReaderTest, SplitsLinesWithNumbersAndOffsets) {
  auto c = read_mem("{\"a\":1}\n{\"b\":22}\n\n{\"c\":3}\n");
  ASSERT_EQ(c.lines.size(), 4u);
  EXPECT_EQ(c.lines[0].text, "{\"a\":1}");
  EXPECT_EQ(c.lines[0].no, 1u);
  EXPECT_EQ(c.lines[0].offset, 0u);
  EXPECT_EQ(c.lines[1].offset, 8u);
  EXPECT_EQ(c.lines[2].text, "");  // blank line: delivered, the caller skips it
  EXPECT_EQ(c.lines[3].no, 4u);
  EXPECT_EQ(c.lines[3].offset, 18u);
  EXPECT_FALSE(c.lines[3].no_newline);
  EXPECT_EQ(c.result.end_offset, 26u);
  EXPECT_EQ(c.result.end_line, 4u);
  EXPECT_FALSE(c.result.had_tail);
  EXPECT_TRUE(c.result.error.empty());
}

TEST(ReaderTest, EmptyInputHasNoLines) {
  auto c = read_mem("");
  EXPECT_TRUE(c.lines.empty());
  EXPECT_EQ(c.result.end_offset, 0u);
  EXPECT_TRUE(c.result.error.empty());
}

TEST(ReaderTest, StripsCarriageReturn) {
  auto c = read_mem("{\"a\":1}\r\n");
  ASSERT_EQ(c.lines.size(), 1u);
  EXPECT_EQ(c.lines[0].text, "{\"a\":1}");
}

TEST(ReaderTest, FinalLineWithoutNewlineIsFlagged) {
  auto c = read_mem("{\"a\":1}\n{\"b\":2}");
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_TRUE(c.lines[1].no_newline);
  EXPECT_EQ(c.lines[1].no, 2u);
  EXPECT_TRUE(c.result.had_tail);
  EXPECT_EQ(c.result.end_offset, 8u);  // the tail is not committed
  EXPECT_EQ(c.result.end_line, 1u);
}

TEST(ReaderTest, LinesLongerThanTheChunkGrowTheBuffer) {
  ReaderOptions o;
  o.chunk_bytes = 4096;
  o.max_line_bytes = 1 << 20;
  std::string big = "{\"x\":\"" + std::string(300000, 'y') + "\"}";
  auto c = read_mem("{\"a\":1}\n" + big + "\n{\"b\":2}\n", o);
  ASSERT_EQ(c.lines.size(), 3u);
  EXPECT_EQ(c.lines[1].text, big);
  EXPECT_EQ(c.lines[2].no, 3u);
  EXPECT_EQ(c.lines[2].offset, 8u + big.size() + 1);
  EXPECT_TRUE(c.too_long.empty());
}

TEST(ReaderTest, OversizeLineIsSkippedNamedAndCounted) {
  ReaderOptions o;
  o.chunk_bytes = 4096;
  o.max_line_bytes = std::size_t{64} * 1024;
  std::string big(200000, 'z');
  auto c = read_mem("{\"a\":1}\n" + big + "\n{\"b\":2}\n", o);
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.lines[1].text, "{\"b\":2}");
  EXPECT_EQ(c.lines[1].no, 3u);
  EXPECT_EQ(c.lines[1].offset, 8u + big.size() + 1);
  ASSERT_EQ(c.too_long.size(), 1u);
  EXPECT_EQ(c.too_long[0].first, 2u);
  EXPECT_EQ(c.too_long[0].second, big.size());
  EXPECT_EQ(c.result.too_long, 1u);
}

TEST(ReaderTest, LimitAppliesEvenWhenTheChunkIsLarger) {
  // Regression: with chunk_bytes > max_line_bytes a long line used to pass whole.
  ReaderOptions o;
  o.chunk_bytes = 1 << 20;
  o.max_line_bytes = 1000;
  auto c = read_mem(
      "{\"a\":1}\n" + std::string(5000, 'q') + "\n{\"b\":2}\n" + std::string(3000, 'r'), o);
  ASSERT_EQ(c.lines.size(), 2u);
  ASSERT_EQ(c.too_long.size(), 2u);
  EXPECT_EQ(c.too_long[0].first, 2u);
  EXPECT_EQ(c.too_long[1].first, 4u);  // an oversize unterminated tail, too
}

TEST(ReaderTest, OversizeTailWithoutNewlineIsCounted) {
  ReaderOptions o;
  o.chunk_bytes = 4096;
  o.max_line_bytes = 8192;
  auto c = read_mem("{\"a\":1}\n" + std::string(50000, 'z'), o);
  EXPECT_EQ(c.lines.size(), 1u);
  ASSERT_EQ(c.too_long.size(), 1u);
  EXPECT_EQ(c.too_long[0].first, 2u);
}

TEST(ReaderTest, StopsWhenCallbackReturnsFalse) {
  Collected c;
  auto r = read_memory_lines(
      "a\nb\nc\n", {},
      [&](std::string_view l, std::size_t, std::uint64_t, std::uint64_t, bool) {
        c.lines.push_back({std::string(l)});
        return c.lines.size() < 2;
      },
      nullptr);
  EXPECT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(r.end_offset, 4u);
  EXPECT_EQ(r.end_line, 2u);
}

TEST(ReaderTest, PlainFileResumesAtOffset) {
  TempDir d{"reader-test"};
  auto p = d.file("a.jsonl", "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
  ReaderOptions o;
  o.start_offset = 8;
  o.start_line = 1;
  auto c = read_file(p, SourceKind::kPlain, o);
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.lines[0].text, "{\"b\":2}");
  EXPECT_EQ(c.lines[0].no, 2u);
  EXPECT_EQ(c.lines[0].offset, 8u);
  EXPECT_EQ(c.result.end_offset, 24u);
}

TEST(ReaderTest, MissingFileIsAnErrorNotACrash) {
  FileRef f;
  f.path = "/nonexistent/x.jsonl";
  auto r = read_lines(
      f, {}, [](auto, auto, auto, auto, auto) { return true; }, nullptr);
  EXPECT_NE(r.error.find("cannot open"), std::string::npos);
}

TEST(ReaderTest, GzipSmallAndLargeGiveTheSameLines) {
  TempDir d{"reader-test"};
  std::string small = numbered_lines(100);
  std::string large = numbered_lines(200000, 90);  // ~20 MB: above the whole-file limit
  auto cs = read_file(d.file("s.jsonl.gz", test::deflate_bytes(small)), SourceKind::kGzip);
  EXPECT_EQ(cs.lines.size(), 100u);
  EXPECT_TRUE(cs.result.error.empty());
  auto cl = read_file(d.file("l.jsonl.gz", test::deflate_bytes(large)), SourceKind::kGzip);
  EXPECT_EQ(cl.lines.size(), 200000u);
  EXPECT_TRUE(cl.result.error.empty()) << cl.result.error;
  EXPECT_EQ(cl.result.bytes, large.size());
  EXPECT_EQ(cl.lines.back().offset, large.size() - cl.lines.back().text.size() - 1);
}

TEST(ReaderTest, ConcatenatedGzipMembersAreOneStream) {
  TempDir d{"reader-test"};
  auto c = read_file(
      d.file("m.jsonl.gz", test::deflate_bytes("{\"a\":1}\n") + test::deflate_bytes("{\"b\":2}\n")),
      SourceKind::kGzip);
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.lines[1].offset, 8u);
  EXPECT_TRUE(c.result.error.empty());
}

TEST(ReaderTest, TruncatedGzipKeepsLinesBeforeTheDamage) {
  TempDir d{"reader-test"};
  for (int n : {300, 60000}) {  // whole-file (libdeflate) and streaming sizes
    std::string text = numbered_lines(n);
    std::string z = test::deflate_bytes(text);
    z.resize(z.size() * 2 / 3);
    auto c = read_file(d.file("t.jsonl.gz", z), SourceKind::kGzip);
    EXPECT_FALSE(c.result.error.empty()) << n;
    ASSERT_GT(c.lines.size(), static_cast<std::size_t>(n / 3)) << n;
    EXPECT_LT(c.lines.size(), static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < c.lines.size(); ++i) {
      EXPECT_EQ(c.lines[i].no, i + 1);
      EXPECT_FALSE(c.lines[i].no_newline);  // a cut tail after damage is never delivered
    }
  }
}

TEST(ReaderTest, CorruptGzipIsAnError) {
  TempDir d{"reader-test"};
  std::string z = test::deflate_bytes(numbered_lines(1000));
  for (std::size_t i = z.size() / 2; i < z.size() / 2 + 64; ++i) z[i] = static_cast<char>(~z[i]);
  auto c = read_file(d.file("c.jsonl.gz", z), SourceKind::kGzip);
  EXPECT_FALSE(c.result.error.empty());
}

TEST(ReaderTest, ZstdReadsAndTruncatedZstdKeepsEarlierLines) {
  TempDir d{"reader-test"};
  std::string text = numbered_lines(60000);
  std::string z = zstd(text);
  auto c = read_file(d.file("a.jsonl.zst", z), SourceKind::kZstd);
  EXPECT_EQ(c.lines.size(), 60000u);
  EXPECT_TRUE(c.result.error.empty());
  z.resize(z.size() / 2);
  auto t = read_file(d.file("t.jsonl.zst", z), SourceKind::kZstd);
  EXPECT_NE(t.result.error.find("zstd"), std::string::npos) << t.result.error;
  EXPECT_GT(t.lines.size(), 10000u);
  EXPECT_LT(t.lines.size(), 60000u);
}

TEST(ReaderTest, MultiFrameZstd) {
  TempDir d{"reader-test"};
  auto c = read_file(d.file("f.jsonl.zst", zstd("{\"a\":1}\n") + zstd("{\"b\":2}\n")),
                     SourceKind::kZstd);
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_TRUE(c.result.error.empty());
}

TEST(ReaderTest, NulAndInvalidUtf8BytesPassThroughUnchanged) {
  // The reader is byte-exact; the parser/mapper counts and replaces bad UTF-8.
  std::string s = std::string("{\"a\":\"x\xff\xfey\"}\n{\"b\":\"") + '\0' + "\"}\n";
  auto c = read_mem(s);
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.lines[0].text, "{\"a\":\"x\xff\xfey\"}");
  EXPECT_EQ(c.lines[1].text.size(), 9u);
}

TEST(SpoolTest, FilesLiveInAPrivateFolderRemovedAtTheEnd) {
  std::string dir;
  {
    SpoolDir s;
    int fd = -1;
    std::string err;
    std::string p = s.create_file(fd, err);
    ASSERT_FALSE(p.empty()) << err;
    ASSERT_TRUE(write_all(fd, "{\"a\":1}\n", 8, err));
    ::close(fd);
    dir = s.path();
    EXPECT_TRUE(fs::exists(p));
    auto c = read_file(p, SourceKind::kPlain);
    EXPECT_EQ(c.lines.size(), 1u);
    EXPECT_EQ(fs::status(dir).permissions() & fs::perms::others_all, fs::perms::none);
  }
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace chsync
