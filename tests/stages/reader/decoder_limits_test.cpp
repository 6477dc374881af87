// Issue 20 #13: decoder windows bounded (ZstdDecoder, XzDecoder, the reader, ArchiveReader,
// discover)
// and the spool's disk cap (SpoolDir::charge / remove).
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "stages/discover/discover.h"
#include "stages/reader/archive_reader.h"
#include "stages/reader/reader.h"
#include "stages/reader/spool.h"
#include "stages/reader/xz_decoder.h"
#include "stages/reader/zstd_decoder.h"

namespace chsync {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kMiB = 1u << 20;

// zstd with this window log and the content size left out of the header (as `zstd --long=27`
// writes through a pipe), so the frame names the full window.
std::string zstd_window(const std::string& data, int window_log) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log);
  std::string out(ZSTD_compressBound(data.size()) + 4096, '\0');
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  ZSTD_compressStream2(c, &o, &in, ZSTD_e_continue);  // not e_end first: size stays unknown
  ZSTD_inBuffer none{nullptr, 0, 0};
  while (ZSTD_compressStream2(c, &o, &none, ZSTD_e_end) != 0) {
  }
  ZSTD_freeCCtx(c);
  out.resize(o.pos);
  return out;
}

// .xz with liblzma's preset (9: a 64 MiB dictionary, 65 MiB to decode; 6: 8 MiB), or a custom
// dictionary size.
std::string xz(const std::string& data, std::uint32_t preset, std::uint32_t dict_bytes = 0) {
  lzma_stream s = LZMA_STREAM_INIT;
  lzma_options_lzma opt;
  lzma_lzma_preset(&opt, preset);
  if (dict_bytes) opt.dict_size = dict_bytes;
  lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
  EXPECT_EQ(lzma_stream_encoder(&s, filters, LZMA_CHECK_CRC64), LZMA_OK);
  std::string out(data.size() + 65536, '\0');
  s.next_in = reinterpret_cast<const std::uint8_t*>(data.data());
  s.avail_in = data.size();
  s.next_out = reinterpret_cast<std::uint8_t*>(out.data());
  s.avail_out = out.size();
  EXPECT_EQ(lzma_code(&s, LZMA_FINISH), LZMA_STREAM_END);
  out.resize(out.size() - s.avail_out);
  lzma_end(&s);
  return out;
}

std::string tar_bytes(const std::string& name, const std::string& data) {
  std::string out(data.size() + std::size_t{64} * 1024, '\0');
  std::size_t used = 0;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open_memory(a, out.data(), out.size(), &used);
  archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_write_header(a, e);
  archive_write_data(a, data.data(), data.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

class DecoderLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "decoder-limits-test-XXXXXX").string();
    dir_ = ::mkdtemp(t.data());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name, const std::string& content) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p, std::ios::binary).write(content.data(), std::streamsize(content.size()));
    return p;
  }
  std::string dir_;
};

const std::string kLines = [] {
  std::string s;
  for (int i = 0; i < 2000; ++i)
    s += "{\"type\":\"user\",\"sessionId\":\"s1\",\"uuid\":\"u" + std::to_string(i) + "\"}\n";
  return s;
}();

TEST(ZstdWindow, BudgetIsAQuarterOfMaxMemoryAsAPowerOfTwoAtLeast8MiB) {
  EXPECT_EQ(decoder_window_budget_bytes(256 * kMiB), 64 * kMiB);
  EXPECT_EQ(decoder_window_budget_bytes(64 * kMiB), 16 * kMiB);
  EXPECT_EQ(decoder_window_budget_bytes(100 * kMiB), 16 * kMiB);  // 25 MiB rounded down
  EXPECT_EQ(decoder_window_budget_bytes(1024 * kMiB), 256 * kMiB);
  EXPECT_EQ(decoder_window_budget_bytes(0), 8 * kMiB);
  EXPECT_EQ(decoder_window_budget_bytes(16 * kMiB), 8 * kMiB);
}

