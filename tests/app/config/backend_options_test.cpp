// The typed backend options of app/config as a library: values in canonical form
// (option_values.h), resolution with its precedence and its errors (backend_options.h), and the
// --help line derived from the declarations (option_help.h). The CLI's own tests
// (tests/integration/test_cli.py) cover the same through the binary; these name the module that
// breaks.
#include "app/config/backend_options.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "app/config/config.h"
#include "app/config/option_help.h"

namespace chsync {
namespace {

const OptionDecl& option(const std::string& type, const std::string& key) {
  const BackendTypeDecl* t = find_backend_type(type);
  EXPECT_NE(t, nullptr) << type;
  const OptionDecl* d = t ? find_option(*t, key) : nullptr;
  EXPECT_NE(d, nullptr) << type << "." << key;
  static const OptionDecl none;
  return d ? *d : none;
}

// "" when `text` parses, else the error; the canonical form in `out`.
std::string canon(const std::string& type, const std::string& key, const std::string& text,
                  std::string& out) {
  return canonical_value(option(type, key), text, out);
}

GivenValue flag(std::vector<std::string> values, const std::string& name) {
  return GivenValue{std::move(values), "flag --" + name, true};
}

// The message of the ConfigError `f` throws ("" when it throws none).
template <typename F>
std::string config_error(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

class BackendOptionsTest : public ::testing::Test {
 protected:
  // No ambient OTEL_*/LANGFUSE_* variable of the shell running the tests may change a default.
  void SetUp() override {
    for (const char* v : {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                          "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                          "LANGFUSE_BASE_URL", "LANGFUSE_HOST"})
      unsetenv(v);  // NOLINT(concurrency-mt-unsafe): before any thread of the test starts
  }

  // A config file read from nowhere: one [backends.lf] instance of `type` with `keys`.
  static ConfigFile file_with(const std::string& type, std::map<std::string, std::string> keys) {
    ConfigFile cf;
    cf.path = "/etc/chsync.toml";
    keys["type"] = type;
    int line = 2;
    for (const auto& [k, v] : keys) cf.lines["backends.lf." + k] = line++;
    cf.backends["lf"] = std::move(keys);
    return cf;
  }
};

TEST_F(BackendOptionsTest, ValuesTakeTheirCanonicalForm) {
  std::string out;
  EXPECT_EQ(canon("otlp", "batch_bytes", "4MiB", out), "");
  EXPECT_EQ(out, "4194304");
  EXPECT_EQ(canon("otlp", "timeout", "10s", out), "");
  EXPECT_EQ(out, "10000");
  EXPECT_EQ(canon("otlp", "rate", "5000spans/s", out), "");
  EXPECT_EQ(out, "5000spans/s");
  EXPECT_EQ(canon("otlp", "rate", "50/s", out), "");
  EXPECT_EQ(out, "50/s");
  EXPECT_EQ(canon("otlp", "insecure", "yes", out), "");
  EXPECT_EQ(out, "true");
  EXPECT_EQ(canon("otlp", "compression", "GZIP", out), "");
  EXPECT_EQ(out, "gzip");
}

TEST_F(BackendOptionsTest, MalformedValuesSayWhy) {
  std::string out;
  EXPECT_EQ(canon("otlp", "batch_spans", "many", out), "invalid number 'many'");
  EXPECT_EQ(canon("otlp", "batch_spans", "0", out), "0 is out of range [1, 1000000]");
  EXPECT_NE(canon("otlp", "rate", "0/s", out), "");
  EXPECT_NE(canon("otlp", "timeout", "10", out), "");  // a bare number is ambiguous
  EXPECT_EQ(canon("otlp", "endpoint", "ftp://x", out),
            "'ftp://x' is not an http:// or https:// URL");
  // The option's own rule, after the type's: Phoenix takes protobuf only.
  EXPECT_EQ(canon("phoenix", "otlp_encoding", "json", out),
            "'json': phoenix accepts only --otlp-encoding protobuf");
  EXPECT_EQ(canon("otlp", "otlp_encoding", "json", out), "");
}

TEST_F(BackendOptionsTest, AFlagBeatsTheInstanceKeyWhichBeatsSyncWhichBeatsTheDefault) {
  const ConfigFile cf = file_with("otlp", {{"batch_spans", "64"}, {"max_in_flight", "3"}});
  std::map<std::string, GivenValue> given;
  given["batch-spans"] = flag({"32"}, "batch-spans");
  given["max-in-flight"] = GivenValue{{"5"}, "file /etc/chsync.toml [sync]", false};
  given["timeout"] = GivenValue{{"2s"}, "file /etc/chsync.toml [sync]", false};
  const auto specs = resolve_backends({"lf"}, given, cf);
  ASSERT_EQ(specs.size(), 1u);
  const BackendSpec& s = specs[0];
  EXPECT_EQ(s.type, "otlp");
  EXPECT_EQ(spec_u64(s, "batch_spans"), 32u);
  EXPECT_EQ(s.sources.at("batch_spans"), "flag --batch-spans");
  EXPECT_EQ(spec_u64(s, "max_in_flight"), 3u);
  EXPECT_EQ(s.sources.at("max_in_flight"), "file /etc/chsync.toml [backends.lf]");
  EXPECT_EQ(spec_ms(s, "timeout").count(), 2000);
  EXPECT_EQ(s.sources.at("timeout"), "file /etc/chsync.toml [sync]");
  EXPECT_EQ(spec_ms(s, "retry_max").count(), 30000);
  EXPECT_EQ(s.sources.at("retry_max"), "default");
}

TEST_F(BackendOptionsTest, AnEnvironmentFallbackFillsWhatNobodyGave) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): the test runs no other thread
  setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/", 1);
  const auto specs = resolve_backends({"otlp"}, {}, ConfigFile{});
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(spec_str(specs[0], "endpoint"), "http://c:4318/v1/traces");
  EXPECT_EQ(specs[0].sources.at("endpoint"), "env OTEL_EXPORTER_OTLP_ENDPOINT");
}

TEST_F(BackendOptionsTest, AMalformedInstanceKeyNamesTheFileLineAndKey) {
  const ConfigFile cf = file_with("langfuse", {{"batch_spans", "many"}});
  EXPECT_EQ(config_error([&] { resolve_backends({"lf"}, {}, cf); }),
            "config /etc/chsync.toml:2: backends.lf.batch_spans: invalid number 'many'");
}

TEST_F(BackendOptionsTest, AnUnknownInstanceKeySuggestsTheClosestOne) {
  const ConfigFile cf = file_with("langfuse", {{"batch_spanz", "3"}});
  EXPECT_EQ(config_error([&] { resolve_backends({"lf"}, {}, cf); }),
            "config /etc/chsync.toml:2: backends.lf.batch_spanz: unknown key for type "
            "\"langfuse\" (did you mean 'batch_spans'?)");
}

TEST_F(BackendOptionsTest, AListFromTheFileKeepsItsOrderAndTheHostGivesTheEndpoint) {
  const ConfigFile cf =
      file_with("langfuse", {{"host", "https://lf.example/"}, {"tag.0", "b"}, {"tag.1", "a"}});
  const auto specs = resolve_backends({"lf"}, {}, cf);
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(spec_list(specs[0], "tag"), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(spec_str(specs[0], "endpoint"), "https://lf.example/api/public/otel/v1/traces");
  EXPECT_EQ(specs[0].sources.at("endpoint"), "host (file /etc/chsync.toml [backends.lf])");
}

TEST_F(BackendOptionsTest, AFlagThatNoChosenBackendTakesIsRefused) {
  std::map<std::string, GivenValue> given;
  given["tag"] = flag({"x"}, "tag");
  EXPECT_EQ(config_error([&] { resolve_backends({"otlp"}, given, ConfigFile{}); }),
            "--tag does nothing for --backend otlp with --profile generic (default); it needs "
            "--profile langfuse");
  given.clear();
  given["rate"] = flag({"5/s"}, "rate");
  EXPECT_NE(config_error([&] { resolve_backends({"console"}, given, ConfigFile{}); }), "");
}

TEST_F(BackendOptionsTest, AFlagSomeBackendsTakeIsRecordedAsNotAppliedByTheOthers) {
  std::map<std::string, GivenValue> given;
  given["tag"] = flag({"x"}, "tag");
  const auto specs = resolve_backends({"otlp", "langfuse"}, given, ConfigFile{});
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_FALSE(spec_has(specs[0], "tag.0"));
  EXPECT_EQ(specs[0].not_applied.at("tag"),
            "flag --tag: needs --profile langfuse (has generic, default)");
  EXPECT_EQ(spec_list(specs[1], "tag"), (std::vector<std::string>{"x"}));
}

TEST_F(BackendOptionsTest, OneEndpointForTwoBackendsIsRefused) {
  std::map<std::string, GivenValue> given;
  given["endpoint"] = flag({"http://127.0.0.1:1/v1/traces"}, "endpoint");
  const std::string err = config_error([&] {
    resolve_backends({"otlp", "langfuse"}, given, ConfigFile{});
  });
  EXPECT_NE(err.find("--endpoint would send --backend otlp, langfuse to the same place"),
            std::string::npos)
      << err;
}

TEST_F(BackendOptionsTest, AnUnknownBackendSuggestsTheClosestType) {
  EXPECT_EQ(config_error([&] { resolve_backends({"langfuze"}, {}, ConfigFile{}); }),
            "--backend: unknown backend 'langfuze'; did you mean 'langfuse'?");
}

TEST_F(BackendOptionsTest, HelpSaysEveryDefaultAndWhichBackendsTakeTheFlag) {
  const OptionDecl& d = option("otlp", "max_in_flight");
  EXPECT_EQ(option_type_name(d), "N");
  EXPECT_EQ(option_help(d),
            "Concurrent requests; default 16 (langfuse-legacy: 4) [network backends]");
  EXPECT_EQ(option_type_name(option("otlp", "compression")), "gzip|none");
}

TEST(DidYouMean, NearWordsOnlyAndSpellingOfDashesIgnored) {
  EXPECT_EQ(did_you_mean("batch_spanz", {"batch-spans", "batch-bytes"}), "batch-spans");
  EXPECT_EQ(did_you_mean("xyz", {"batch-spans", "rate"}), "");
}

}  // namespace
}  // namespace chsync
