// JsonWriter (pipeline/json_writer.h) and base64 (pipeline/base64.h): the one JSON writer and the
// one base64 of chsync. Expected texts are written out by hand, not produced by the code.
#include "pipeline/json_writer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>

#include "pipeline/base64.h"
#include "pipeline/span.h"

namespace chsync {
namespace {

TEST(JsonWriterTest, CommasBetweenItemsAtEveryDepth) {
  std::string out;
  JsonWriter w(out);
  w.begin_object().field("a", 1).key("b").begin_array();
  w.value("x").begin_object().end_object().begin_array().value(2).value(3).end_array();
  w.end_array().key("c").begin_object().field("d", true).end_object().end_object();
  EXPECT_EQ(out, R"({"a":1,"b":["x",{},[2,3]],"c":{"d":true}})");
}

TEST(JsonWriterTest, KeysAndStringsAreEscaped) {
  std::string out;
  JsonWriter(out).begin_object().field("k\"\n", std::string_view("a\\b\x01\t")).end_object();
  EXPECT_EQ(out, R"({"k\"\n":"a\\b\u0001\t"})");
}

TEST(JsonWriterTest, NumbersBooleansNullAndRaw) {
  std::string out;
  JsonWriter w(out);
  w.begin_array()
      .value(std::numeric_limits<std::uint64_t>::max())
      .value(std::numeric_limits<std::int64_t>::min())
      .value(0.1)
      .value(5.0)
      .value(false)
      .null()
      .value(std::optional<std::string>())
      .value(std::optional<std::string>("s"))
      .raw(R"({"pre":"made"})")
      .end_array();
  EXPECT_EQ(
      out,
      R"([18446744073709551615,-9223372036854775808,0.1,5,false,null,null,"s",{"pre":"made"}])");
}

// JSON has no NaN or infinity: a writer that printed them (std::to_chars gives "inf", "nan")
// would make the whole line unreadable.
TEST(JsonWriterTest, NonFiniteDoublesAreNull) {
  std::string out;
  JsonWriter(out)
      .begin_array()
      .value(std::numeric_limits<double>::infinity())
      .value(std::numeric_limits<double>::quiet_NaN())
      .fixed(-std::numeric_limits<double>::infinity(), 2)
      .fixed(2.345, 2)
      .fixed(1.0, 1)
      .end_array();
  EXPECT_EQ(out, "[null,null,null,2.35,1.0]");
}

TEST(JsonWriterTest, AppendsAfterWhatTheCallerWrote) {
  std::string out = R"({"x":1,"metadata":)";
  JsonWriter(out).begin_object().field("a", "b").end_object();
  out += '}';
  EXPECT_EQ(out, R"({"x":1,"metadata":{"a":"b"}})");
}

TEST(JsonWriterTest, EndWithoutBeginIsAProgrammingError) {
  std::string out;
  EXPECT_THROW(JsonWriter(out).end_object(), std::logic_error);
}

TEST(JsonWriterTest, MetadataKeepsEachValueType) {
  std::string out;
  JsonWriter w(out);
  write_metadata(w, {Attr::string("s", "v"), Attr::integer("i", -3), Attr::boolean("b", true),
                     Attr::real("d", 0.5), Attr::json("j", R"([1,2])"), Attr::json("e", "")});
  EXPECT_EQ(out, R"({"s":"v","i":-3,"b":true,"d":0.5,"j":[1,2],"e":null})");
}

// RFC 4648 section 10 test vectors.
TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> v[] = {{"", ""},
                                                   {"f", "Zg=="},
                                                   {"fo", "Zm8="},
                                                   {"foo", "Zm9v"},
                                                   {"foob", "Zm9vYg=="},
                                                   {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : v) {
    EXPECT_EQ(base64_encode(plain), encoded);
    std::string back;
    ASSERT_TRUE(base64_decode(encoded, back)) << encoded;
    EXPECT_EQ(back, plain);
  }
  EXPECT_EQ(base64_encode(std::string_view("\0\xff", 2)), "AP8=");
}

TEST(Base64Test, NotBase64IsRefused) {
  std::string out;
  EXPECT_FALSE(base64_decode("Zm9", out));  // not a multiple of 4
  EXPECT_FALSE(base64_decode("Zm9v!A==", out));
}

}  // namespace
}  // namespace chsync
