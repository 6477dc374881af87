// Redactor: each built-in kind on realistic text (prompts, tool outputs, tool arguments as JSON),
// near-misses that must survive untouched, --redact-pattern, counts, and the span content policy.
#include "stages/redact/redact.h"

#include <gtest/gtest.h>

#include "pipeline/span.h"

namespace chsync {
namespace {

struct Case {
  const char* name;
  std::string text;
  std::string secret;  // must be gone
  std::string kind;    // marker kind expected
};

std::string redacted(const Redactor& r, std::string s) {
  r.redact(s);
  return s;
}

class RedactKinds : public ::testing::TestWithParam<Case> {};

TEST_P(RedactKinds, SecretReplacedByMarker) {
  const Case& c = GetParam();
  Redactor r(RedactOptions{});
  const std::string out = redacted(r, c.text);
  EXPECT_EQ(out.find(c.secret), std::string::npos) << out;
  EXPECT_NE(out.find("[REDACTED:" + c.kind + "]"), std::string::npos) << out;
  EXPECT_EQ(r.counts().at(c.kind), 1u) << out;
  EXPECT_EQ(r.total(), 1u) << out;
}

// Realistic fakes: right shape, not live credentials.
const std::string kAnt =
    "sk-ant-api03-R2D2C3POx9yZkLmNoPqRsTuVwXyZ0123456789abcdefGHIJKLmnopQRSTuv-wxyzAA";
const std::string kOpenAi = "sk-proj-Zx81bQ4kLmN0pQrStUvWxYz12345AbCdEfGhIjKlMnOp";
const std::string kOpenAiLegacy = "sk-4f9KqLmN0pQrStUvWxYz12345AbCdEfGhIjKlMnOp7";
const std::string kGhp = "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ";
const std::string kPat = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH";
const std::string kSlack = "xoxb-2048123456-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
const std::string kGoogle = "AIzaSyD-1a2b3c4d5e6f7g8h9i0jKLMNOPQRSTU";
const std::string kStripe = "sk_live_51HxYzAbCdEfGhIjKlMnOpQr";
const std::string kLf = "sk-lf-1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b";
const std::string kLfPk = "pk-lf-9a8b7c6d-5e4f-4321-8765-43210fedcba9";
const std::string kJwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r";
const std::string kAkia = "AKIAIOSFODNN7EXAMPLE";
const std::string kAwsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

INSTANTIATE_TEST_SUITE_P(
    Redact, RedactKinds,
    ::testing::Values(
        Case{"anthropic_in_prompt", "my key is " + kAnt + " can you check why it 401s?", kAnt,
             "anthropic_api_key"},
        Case{"openai_proj_in_tool_output",
             "$ cat .env.local\nOPENAI_KEY_FILE=x\nopenai.api_key = \"" + kOpenAi + "\"\n", kOpenAi,
             "openai_api_key"},
        Case{"openai_legacy", "client = OpenAI(api_key='" + kOpenAiLegacy + "')", kOpenAiLegacy,
             "openai_api_key"},
        Case{"github_ghp_in_git_remote_json",
             "{\"command\":\"git remote -v\",\"stdout\":\"token " + kGhp + "\"}", kGhp,
             "github_token"},
        Case{"github_pat",
             "export GH_AUTH=" + kPat.substr(0, 0) + "x; gh auth login --with-token <<< " + kPat,
             kPat, "github_token"},
        Case{"slack_bot_token",
             "SLACK_BOT=xoxb; curl -d token=" + kSlack + " https://slack.com/api", kSlack,
             "slack_token"},
        Case{"google_api_key", "const firebaseConfig = { apiKey: \"" + kGoogle + "\" };", kGoogle,
             "google_api_key"},
        Case{"stripe_live", "stripe.api_key = '" + kStripe + "'", kStripe, "stripe_key"},
        Case{"langfuse_secret", "langfuse = Langfuse(secret_key=\"" + kLf + "\")", kLf,
             "langfuse_key"},
        Case{"langfuse_public", "public_key=" + kLfPk, kLfPk, "langfuse_key"},
        Case{"bearer_header_in_curl",
             "curl -H 'Authorization: Bearer " + kJwt + "' https://api.example.com/v1/me", kJwt,
             "bearer_token"},
        Case{"aws_access_key_id", "aws_access_key_id=" + kAkia + "\nregion=us-east-1", kAkia,
             "aws_access_key"},
        Case{"aws_secret_ini", "[default]\naws_secret_access_key = " + kAwsSecret + "\n",
             kAwsSecret, "aws_secret_key"},
        Case{"aws_secret_sts_json",
             "{\\n  \\\"Credentials\\\": {\\n    \\\"SecretAccessKey\\\": \\\"" + kAwsSecret +
                 "\\\"",
             kAwsSecret, "aws_secret_key"},
        Case{"private_key_block",
             "Here is the key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq8Zx\n"
             "Qm9vZ3VzS2V5RGF0YQ==\n-----END RSA PRIVATE KEY-----\nthanks",
             "MIIEpAIBAAKCAQEA7bq8Zx", "private_key"},
        Case{"private_key_block_json_escaped",
             "{\"content\":\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\n"
             "-----END OPENSSH PRIVATE KEY-----\\n\"}",
             "b3BlbnNzaC1rZXktdjEAAAAA", "private_key"},
        Case{"private_key_cut_off", "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0B\\nAQEF",
             "MIIEvQIBADANBgkqhkiG9w0B", "private_key"},
        Case{"url_password", "DATABASE_URL is postgres://app:s3cr3t-P4ss@db.internal:5432/prod",
             "s3cr3t-P4ss", "url_password"},
        Case{"env_assignment", "# .env\nSTRIPE_WEBHOOK_SECRET=whsec_abc123def456\nDEBUG=1\n",
             "whsec_abc123def456", "env_secret"},
        Case{"env_export_quoted", "export DB_PASSWORD=\"correct horse\"", "correct horse",
             "env_secret"},
        Case{"env_compose_colon", "    environment:\n      API_TOKEN: 9f8e7d6c5b4a\n",
             "9f8e7d6c5b4a", "env_secret"}),
    [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

TEST(RedactTest, UrlPasswordKeepsUser) {
  Redactor r(RedactOptions{});
  EXPECT_EQ(redacted(r, "redis://admin:hunter22@cache:6379/0"),
            "redis://admin:[REDACTED:url_password]@cache:6379/0");
}

TEST(RedactTest, BearerKeepsTheWord) {
  Redactor r(RedactOptions{});
  EXPECT_EQ(redacted(r, "Authorization: Bearer " + kJwt),
            "Authorization: Bearer [REDACTED:bearer_token]");
}

TEST(RedactTest, JsonStaysValidShape) {
  Redactor r(RedactOptions{});
  const std::string in = "{\"command\":\"export OPENAI_API_KEY=\\\"" + kOpenAi + "\\\" && run\"}";
  const std::string out = redacted(r, in);
  EXPECT_EQ(out,
            "{\"command\":\"export OPENAI_API_KEY=\\\"[REDACTED:openai_api_key]\\\" && run\"}");
}

TEST(RedactTest, SeveralSecretsInOneToolOutput) {
  Redactor r(RedactOptions{});
  std::string s = "AWS_ACCESS_KEY_ID=" + kAkia + "\nAWS_SECRET_ACCESS_KEY=" + kAwsSecret +
                  "\nGITHUB_TOKEN=" + kGhp + "\n";
  EXPECT_EQ(r.redact(s), 3u);
  EXPECT_EQ(
      s,
      "AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]\nAWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key]"
      "\nGITHUB_TOKEN=[REDACTED:github_token]\n");
}

// Near-misses: text that looks a bit like a secret but is not one.
class NearMiss : public ::testing::TestWithParam<std::string> {};

TEST_P(NearMiss, LeftAlone) {
  Redactor r(RedactOptions{});
  std::string s = GetParam();
  EXPECT_EQ(r.redact(s), 0u) << s;
  EXPECT_EQ(s, GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Redact, NearMiss,
    ::testing::Values(
        "Use the sk- prefix for secret keys; see sk-learn docs.",
        "pip install scikit-learn; the skeleton task-sk-this-is-not-a-real-key-at-all",
        "THEQUICKBROWNFOXJUMPS over the lazy dog",             // 20 upper-case letters, no AKIA
        "AKIAIOSFODNN7EXAMPLEXYZ is too long to be a key id",  // 23 chars
        "The password: field is required in the login form.",
        "Set API_KEY: the key from your dashboard",   // prose after ':'
        "MAX_TOKENS=4096 KEYBOARD=us TOKENIZER=bpe",  // secret word not a name part
        "OPENAI_API_KEY=$OPENAI_API_KEY ./run.sh",    // a reference, not a value
        "API_KEY=${API_KEY} SECRET_KEY=<your-secret> TOKEN=****", "if KEY == 'x': pass",
        "http://localhost:8080/path and git@github.com:org/repo.git",
        "postgres://app@db:5432/prod has no password", "a Bearer token is sent in the header",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC "
        "KEY-----",
        "ghp_short and xoxb-123 and AIzaShort", "my_api_key = load()"));

TEST(RedactTest, CustomPatternWholeMatchAndGroup) {
  Redactor r(RedactOptions{{"EMP-[0-9]{6}", "internal-host-([a-z]+)\\.corp"}});
  EXPECT_EQ(redacted(r, "ticket EMP-123456 on internal-host-zeus.corp"),
            "ticket [REDACTED:custom] on internal-host-[REDACTED:custom].corp");
  EXPECT_EQ(r.counts().at("custom"), 2u);
}

TEST(RedactTest, InvalidCustomPatternThrows) {
  EXPECT_THROW(Redactor(RedactOptions{{"(unclosed"}}), std::invalid_argument);
}

// Issue 20 item 8: std::regex recursed per character and crashed (SIGSEGV) on a 200 KB field.
TEST(RedactTest, CustomPatternOnAHugeFieldDoesNotCrash) {
  Redactor r(RedactOptions{{"(?:a|b)*c", "x[a-z]+y"}});
  std::string s(std::size_t{400} * 1024, 'a');
  s += "c and xqwertyy";
  EXPECT_EQ(r.redact(s), 2u);
  EXPECT_EQ(s, "[REDACTED:custom] and [REDACTED:custom]");
}

TEST(RedactTest, PatternsRe2CannotTakeAreRefused) {
  EXPECT_THROW(Redactor(RedactOptions{{"(a)\\1"}}), std::invalid_argument);      // backreference
  EXPECT_THROW(Redactor(RedactOptions{{"foo(?=bar)"}}), std::invalid_argument);  // lookahead
}

TEST(RedactTest, EmptyMatchesMoveOn) {
  Redactor r(RedactOptions{{"z*"}});
  std::string s = "abz";
  EXPECT_EQ(r.redact(s), 1u);
  EXPECT_EQ(s, "ab[REDACTED:custom]");
}

TEST(RedactTest, UncountedDoesNotCount) {
  Redactor r(RedactOptions{});
  std::string s = "key " + kAnt;
  EXPECT_EQ(r.redact_uncounted(s), 1u);
  EXPECT_EQ(r.total(), 0u);
}

Span tool_span(const std::string& content) {
  Span s;
  s.input = "{\"command\":\"cat ~/.aws/credentials\"}";
  s.input_is_json = true;
  s.output = content;
  s.tool_result = content;
  s.is_error = true;
  s.status_message = content;
  s.metadata.push_back(Attr::string("tool_use_result_error", content));
  s.metadata.push_back(Attr::string("tool_use_id", "toolu_01"));
  s.metadata.push_back(Attr::integer("output_tokens", 5));
  return s;
}

TEST(ContentPolicyTest, RedactsEveryContentFieldCountsOnce) {
  Redactor r(RedactOptions{});
  Span s = tool_span("aws_access_key_id = " + kAkia);
  apply_content_policy(s, &r, false);
  EXPECT_EQ(*s.output, "aws_access_key_id = [REDACTED:aws_access_key]");
  EXPECT_EQ(*s.tool_result, *s.output);
  EXPECT_EQ(s.status_message, *s.output);
  EXPECT_EQ(s.metadata[0].str, *s.output);
  EXPECT_EQ(r.total(), 1u);
}

TEST(ContentPolicyTest, NoContentKeepsStructure) {
  Span s = tool_span("secret stuff");
  apply_content_policy(s, nullptr, true);
  EXPECT_FALSE(s.input);
  EXPECT_FALSE(s.output);
  EXPECT_FALSE(s.tool_result);
  EXPECT_TRUE(s.is_error);
  EXPECT_TRUE(s.status_message.empty());
  ASSERT_EQ(s.metadata.size(), 2u);
  EXPECT_EQ(s.metadata[0].key, "tool_use_id");
}

TEST(ContentPolicyTest, NoRedactorNoChange) {
  Span s = tool_span("ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ");
  apply_content_policy(s, nullptr, false);
  EXPECT_EQ(*s.output, "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ");
}

}  // namespace
}  // namespace chsync