TEST(ZstdWindow, FrameHeaderNamesTheWindow) {
  const std::string z27 = zstd_window(kLines, 27);
  const auto* p = reinterpret_cast<const unsigned char*>(z27.data());
  EXPECT_TRUE(is_zstd_magic(p, z27.size()));
  EXPECT_EQ(zstd_frame_window_bytes(p, z27.size()), 128 * kMiB);
  EXPECT_EQ(zstd_frame_window_bytes(p, 5), 0u);  // header cut short
  // A one-shot frame knows its size: single segment, the window is the content size.
  std::string one(ZSTD_compressBound(kLines.size()), '\0');
  one.resize(ZSTD_compress(one.data(), one.size(), kLines.data(), kLines.size(), 3));
  EXPECT_EQ(zstd_frame_window_bytes(reinterpret_cast<const unsigned char*>(one.data()), one.size()),
            kLines.size());
  const unsigned char tar[4] = {'p', 'r', 'o', 'j'};
  EXPECT_FALSE(is_zstd_magic(tar, 4));
}

TEST_F(DecoderLimitsTest, JsonlZstOverTheWindowLimitFailsTheFileClearly) {
  const std::string p = file("s1.jsonl.zst", zstd_window(kLines, 27));
  FileRef f;
  f.kind = SourceKind::kZstd;
  f.path = p;
  ReaderOptions o;
  o.max_window_bytes = 16 * kMiB;
  std::uint64_t lines = 0;
  auto on_line = [&](std::string_view, std::size_t, std::uint64_t, std::uint64_t, bool) {
    ++lines;
    return true;
  };
  ReadResult r = read_lines(f, o, on_line, nullptr);
  EXPECT_EQ(lines, 0u);
  EXPECT_EQ(r.error,
            "zstd frame asks for a decoder window of 128 MiB, over the limit of 16 MiB (a quarter "
            "of --max-memory): raise --max-memory or recompress without --long");
  o.max_window_bytes = 128 * kMiB;
  r = read_lines(f, o, on_line, nullptr);
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(lines, 2000u);
}

