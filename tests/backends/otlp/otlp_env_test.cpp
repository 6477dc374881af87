#include "backends/otlp/otlp_env.h"

#include <gtest/gtest.h>

using namespace chsync::otlp;

TEST(OtlpEnvTest, EndpointResolutionOrder) {
  EXPECT_EQ(resolve_endpoint("http://flag:1/x", "http://t:2/y", "http://b:3"), "http://flag:1/x");
  EXPECT_EQ(resolve_endpoint("", "http://t:2/custom/path", "http://b:3"), "http://t:2/custom/path");
  EXPECT_EQ(resolve_endpoint("", "http://t:2", ""), "http://t:2/");
  EXPECT_EQ(resolve_endpoint("", "", "http://c:4318"), "http://c:4318/v1/traces");
  EXPECT_EQ(resolve_endpoint("", "", "http://c:4318/mycollector/"),
            "http://c:4318/mycollector/v1/traces");
  EXPECT_EQ(resolve_endpoint("", "", "https://lf.example/api/public/otel"),
            "https://lf.example/api/public/otel/v1/traces");
  EXPECT_EQ(resolve_endpoint("", "", ""), "http://127.0.0.1:4318/v1/traces");
  EXPECT_EQ(resolve_endpoint("  ", " ", " "), "http://127.0.0.1:4318/v1/traces");
}

TEST(OtlpEnvTest, HeadersArePercentDecoded) {
  auto h = parse_headers("Authorization=Basic%20abc%3D%3D, x-team = t1 ,bad,=novalue,k=");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].first, "Authorization");
  EXPECT_EQ(h[0].second, "Basic abc==");
  EXPECT_EQ(h[1].first, "x-team");
  EXPECT_EQ(h[1].second, "t1");
  EXPECT_EQ(h[2].first, "k");
  EXPECT_EQ(h[2].second, "");
  std::size_t skipped = 0;
  parse_key_values("a=1,nope,=x", &skipped);
  EXPECT_EQ(skipped, 2u);
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%zz%41"), "%zzA");
}

TEST(OtlpEnvTest, ResourceAttributesAndServiceName) {
  auto r = parse_resource_attributes("service.name=a,deployment.environment=prod%2Ceu", "");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].second, "prod,eu");
  r = parse_resource_attributes("service.name=a", "svc");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].second, "svc");
  r = parse_resource_attributes("", "svc");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].first, "service.name");
}

TEST(OtlpEnvTest, TimeoutAndCompression) {
  EXPECT_EQ(parse_timeout_ms("2500"), std::chrono::milliseconds(2500));
  EXPECT_EQ(parse_timeout_ms("0"), std::chrono::milliseconds(0));
  EXPECT_FALSE(parse_timeout_ms("10s"));
  EXPECT_FALSE(parse_timeout_ms("-1"));
  EXPECT_FALSE(parse_timeout_ms(""));
  EXPECT_EQ(parse_compression_gzip("gzip"), true);
  EXPECT_EQ(parse_compression_gzip(" GZIP "), true);
  EXPECT_EQ(parse_compression_gzip("none"), false);
  EXPECT_FALSE(parse_compression_gzip("zstd"));
}
