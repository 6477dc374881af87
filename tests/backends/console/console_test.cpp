// Console and file exporters: lines made ahead by map workers (make_encoder) are written exactly
// as send() would have formatted them.
#include "backends/console/console.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace chsync {
namespace {

std::vector<Span> make_spans(int n) {
  std::vector<Span> v;
  for (int i = 0; i < n; ++i) {
    Span s;
    s.trace_id[0] = 7;
    s.span_id = span_id_from_key(static_cast<std::uint64_t>(i) + 1);
    s.kind = i % 2 ? SpanKind::kGeneration : SpanKind::kTrace;
    s.name = "span \"" + std::to_string(i) + "\"\n";
    s.input = "line one\nline two é";
    s.start_ms = 1756860758373 + i;
    s.end_ms = s.start_ms + 10;
    s.tokens_in = 5;
    s.tokens_out = 7;
    s.source_file = "p/s.jsonl";
    s.source_line = static_cast<std::uint64_t>(i) + 1;
    v.push_back(std::move(s));
  }
  return v;
}

// What one exporter writes for the spans, through send() or through send_encoded().
std::string output_of(ConsoleFormat format, bool ahead) {
  std::FILE* f = std::tmpfile();
  EXPECT_NE(f, nullptr);
  auto exp = make_console_exporter("console", format, fileno(f));
  std::size_t delivered = 0;
  exp->set_ack_fn([&](Ack&& a) { delivered += a.spans.size(); });
  auto spans = make_spans(9);
  if (ahead) {
    EncodedSpans enc;
    std::thread worker([&] {
      auto encoder = exp->make_encoder();
      ASSERT_NE(encoder, nullptr);
      for (const auto& s : spans) enc.add(*encoder, s);
    });
    worker.join();
    EXPECT_TRUE(exp->send_encoded(std::move(spans), enc.views()));
  } else {
    EXPECT_TRUE(exp->send(std::move(spans)));
  }
  EXPECT_EQ(delivered, 9u);
  EXPECT_EQ(exp->stats().spans_delivered, 9u);
  std::string out;
  std::rewind(f);
  char buf[4096];
  for (std::size_t n = 0; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

TEST(ConsoleExporterTest, LinesMadeAheadAreWrittenAsSendWouldWriteThem) {
  for (auto format : {ConsoleFormat::kJson, ConsoleFormat::kText}) {
    const std::string plain = output_of(format, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), '\n'), 9) << plain;
    EXPECT_EQ(plain, output_of(format, true));
  }
}

TEST(ConsoleExporterTest, NullExporterEncodesNothingAhead) {
  EXPECT_EQ(make_null_exporter("null")->make_encoder(), nullptr);
}

TEST(ConsoleExporterTest, SendEncodedRefusesMismatchedCounts) {
  auto exp = make_console_exporter("console", ConsoleFormat::kJson, -1);
  std::vector<std::string_view> one{"x\n"};
  EXPECT_THROW(exp->send_encoded(make_spans(2), one), std::logic_error);
}

TEST(ConsoleExporterTest, TextLineIsOneLineAndCutsAtCharacterBoundaries) {
  Span s = make_spans(1)[0];
  s.name = "a\nb\x1b[31mc";
  s.input = std::string(58, 'x') + "é" + "é";  // the second é straddles byte 60
  const std::string line = format_span_text(s);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  EXPECT_NE(line.find(std::string(58, 'x') + "é…"), std::string::npos) << line;
  s.input = "short é";
  EXPECT_NE(format_span_text(s).find("\"short é\""), std::string::npos) << format_span_text(s);
}

}  // namespace
}  // namespace chsync