TEST_F(DecoderLimitsTest, ALaterFrameOverTheLimitIsRefusedToo) {
  // A small first frame passes a check of the first header only; the decoder checks each frame.
  const std::string p = file("s1.jsonl.zst", zstd_window(kLines, 20) + zstd_window(kLines, 26));
  const int fd = ::open(p.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ZstdDecoder dec(8 * kMiB);
  std::string out;
  char buf[4096];
  long n = 0;
  while ((n = dec.read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  EXPECT_EQ(n, -1);
  EXPECT_TRUE(dec.window_refused());
  EXPECT_EQ(out, kLines);  // the first frame was read
  EXPECT_NE(dec.error().find("window of 64 MiB, over the limit of 8 MiB"), std::string::npos)
      << dec.error();
}

TEST_F(DecoderLimitsTest, LegacyFramesAreNotHandedToLibzstd) {
  // Found by fuzz_archive_reader: an 18-byte stream whose second frame has the v0.5 magic made
  // libzstd's legacy decoder allocate 64 MiB under an 8 MiB limit (it ignores windowLogMax).
  const unsigned char bytes[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x2d, 0x73, 0x38, 0x02,
                                 0x00, 0x25, 0xb5, 0x2f, 0xfd, 0x0f, 0xfd, 0x3d, 0x45};
  const std::string p =
      file("legacy.jsonl.zst", std::string(reinterpret_cast<const char*>(bytes), sizeof bytes));
  const int fd = ::open(p.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ZstdDecoder dec(8 * kMiB);
  std::uint64_t total = 0;
  char buf[65536];
  long n = 0;
  while ((n = dec.read(fd, buf, sizeof buf)) > 0) total += static_cast<std::uint64_t>(n);
  ::close(fd);
  EXPECT_EQ(n, -1);
  EXPECT_EQ(total, 18190u);  // the first frame (one RLE block) is decoded
  EXPECT_EQ(dec.error(), "not a zstd frame (damaged, or a legacy zstd format, which is not read)");
  EXPECT_FALSE(dec.window_refused());
}

TEST_F(DecoderLimitsTest, TruncatedAndEmptyStreams) {
  const std::string z = zstd_window(kLines, 20);
  for (std::size_t cut : {std::size_t{2}, std::size_t{9}, z.size() - 3}) {
    const std::string p = file("cut.zst", z.substr(0, cut));
    const int fd = ::open(p.c_str(), O_RDONLY);
    ZstdDecoder dec(8 * kMiB);
    char buf[4096];
    long n = 0;
    while ((n = dec.read(fd, buf, sizeof buf)) > 0) {
    }
    ::close(fd);
    EXPECT_EQ(n, -1) << cut;
    EXPECT_EQ(dec.error(), "truncated zstd stream") << cut;
  }
  const std::string p = file("empty.zst", "");
  const int fd = ::open(p.c_str(), O_RDONLY);
  ZstdDecoder dec(8 * kMiB);
  char buf[16];
  EXPECT_EQ(dec.read(fd, buf, sizeof buf), 0);
  ::close(fd);
}

TEST_F(DecoderLimitsTest, TarZstOverTheWindowLimitIsRefusedByArchiveReaderAndDiscover) {
  // Named .tar.gz on purpose: the decoder is chosen by the magic number, not the name.
  const std::string p = file("a.tar.gz", zstd_window(tar_bytes("proj/s1.jsonl", kLines), 27));
  {
    ArchiveReader ar(p, 64 * kMiB);
    EXPECT_FALSE(ar.is_open());
    EXPECT_TRUE(ar.window_refused());
    EXPECT_NE(ar.error("x").find("window of 128 MiB, over the limit of 64 MiB"), std::string::npos)
        << ar.error("x");
  }
  {
    ArchiveReader ar(p, 128 * kMiB);
    ASSERT_TRUE(ar.is_open()) << ar.error("x");
    ArchiveEntry e;
    ASSERT_EQ(ar.next(e), ArchiveReader::Next::kEntry);
    EXPECT_EQ(e.name, "proj/s1.jsonl");
    std::string got;
    char buf[65536];
    for (long n = 0; (n = ar.read(buf, sizeof buf)) > 0;)
      got.append(buf, static_cast<std::size_t>(n));
    EXPECT_EQ(got, kLines);
    EXPECT_EQ(ar.next(e), ArchiveReader::Next::kEnd);
  }
  DiscoverOptions dopt;
  dopt.max_decoder_window_bytes = 64 * kMiB;
  auto r = discover({p}, dopt);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].kind, "decoder_window");
  EXPECT_EQ(r.files, 0u);
  dopt.max_decoder_window_bytes = 128 * kMiB;
  r = discover({p}, dopt);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.files, 1u);
}

TEST_F(DecoderLimitsTest, ZstdNestedInGzipIsNotDecodedByLibarchive) {
  // libarchive's own zstd filter (any window up to 128 MiB) is never enabled: a zstd stream
  // behind another filter is an unrecognised format, not a way around the limit.
  const std::string z = zstd_window(tar_bytes("proj/s1.jsonl", kLines), 27);
  const std::string p = dir_ + "/a.tar.gz";
  struct archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_raw(a);
  ASSERT_EQ(archive_write_open_filename(a, p.c_str()), ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_write_header(a, e);
  archive_write_data(a, z.data(), z.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  ArchiveReader ar(p, 64 * kMiB);
  ArchiveEntry entry;
  EXPECT_FALSE(ar.is_open() && ar.next(entry) == ArchiveReader::Next::kEntry &&
               entry.name == "proj/s1.jsonl");
}

TEST_F(DecoderLimitsTest, TarXzOverTheDictionaryLimitIsRefusedAndXz9IsReadByDefault) {
  const std::string t = tar_bytes("proj/s1.jsonl", kLines);
  // 256 MiB dictionary: over the 64 MiB budget of the default --max-memory.
  const std::string big = file("big.tar.xz", xz(t, 6, 256u << 20));
  {
    ArchiveReader ar(big, decoder_window_budget_bytes(256 * kMiB));
    EXPECT_FALSE(ar.is_open());
    EXPECT_TRUE(ar.window_refused());
    EXPECT_NE(ar.error("x").find("xz stream needs 256."), std::string::npos) << ar.error("x");
    EXPECT_NE(ar.error("x").find("over the limit of 66 MiB"), std::string::npos) << ar.error("x");
  }
  DiscoverOptions dopt;
  dopt.max_decoder_window_bytes = 64 * kMiB;
  auto r = discover({big}, dopt);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].kind, "decoder_window");
  // xz -9 (64 MiB dictionary, 65 MiB to decode) fits the default budget plus its 2 MiB slack;
  // and the decoder is chosen by the magic number (named .tar.gz here).
  const std::string x9 = file("x9.tar.gz", xz(t, 9));
  ArchiveReader ar(x9, decoder_window_budget_bytes(256 * kMiB));
  ASSERT_TRUE(ar.is_open()) << ar.error("x");
  ArchiveEntry e;
  ASSERT_EQ(ar.next(e), ArchiveReader::Next::kEntry);
  std::string got;
  char buf[65536];
  for (long n = 0; (n = ar.read(buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(got, kLines);
  // ...but not under --max-memory 64MiB (16 MiB + 2).
  ArchiveReader small(x9, decoder_window_budget_bytes(64 * kMiB));
  EXPECT_FALSE(small.is_open());
  EXPECT_TRUE(small.window_refused());
}

TEST_F(DecoderLimitsTest, CutXzIsTruncatedNotSilent) {
  const std::string z = xz(kLines, 6);
  const std::string p = file("cut.xz", z.substr(0, z.size() / 2));
  const int fd = ::open(p.c_str(), O_RDONLY);
  XzDecoder dec(XzDecoder::Format::kXz, 8 * kMiB);
  char buf[4096];
  long n = 0;
  std::uint64_t total = 0;
  while ((n = dec.read(fd, buf, sizeof buf)) > 0) total += static_cast<std::uint64_t>(n);
  ::close(fd);
  EXPECT_EQ(n, -1);
  EXPECT_LT(total, kLines.size());
  EXPECT_EQ(dec.error(), "truncated xz stream");
}

TEST(SpoolBudget, AChargeThatCannotFitFailsAtOnceWithoutBookingAnything) {
  SpoolDir s(10);
  EXPECT_EQ(s.charge(11, 0, nullptr), SpoolDir::Charge::kOverLimit);
  EXPECT_EQ(s.charge(4, 7, nullptr), SpoolDir::Charge::kOverLimit);  // own 7 + 4 > 10
  EXPECT_EQ(s.used_bytes(), 0u);
  EXPECT_EQ(s.charge(10, 0, nullptr), SpoolDir::Charge::kBooked);
  EXPECT_EQ(s.used_bytes(), 10u);
  s.refund(10);
  EXPECT_EQ(s.used_bytes(), 0u);
  EXPECT_EQ(s.peak_bytes(), 10u);
  SpoolDir unlimited;
  EXPECT_EQ(unlimited.charge(1ull << 40, 0, nullptr), SpoolDir::Charge::kBooked);
}

TEST(SpoolBudget, AChargeThatFitsLaterWaitsForAReaderToRemoveAFile) {
  SpoolDir s(10);
  int fd = -1;
  std::string err;
  const std::string p = s.create_file(fd, err);
  ASSERT_FALSE(p.empty()) << err;
  ::close(fd);
  ASSERT_EQ(s.charge(8, 0, nullptr), SpoolDir::Charge::kBooked);  // released to a "worker"
  std::atomic<bool> removed{false};
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    removed = true;
    s.remove(p, 8);
  });
  EXPECT_EQ(s.charge(5, 0, nullptr), SpoolDir::Charge::kBooked);
  EXPECT_TRUE(removed.load());
  EXPECT_FALSE(fs::exists(p));
  EXPECT_EQ(s.used_bytes(), 5u);
  reader.join();
}

TEST(SpoolBudget, AWaitEndsWhenTheRunStops) {
  SpoolDir s(10);
  ASSERT_EQ(s.charge(8, 0, nullptr), SpoolDir::Charge::kBooked);
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stop = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(s.charge(5, 0, [&] { return stop.load(); }), SpoolDir::Charge::kStopped);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(s.used_bytes(), 8u);
  stopper.join();
}

}  // namespace
}  // namespace chsync
