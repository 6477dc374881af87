// Checks of user-given HTTP settings (issue 20 items 9-12): header injection, masking for
// display, endpoint credentials, https:// proxies.
#include "backends/http/settings_check.h"
#include "pipeline/base64.h"

#include <gtest/gtest.h>

#include "backends/http/http_client.h"

using namespace chsync::http;

TEST(SettingsCheckTest, HeaderCrLfNulAreRefusedAndTheValueIsNeverQuoted) {
  EXPECT_EQ(header_error("x-env", "a"), "");
  EXPECT_EQ(header_error("Authorization", "Bearer abc def"), "");
  const std::string e = header_error("x-env", "secret\r\nX-Env-Injected: 1");
  EXPECT_NE(e, "");
  EXPECT_EQ(e.find("secret"), std::string::npos) << e;
  EXPECT_NE(header_error("x-env", std::string("a\0b", 3)), "");
  EXPECT_NE(header_error("x-env", "a\nb"), "");
  EXPECT_NE(header_error("x\r\nInjected", "v"), "");
  EXPECT_NE(header_error("", "v"), "");
  EXPECT_NE(header_error("x env", "v"), "");
  EXPECT_NE(header_error("x:env", "v"), "");
}

TEST(SettingsCheckTest, MaskUrlHidesPasswordsAndQueryValues) {
  EXPECT_EQ(mask_url("http://user:pw@host:4318/v1/traces"), "http://user:****@host:4318/v1/traces");
  EXPECT_EQ(mask_url("https://host/v1/traces?token=abc&x=1"),
            "https://host/v1/traces?token=****&x=****");
  EXPECT_EQ(mask_url("http://u:p@h/p?k=v#frag"), "http://u:****@h/p?k=****#frag");
  EXPECT_EQ(mask_url("http://user@host/"), "http://user@host/");
  EXPECT_EQ(mask_url("http://host/path"), "http://host/path");
  EXPECT_EQ(mask_url("postgres://chsync:pw@db:5432/chsync?sslmode=verify-full"),
            "postgres://chsync:****@db:5432/chsync?sslmode=****");
}

TEST(SettingsCheckTest, EndpointCredentialsBecomeBasicAuth) {
  std::string url = "http://pk-lf%3A1:s%40cret@127.0.0.1:3000/api/public/otel/v1/traces";
  std::vector<std::pair<std::string, std::string>> headers;
  EXPECT_EQ(check_http_settings(url, headers), "");
  EXPECT_EQ(url, "http://127.0.0.1:3000/api/public/otel/v1/traces");
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].first, "Authorization");
  EXPECT_EQ(headers[0].second, "Basic " + chsync::base64_encode("pk-lf:1:s@cret"));
  // Both: refused, and the password is not in the message.
  std::string url2 = "http://u:topsecret@127.0.0.1/";
  std::vector<std::pair<std::string, std::string>> h2 = {{"authorization", "Bearer x"}};
  const std::string e = check_http_settings(url2, h2);
  EXPECT_NE(e, "");
  EXPECT_EQ(e.find("topsecret"), std::string::npos) << e;
  std::string url3 = "http://127.0.0.1/";
  std::vector<std::pair<std::string, std::string>> h3 = {{"x-env", "a\r\nX-Injected: 1"}};
  EXPECT_NE(check_http_settings(url3, h3), "");
}

TEST(SettingsCheckTest, HttpsProxiesAreRefused) {
  EXPECT_EQ(proxy_scheme_error(""), "");
  EXPECT_EQ(proxy_scheme_error("http://proxy:3128"), "");
  const std::string e = proxy_scheme_error("HTTPS://u:pw@proxy:3128");
  EXPECT_NE(e, "");
  EXPECT_EQ(e.find(":pw@"), std::string::npos) << e;
  ClientOptions co;
  co.proxy_url = "https://proxy:3128";
  EXPECT_THROW(make_http_client(co), std::runtime_error);
}
