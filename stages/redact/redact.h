// Redact stage: replaces secrets inside content text with `[REDACTED:<kind>]` markers.
//
// Input: one content string (a prompt, a tool output, tool arguments as JSON text, ...), edited in
// place. Output: the number of replacements; per-kind totals accumulate in the Redactor.
// Thread: a Redactor is immutable after construction except for its counters (atomics), so one
// instance is shared by every mapper thread through a const reference.
// Errors: construction throws std::invalid_argument for a --redact-pattern RE2 cannot compile
// (startup only, exit 2); redact() never fails and never throws.
// Blocks on nothing. Cost: the built-in kinds are hand-written scanners behind a substring
// prefilter (text without any trigger substring costs a few memchr-speed passes); only the user's
// --redact-pattern regexes run, under RE2 (linear time, no recursion: any field size is safe),
// on every field.
//
// Markers contain no quote, backslash or control character, so redacting inside JSON text (tool
// arguments) keeps it valid JSON: every built-in match lies inside one JSON string.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chsync {

struct Span;

enum class RedactKind : std::uint8_t {
  kAnthropicKey,  // sk-ant-...
  kOpenAiKey,     // sk-..., sk-proj-..., sk-svcacct-..., sk-admin-...
  kGithubToken,   // ghp_/gho_/ghs_/ghu_/ghr_..., github_pat_...
  kSlackToken,    // xoxa-/xoxb-/xoxp-/xoxr-/xoxe-...
  kGoogleApiKey,  // AIza + 35
  kStripeKey,     // sk_live_/rk_live_/sk_test_/rk_test_...
  kLangfuseKey,   // sk-lf-/pk-lf-...
  kBearerToken,   // "Bearer <token>" (Authorization headers, curl -H)
  kAwsAccessKey,  // AKIA/ASIA/ABIA/ACCA + 16 [A-Z0-9]
  kAwsSecretKey,  // 40 chars after aws_secret_access_key / SecretAccessKey
  kPrivateKey,    // -----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY-----
  kUrlPassword,   // scheme://user:PASSWORD@host (the user is kept)
  kEnvSecret,     // NAME=value where an UPPER_SNAKE name part is KEY/SECRET/TOKEN/PASSWORD/...
  kCustom,        // --redact-pattern
};
inline constexpr std::size_t kRedactKindCount = static_cast<std::size_t>(RedactKind::kCustom) + 1;

// snake_case name used in markers, the report and metrics: "aws_access_key", "custom", ...
std::string_view to_string(RedactKind kind) noexcept;

struct RedactOptions {
  // Extra regexes in RE2 syntax (no backreferences or lookaround). With a capture group, only
  // group 1 is replaced; else the whole match.
  std::vector<std::string> patterns;
};

class Redactor {
 public:
  // Throws std::invalid_argument naming the bad pattern.
  explicit Redactor(const RedactOptions& options);
  ~Redactor();
  Redactor(const Redactor&) = delete;
  Redactor& operator=(const Redactor&) = delete;

  // Replaces every secret in `text`; returns how many were replaced. Thread-safe.
  std::size_t redact(std::string& text) const;
  std::size_t redact(std::optional<std::string>& text) const { return text ? redact(*text) : 0; }

  // Same, without adding to the counts (for derived copies of text already counted).
  std::size_t redact_uncounted(std::string& text) const { return run(text, false); }

  // Totals since construction, per kind (all kinds present, zeros included).
  std::map<std::string, std::uint64_t> counts() const;
  std::uint64_t total() const noexcept;

 private:
  std::size_t run(std::string& text, bool count) const;
  struct Custom;
  std::vector<std::unique_ptr<Custom>> custom_;
  mutable std::array<std::atomic<std::uint64_t>, kRedactKindCount> counts_{};
};

// Applies the content policy to a finished span, before truncation and before any hash of
// content is taken: with no_content, input/output/tool_result become null, the error status text
// is cleared and content-bearing metadata (session_title, tool_use_result_error) is dropped; else,
// with a redactor, those fields are redacted in place. Structure, ids, names and usage are kept.
void apply_content_policy(Span& span, const Redactor* redactor, bool no_content);

}  // namespace chsync
