#include "stages/redact/redact.h"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

#include "pipeline/span.h"

namespace chsync {
namespace {

constexpr std::array<std::string_view, kRedactKindCount> kKindNames = {
    "anthropic_api_key", "openai_api_key", "github_token", "slack_token",    "google_api_key",
    "stripe_key",        "langfuse_key",   "bearer_token", "aws_access_key", "aws_secret_key",
    "private_key",       "url_password",   "env_secret",   "custom"};

struct Match {
  std::size_t begin = 0;
  std::size_t end = 0;
  RedactKind kind = RedactKind::kCustom;
};

bool is_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_upper_or_digit(char c) noexcept { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_token_char(char c) noexcept { return is_alnum(c) || c == '_' || c == '-'; }
bool is_word_char(char c) noexcept { return is_alnum(c) || c == '_'; }

// True when the character before `pos` cannot continue an identifier or key.
bool boundary_before(std::string_view t, std::size_t pos) noexcept {
  return pos == 0 || !is_token_char(t[pos - 1]);
}

template <typename Pred>
std::size_t run_end(std::string_view t, std::size_t pos, Pred pred) noexcept {
  while (pos < t.size() && pred(t[pos])) ++pos;
  return pos;
}

// Calls fn(pos) for every occurrence of `needle` (memchr-speed search in libstdc++).
template <typename Fn>
void for_each_find(std::string_view t, std::string_view needle, Fn fn) {
  for (std::size_t pos = t.find(needle); pos != std::string_view::npos;
       pos = t.find(needle, pos + 1))
    fn(pos);
}

struct PrefixRule {
  std::string_view prefix;
  RedactKind kind;
  bool (*body_char)(char) noexcept;
  std::size_t min_body;
  bool need_digit;  // random keys contain digits; prose like "sk-this-is-not-a-key" does not
};

bool body_alnum(char c) noexcept { return is_alnum(c); }
bool body_alnum_dash(char c) noexcept { return is_alnum(c) || c == '-'; }
bool body_word(char c) noexcept { return is_word_char(c); }
bool body_token(char c) noexcept { return is_token_char(c); }

constexpr PrefixRule kPrefixRules[] = {
    {"sk-ant-", RedactKind::kAnthropicKey, body_token, 20, false},
    {"sk-lf-", RedactKind::kLangfuseKey, body_alnum_dash, 8, true},
    {"pk-lf-", RedactKind::kLangfuseKey, body_alnum_dash, 8, true},
    {"sk-", RedactKind::kOpenAiKey, body_token, 20, true},
    {"ghp_", RedactKind::kGithubToken, body_alnum, 30, false},
    {"gho_", RedactKind::kGithubToken, body_alnum, 30, false},
    {"ghs_", RedactKind::kGithubToken, body_alnum, 30, false},
    {"ghu_", RedactKind::kGithubToken, body_alnum, 30, false},
    {"ghr_", RedactKind::kGithubToken, body_alnum, 30, false},
    {"github_pat_", RedactKind::kGithubToken, body_word, 22, false},
    {"xoxa-", RedactKind::kSlackToken, body_alnum_dash, 10, true},
    {"xoxb-", RedactKind::kSlackToken, body_alnum_dash, 10, true},
    {"xoxp-", RedactKind::kSlackToken, body_alnum_dash, 10, true},
    {"xoxr-", RedactKind::kSlackToken, body_alnum_dash, 10, true},
    {"xoxe-", RedactKind::kSlackToken, body_alnum_dash, 10, true},
    {"AIza", RedactKind::kGoogleApiKey, body_token, 35, false},
    {"sk_live_", RedactKind::kStripeKey, body_alnum, 16, false},
    {"rk_live_", RedactKind::kStripeKey, body_alnum, 16, false},
    {"sk_test_", RedactKind::kStripeKey, body_alnum, 16, false},
    {"rk_test_", RedactKind::kStripeKey, body_alnum, 16, false},
};

void scan_prefixes(std::string_view t, std::vector<Match>& out) {
  for (const PrefixRule& r : kPrefixRules) {
    for_each_find(t, r.prefix, [&](std::size_t pos) {
      if (!boundary_before(t, pos)) return;
      const std::size_t b = pos + r.prefix.size();
      // "sk-" must not claim the more specific sk-ant-/sk-lf- keys (their own rules do).
      if (r.kind == RedactKind::kOpenAiKey && (t.substr(b, 4) == "ant-" || t.substr(b, 3) == "lf-"))
        return;
      const std::size_t e = run_end(t, b, r.body_char);
      if (e - b < r.min_body) return;
      if (r.need_digit && std::none_of(t.begin() + static_cast<std::ptrdiff_t>(b),
                                       t.begin() + static_cast<std::ptrdiff_t>(e),
                                       [](char c) { return c >= '0' && c <= '9'; }))
        return;
      out.push_back({pos, e, r.kind});
    });
  }
}

void scan_aws_access_keys(std::string_view t, std::vector<Match>& out) {
  constexpr std::size_t kBody = 16;
  for (std::string_view p : {"AKIA", "ASIA", "ABIA", "ACCA"}) {
    for_each_find(t, p, [&](std::size_t pos) {
      if (pos > 0 && is_alnum(t[pos - 1])) return;
      const std::size_t b = pos + p.size();
      const std::size_t e = run_end(t, b, is_upper_or_digit);
      if (e - b != kBody) return;  // exactly 20 characters, not a longer upper-case word
      out.push_back({pos, e, RedactKind::kAwsAccessKey});
    });
  }
}

// aws_secret_access_key = wJalr...  /  "SecretAccessKey": "wJalr..."  (40 base64 characters)
void scan_aws_secret_keys(std::string_view t, std::vector<Match>& out) {
  constexpr std::size_t kSecretLen = 40;
  constexpr std::size_t kMaxGap = 8;
  for (std::string_view p : {"aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey",
                             "secretAccessKey", "secret_access_key"}) {
    for_each_find(t, p, [&](std::size_t pos) {
      std::size_t i = pos + p.size();
      bool sep = false;
      const std::size_t limit = std::min(t.size(), i + kMaxGap);
      while (i < limit && std::strchr(" \t\"'\\:=", t[i]) != nullptr) {
        if (t[i] == '=' || t[i] == ':') sep = true;
        ++i;
      }
      if (!sep) return;
      const std::size_t e =
          run_end(t, i, [](char c) { return is_alnum(c) || c == '/' || c == '+' || c == '='; });
      if (e - i < kSecretLen) return;
      out.push_back({i, e, RedactKind::kAwsSecretKey});
    });
  }
}

// Authorization: Bearer <token>; the word "Bearer" is kept.
void scan_bearer(std::string_view t, std::vector<Match>& out) {
  constexpr std::size_t kMinToken = 16;
  for (std::string_view p : {"Bearer", "bearer", "BEARER"}) {
    for_each_find(t, p, [&](std::size_t pos) {
      if (pos > 0 && is_alnum(t[pos - 1])) return;
      std::size_t i = pos + p.size();
      const std::size_t s = i;
      i = run_end(t, i, [](char c) { return c == ' ' || c == '\t'; });
      if (i == s) return;
      const std::size_t e =
          run_end(t, i, [](char c) { return is_alnum(c) || std::strchr("-._~+/=", c) != nullptr; });
      if (e - i < kMinToken) return;
      out.push_back({i, e, RedactKind::kBearerToken});
    });
  }
}

// PEM private key blocks, BEGIN line through END line. Without an END line (cut off), the base64
// body that follows is taken (raw newlines or JSON "\n" escapes between its lines).
void scan_private_keys(std::string_view t, std::vector<Match>& out) {
  constexpr std::size_t kMaxHeader = 64;
  for_each_find(t, "-----BEGIN ", [&](std::size_t pos) {
    const std::size_t hb = pos + 11;
    const std::size_t he = t.find("-----", hb);
    if (he == std::string_view::npos || he - hb > kMaxHeader) return;
    if (t.substr(hb, he - hb).find("PRIVATE KEY") == std::string_view::npos) return;
    const std::size_t body = he + 5;
    const std::size_t end_line = t.find("-----END ", body);
    if (end_line != std::string_view::npos) {
      const std::size_t close = t.find("-----", end_line + 9);
      if (close != std::string_view::npos && close - end_line < kMaxHeader + 9) {
        out.push_back({pos, close + 5, RedactKind::kPrivateKey});
        return;
      }
    }
    std::size_t i = body;
    while (i < t.size()) {
      const char c = t[i];
      if (is_alnum(c) || c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r' || c == ' ') {
        ++i;
      } else if (c == '\\' && i + 1 < t.size() && (t[i + 1] == 'n' || t[i + 1] == 'r')) {
        i += 2;
      } else {
        break;
      }
    }
    out.push_back({pos, i, RedactKind::kPrivateKey});
  });
}

// scheme://user:password@host -> the password only.
void scan_url_passwords(std::string_view t, std::vector<Match>& out) {
  for_each_find(t, "://", [&](std::size_t pos) {
    if (pos == 0 || !is_alnum(t[pos - 1])) return;
    const std::size_t a = pos + 3;
    const std::size_t ae =
        run_end(t, a, [](char c) { return std::strchr("/?# \t\r\n\"'\\<>`", c) == nullptr; });
    const std::string_view auth = t.substr(a, ae - a);
    const std::size_t at = auth.rfind('@');
    if (at == std::string_view::npos) return;
    const std::size_t colon = auth.find(':');
    if (colon == std::string_view::npos || colon > at) return;
    const std::size_t pb = a + colon + 1;
    const std::size_t pe = a + at;
    if (pe <= pb) return;
    const char first = t[pb];
    if (first == '$' || first == '{' || first == '*' || first == '[')
      return;  // placeholders, markers
    out.push_back({pb, pe, RedactKind::kUrlPassword});
  });
}

bool name_part_is_secret(std::string_view part) noexcept {
  static constexpr std::array<std::string_view, 9> kWords = {
      "KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "APIKEY", "AUTHTOKEN", "ACCESSTOKEN", "PASS"};
  return std::find(kWords.begin(), kWords.end(), part) != kWords.end();
}

// .env / shell / compose style: FOO_API_KEY=value, export DB_PASSWORD="value", API_TOKEN: value.
// Names are UPPER_SNAKE_CASE and one '_'-separated part must be a secret word (so MAX_TOKENS=4096
// and KEYBOARD=us are left alone). Values that are references ($VAR, ${VAR}, <placeholder>) or
// masks (***, xxx) are left alone.
void scan_env_assignments(std::string_view t, std::vector<Match>& out) {
  std::size_t last_name_end = std::string_view::npos;
  for (std::string_view w : {"KEY", "SECRET", "TOKEN", "PASS"}) {
    for_each_find(t, w, [&](std::size_t pos) {
      std::size_t nb = pos;
      while (nb > 0 && (is_upper_or_digit(t[nb - 1]) || t[nb - 1] == '_')) --nb;
      if (nb > 0 && (is_alnum(t[nb - 1]) || t[nb - 1] == '_' || t[nb - 1] == '-')) return;
      const std::size_t ne =
          run_end(t, pos, [](char c) { return is_upper_or_digit(c) || c == '_'; });
      if (ne < t.size() && (is_alnum(t[ne]) || t[ne] == '-')) return;  // lower-case tail
      if (ne == last_name_end) return;  // same name found through another word
      const std::string_view name = t.substr(nb, ne - nb);
      if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return;
      bool secret = false;
      for (std::size_t s = 0; s <= name.size() && !secret;) {
        std::size_t u = name.find('_', s);
        if (u == std::string_view::npos) u = name.size();
        secret = name_part_is_secret(name.substr(s, u - s));
        s = u + 1;
      }
      if (!secret) return;
      std::size_t i = run_end(t, ne, [](char c) { return c == ' ' || c == '\t'; });
      if (i >= t.size() || (t[i] != '=' && t[i] != ':')) return;
      if (i + 1 < t.size() && (t[i + 1] == '=' || (t[i] == ':' && t[i + 1] == ':'))) return;
      const bool colon = t[i] == ':';
      ++i;
      i = run_end(t, i, [](char c) { return c == ' ' || c == '\t'; });
      char quote = 0;
      if (i < t.size() && t[i] == '\\' && i + 1 < t.size() && t[i + 1] == '"') {
        quote = '"';  // JSON-escaped \" inside tool arguments
        i += 2;
      } else if (i < t.size() && (t[i] == '"' || t[i] == '\'')) {
        quote = t[i++];
      }
      // Quoted: up to the closing quote (spaces allowed); bare: up to a space or separator.
      const std::size_t ve =
          quote != 0
              ? run_end(
                    t, i,
                    [quote](char c) { return c != quote && c != '\\' && c != '\n' && c != '\r'; })
              : run_end(t, i,
                        [](char c) { return std::strchr(" \t\r\n\"'\\,;`)}]", c) == nullptr; });
      if (ve == i) return;
      const std::string_view v = t.substr(i, ve - i);
      if (v[0] == '$' || v[0] == '<' || v[0] == '{' || v[0] == '[') return;
      if (v.find_first_not_of("*xX.-") == std::string_view::npos) return;
      // "API_KEY: the key to use" is prose: after ':' only a key-like value (8+, a digit) counts.
      constexpr std::size_t kMinColonValue = 8;
      if (colon &&
          (v.size() < kMinColonValue || v.find_first_of("0123456789") == std::string_view::npos))
        return;
      last_name_end = ne;
      out.push_back({i, ve, RedactKind::kEnvSecret});
    });
  }
}

}  // namespace

std::string_view to_string(RedactKind kind) noexcept {
  return kKindNames[static_cast<std::size_t>(kind)];
}

namespace {
// Every match of a user pattern (group 1 when the pattern has one and it took part).
void scan_custom(const re2::RE2& re, bool group, std::string_view t, std::vector<Match>& out) {
  const re2::StringPiece input(t.data(), t.size());
  re2::StringPiece sub[2];
  const int n = group ? 2 : 1;
  std::size_t pos = 0;
  while (pos <= t.size() && re.Match(input, pos, t.size(), re2::RE2::UNANCHORED, sub, n)) {
    const auto whole_begin = static_cast<std::size_t>(sub[0].data() - t.data());
    const std::size_t whole_end = whole_begin + sub[0].size();
    // With a capture group only group 1 is replaced (when it took part in the match).
    const re2::StringPiece& use = group && sub[1].data() != nullptr ? sub[1] : sub[0];
    if (!use.empty()) {
      const auto b = static_cast<std::size_t>(use.data() - t.data());
      out.push_back({b, b + use.size(), RedactKind::kCustom});
    }
    pos = whole_end > whole_begin ? whole_end : whole_end + 1;  // an empty match moves on by one
  }
}
}  // namespace

// User patterns run under RE2: linear time in the text and no recursion, so a 200 KB field
// cannot exhaust the stack (libstdc++'s std::regex recursed per character: SIGSEGV).
struct Redactor::Custom {
  std::unique_ptr<re2::RE2> re;
  bool group = false;
};

Redactor::Redactor(const RedactOptions& options) {
  for (const auto& p : options.patterns) {
    auto c = std::make_unique<Custom>();
    re2::RE2::Options ro;
    ro.set_log_errors(false);
    c->re = std::make_unique<re2::RE2>(p, ro);
    if (!c->re->ok())
      throw std::invalid_argument("--redact-pattern '" + p +
                                  "': not a pattern RE2 accepts: " + c->re->error() +
                                  " (RE2 syntax: no backreferences or lookaround)");
    c->group = c->re->NumberOfCapturingGroups() >= 1;
    custom_.push_back(std::move(c));
  }
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
}

Redactor::~Redactor() = default;

std::size_t Redactor::redact(std::string& text) const { return run(text, true); }

std::size_t Redactor::run(std::string& text, bool count) const {
  const std::string_view t(text);
  std::vector<Match> found;
  scan_prefixes(t, found);
  scan_aws_access_keys(t, found);
  scan_aws_secret_keys(t, found);
  scan_bearer(t, found);
  scan_private_keys(t, found);
  scan_url_passwords(t, found);
  scan_env_assignments(t, found);
  for (const auto& c : custom_) scan_custom(*c->re, c->group, t, found);
  if (found.empty()) return 0;
  // Earliest first; at the same start the more specific kind (lower enum value) wins.
  std::sort(found.begin(), found.end(), [](const Match& a, const Match& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    return a.kind < b.kind;
  });
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0, n = 0;
  for (const Match& m : found) {
    if (m.begin < pos) continue;  // overlaps a match already taken
    out.append(t.substr(pos, m.begin - pos));
    out += "[REDACTED:";
    out += to_string(m.kind);
    out += ']';
    pos = m.end;
    if (count) counts_[static_cast<std::size_t>(m.kind)].fetch_add(1, std::memory_order_relaxed);
    ++n;
  }
  out.append(t.substr(pos));
  text = std::move(out);
  return n;
}

std::map<std::string, std::uint64_t> Redactor::counts() const {
  std::map<std::string, std::uint64_t> m;
  for (std::size_t i = 0; i < kRedactKindCount; ++i)
    m.emplace(std::string(kKindNames[i]), counts_[i].load(std::memory_order_relaxed));
  return m;
}

std::uint64_t Redactor::total() const noexcept {
  std::uint64_t s = 0;
  for (const auto& c : counts_) s += c.load(std::memory_order_relaxed);
  return s;
}

namespace {
bool is_content_metadata(std::string_view key) noexcept {
  return key == "session_title" || key == "tool_use_result_error" || key == "prompt_preview";
}
}  // namespace

void apply_content_policy(Span& span, const Redactor* redactor, bool no_content) {
  if (no_content) {
    span.input.reset();
    span.output.reset();
    span.tool_result.reset();
    span.input_is_json = false;
    span.output_is_json = false;
    span.status_message.clear();
    std::erase_if(span.metadata, [](const Attr& a) { return is_content_metadata(a.key); });
    return;
  }
  if (redactor == nullptr) return;
  redactor->redact(span.input);
  // tool spans carry the same text in output and tool_result: redact once, count once.
  const bool same = span.output && span.tool_result && *span.output == *span.tool_result;
  redactor->redact(span.output);
  if (same) span.tool_result = span.output;
  else redactor->redact(span.tool_result);
  // Derived copies of content (error text, titles): redacted, not counted a second time.
  if (!span.status_message.empty()) redactor->redact_uncounted(span.status_message);
  for (Attr& a : span.metadata)
    if (a.type == Attr::Type::kString && is_content_metadata(a.key))
      redactor->redact_uncounted(a.str);
}

}  // namespace chsync
