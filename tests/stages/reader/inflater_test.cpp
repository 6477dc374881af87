// Inflater (stages/reader/inflater.h): both framings, a stream fed in small pieces, concatenated
// streams, damage and truncation, checked against what zlib's deflate produced.
#include "stages/reader/inflater.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "tests/support/compress.h"

namespace chsync {
namespace {

std::string sample_text() {
  std::string s;
  for (int i = 0; i < 20000; ++i) s += "{\"line\":" + std::to_string(i * 7919 % 10007) + "}\n";
  return s;
}

struct Outcome {
  std::string out;
  Inflater::Result last = Inflater::Result::kProgress;
  std::string error;
};

// Feeds `in` in pieces of in_piece bytes into an output buffer of out_piece bytes, restarting
// after each stream end while input is left (as the gzip reader does).
Outcome inflate_all(std::string_view in, Inflater::Framing framing, std::size_t in_piece,
                    std::size_t out_piece) {
  Inflater inf(framing);
  Outcome o;
  std::string buf(out_piece, '\0');
  std::size_t pos = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(in.data());
  while (true) {
    const std::size_t given = std::min(in_piece, in.size() - pos);
    const unsigned char* next = data + pos;
    std::size_t left = given;
    auto* out = reinterpret_cast<unsigned char*>(buf.data());
    std::size_t out_left = buf.size();
    o.last = inf.step(next, left, out, out_left);
    pos += given - left;
    o.out.append(buf.data(), buf.size() - out_left);
    if (o.last == Inflater::Result::kError) {
      o.error = inf.error();
      return o;
    }
    if (o.last == Inflater::Result::kEnd) {
      if (pos == in.size()) return o;
      inf.restart();
      continue;
    }
    // No progress with every byte given and room for output: the data ended early.
    if (pos == in.size() && given == 0 && out_left == buf.size()) return o;
  }
}

TEST(InflaterTest, RawAndGzipGiveTheTextBackWhateverThePieces) {
  const std::string text = sample_text();
  for (auto [deflated, framing] :
       {std::pair{test::Deflated::kRaw, Inflater::Framing::kRaw},
        std::pair{test::Deflated::kGzip, Inflater::Framing::kGzipOrZlib}}) {
    const std::string z = test::deflate_bytes(text, deflated);
    for (auto [in_piece, out_piece] :
         {std::pair<std::size_t, std::size_t>{1, 7}, {13, 4096}, {z.size(), text.size()}}) {
      const Outcome o = inflate_all(z, framing, in_piece, out_piece);
      EXPECT_EQ(o.last, Inflater::Result::kEnd) << in_piece << " " << out_piece;
      EXPECT_EQ(o.out, text) << in_piece << " " << out_piece;
    }
  }
}

TEST(InflaterTest, RestartReadsConcatenatedGzipMembers) {
  const std::string z = test::deflate_bytes("{\"a\":1}\n") + test::deflate_bytes("{\"b\":2}\n");
  const Outcome o = inflate_all(z, Inflater::Framing::kGzipOrZlib, 5, 64);
  EXPECT_EQ(o.last, Inflater::Result::kEnd);
  EXPECT_EQ(o.out, "{\"a\":1}\n{\"b\":2}\n");
}

TEST(InflaterTest, DamageIsAnErrorWithZlibsReasonAndStaysOne) {
  std::string z = test::deflate_bytes(sample_text());
  z[0] = 'x';  // not a gzip (or zlib) header
  Inflater inf(Inflater::Framing::kGzipOrZlib);
  const auto* in = reinterpret_cast<const unsigned char*>(z.data());
  std::size_t in_left = z.size();
  std::string buf(1024, '\0');
  auto* out = reinterpret_cast<unsigned char*>(buf.data());
  std::size_t out_left = buf.size();
  EXPECT_EQ(inf.step(in, in_left, out, out_left), Inflater::Result::kError);
  EXPECT_EQ(inf.error(), "incorrect header check");
  EXPECT_EQ(inf.step(in, in_left, out, out_left), Inflater::Result::kError);
}

TEST(InflaterTest, CutStreamNeverEnds) {
  const std::string text = sample_text();
  const std::string z = test::deflate_bytes(text, test::Deflated::kRaw);
  const Outcome o =
      inflate_all(std::string_view(z).substr(0, z.size() / 2), Inflater::Framing::kRaw, 4096, 4096);
  EXPECT_EQ(o.last, Inflater::Result::kProgress);
  EXPECT_TRUE(o.error.empty());
  EXPECT_GT(o.out.size(), 0u);
  EXPECT_LT(o.out.size(), text.size());
  EXPECT_EQ(o.out, text.substr(0, o.out.size()));
}

}  // namespace
}  // namespace chsync
