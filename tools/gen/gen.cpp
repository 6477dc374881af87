// chsync-gen: deterministic synthetic Claude Code transcript archive.
//
// MANIFEST DEFINITIONS (also in tools/gen/README.md). "Line" = a byte run ended by LF, plus a
// final run without LF if non-empty. "Valid line" = a line that parses as a JSON object; every
// line except the injected --bad lines is valid. "Top-level" = the JSON object of a valid line
// (copies nested inside progress.data.message are never counted, except agent_progress_copies).
//   files                 number of *.jsonl files written (main, agent, acompact, empty, bad-only)
//   meta_files            number of subagents/*.meta.json sidecars (not in files/bytes/lines)
//   bytes                 sum of the uncompressed sizes of all *.jsonl files
//   lines                 sum of lines over all *.jsonl files (valid + bad)
//   projects              number of project folders
//   sessions              main session files (<uuid>.jsonl directly in a project folder, not
//                         agent-*) holding at least one valid line
//   prompts               top-level type=user entries in main files with isSidechain=false, no
//                         isMeta, no isCompactSummary, and message.content either a string or an
//                         array with no tool_result block (the human turns)
//   api_responses         distinct requestId over top-level type=assistant entries, all files
//   partial_responses     those responses where no entry has a non-null stop_reason
//   assistant_entries     top-level type=assistant lines, all files
//   tool_uses             tool_use blocks in top-level assistant entries, all files
//   tool_results          tool_result blocks in top-level user entries, all files
//   tool_errors           those tool_result blocks with is_error == true
//   subagents             linked subagent conversations: agent files (not agent-acompact-*) whose
//                         agentId equals some top-level toolUseResult.agentId in the corpus, plus
//                         1.0.x inline sidechains (isSidechain=true user entries with
//                         parentUuid=null in a main file; their content equals a Task
//                         input.prompt)
//   subagents_unlinked    agent files (not agent-acompact-*) whose agentId is referenced by no
//                         toolUseResult.agentId = warmups + orphans
//   warmups, orphans      the two kinds of unlinked agent files
//   compactions           top-level type=system entries with subtype=compact_boundary
//                         (= number of agent-acompact-*.jsonl files)
//   system_events         top-level type=system entries (all subtypes, incl. compact_boundary)
//   summaries             top-level type=summary entries
//   progress              top-level type=progress entries (all data.type)
//   agent_progress_copies progress entries with data.type=agent_progress (they embed copies)
//   file_history_snapshots, queue_operations, attachments: top-level entries of those types
//   tokens.{input,cache_read,cache_creation,output}
//                         for every distinct requestId, the usage of its LAST entry in file
//                         order (input_tokens, cache_read_input_tokens,
//                         cache_creation_input_tokens, output_tokens), summed; the last entry
//                         always holds the maximum output_tokens of its group
//   huge_lines            lines of >= 500,000 bytes (user entries with a base64 image block);
//                         no other line reaches that size
//   max_line_bytes        longest line (without its LF)
//   bad_lines             (--bad only) kind -> count: malformed_json, invalid_utf8, nul_bytes,
//                         truncated_final (last line without LF, cut mid-object), plus
//                         empty_files (zero-byte main-looking files, not lines)
#include "tools/gen/gen.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tools/gen/rng_text.h"

namespace chsync::gen {
namespace {

constexpr std::int64_t kHugeLineBytes = 500000;
constexpr std::int64_t kMaxToolOutput = 180000;

// ----------------------------------------------------------------------------- versions

enum class Era : std::uint8_t { k10, k20, k2139, k21114 };

struct Ver {
  Era era;
  const char* version;
  const char* model;
  const char* agent_model;
  double partial_prob;  // probability that no entry of a response has a stop_reason
  bool slug, fhs, queue_ops, summaries, thinking_meta, agent_id_in_result, warmup_user;
};

constexpr std::array<Ver, 6> kVersions{{
    {Era::k10, "1.0.98", "claude-sonnet-4-20250514", "claude-sonnet-4-20250514", 0.85, false, false,
     false, true, false, false, false},
    {Era::k10, "1.0.108", "claude-opus-4-1-20250805", "claude-sonnet-4-20250514", 0.85, false,
     false, false, true, false, false, false},
    {Era::k20, "2.0.42", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", 0.10, false,
     false, true, false, true, true, false},
    {Era::k20, "2.0.55", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001", 0.85, true, true,
     true, true, true, true, true},
    {Era::k2139, "2.1.39", "claude-opus-4-6", "claude-haiku-4-5-20251001", 0.85, true, true, true,
     false, true, true, true},
    {Era::k21114, "2.1.114", "claude-opus-4-7", "claude-opus-4-7", 0.05, false, true, true, false,
     false, true, true},
}};

// ----------------------------------------------------------------------------- text pools

constexpr std::string_view kWords[] = {"the",
                                       "a",
                                       "function",
                                       "return",
                                       "value",
                                       "file",
                                       "test",
                                       "error",
                                       "build",
                                       "config",
                                       "session",
                                       "update",
                                       "parser",
                                       "const",
                                       "auto",
                                       "std::string",
                                       "nullptr",
                                       "if",
                                       "else",
                                       "for",
                                       "while",
                                       "async",
                                       "await",
                                       "import",
                                       "export",
                                       "module",
                                       "class",
                                       "struct",
                                       "TODO",
                                       "fix",
                                       "bug",
                                       "src/main.cpp",
                                       "lib/app.ex",
                                       "README.md",
                                       "npm",
                                       "cargo",
                                       "pytest",
                                       "git",
                                       "commit",
                                       "branch",
                                       "merge",
                                       "docker",
                                       "json",
                                       "yaml",
                                       "http",
                                       "request",
                                       "response",
                                       "cache",
                                       "token",
                                       "line",
                                       "column",
                                       "warning:",
                                       "note:",
                                       "passed",
                                       "failed",
                                       "ok",
                                       "Let",
                                       "me",
                                       "check",
                                       "now",
                                       "I'll",
                                       "read",
                                       "the",
                                       "tests",
                                       "and",
                                       "then",
                                       "run",
                                       "it",
                                       "again.",
                                       "Done.",
                                       "—",
                                       "–",
                                       "…",
                                       "│",
                                       "├──",
                                       "└─",
                                       "→",
                                       "✔",
                                       "✅",
                                       "🚀",
                                       "🎉",
                                       "😀",
                                       "日本語",
                                       "変更を確認しました",
                                       "テスト",
                                       "中文字符",
                                       "한국어",
                                       "févr.",
                                       "naïve",
                                       "café",
                                       "Ωμέγα",
                                       "≤",
                                       "«guillemets»",
                                       "\"quoted\"",
                                       "C:\\Users\\dev\\repo",
                                       "\\n",
                                       "{\"key\": \"value\"}",
                                       "\x1b[1mbold\x1b[22m"};

constexpr std::string_view kAnsi[] = {"\x1b[32m✔\x1b[39m", "\x1b[31m✘ FAIL\x1b[0m",
                                      "\x1b[1m",           "\x1b[22m",
                                      "\x1b[90m›\x1b[39m", "\x1b[2K\x1b[1G"};

constexpr std::string_view kSlugWords[] = {"radiant", "floating",  "music",  "linked",
                                           "soaring", "matsumoto", "quiet",  "amber",
                                           "river",   "gentle",    "cobalt", "harbor"};

constexpr std::string_view kB64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kB62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

struct Pools {
  std::string text;  // prose/code/log mix with unicode, quotes, backslashes, ANSI, tabs
  std::string b64;   // base64 alphabet only (signatures, images)

  explicit Pools(std::uint64_t seed) {
    Rng r(seed ^ 0x5eedf00dull);
    constexpr std::size_t kTextBytes = 3u << 20;
    text.reserve(kTextBytes + 256);
    int col = 0;
    while (text.size() < kTextBytes) {
      if (r.chance(0.01)) {
        text += kAnsi[r.below(std::size(kAnsi))];
      } else {
        text += kWords[r.below(std::size(kWords))];
      }
      if (++col > static_cast<int>(r.range(6, 16))) {
        col = 0;
        if (r.chance(0.15)) text += "\n\n";
        else if (r.chance(0.1)) text += "\n  - ";
        else if (r.chance(0.05)) text += "\n\t";
        else if (r.chance(0.02)) text += "\r\n";
        else text += "\n";
      } else {
        text += ' ';
      }
    }
    constexpr std::size_t kB64Bytes = 5400000;
    b64.resize(kB64Bytes);
    for (std::size_t i = 0; i < kB64Bytes; i += 8) {
      std::uint64_t v = r.next();
      for (std::size_t k = 0; k < 8 && i + k < kB64Bytes; ++k, v >>= 6) b64[i + k] = kB64[v & 63];
    }
  }

  // A random substring of about n bytes cut at UTF-8 character boundaries.
  std::string_view prose(Rng& r, std::size_t n) const {
    n = std::min(n, text.size() - 8);
    std::size_t b = r.below(text.size() - n);
    while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
    std::size_t e = b + n;
    while (e < text.size() && (static_cast<unsigned char>(text[e]) & 0xC0) == 0x80) ++e;
    return {text.data() + b, e - b};
  }
  std::string_view base64(Rng& r, std::size_t n) const {
    n = std::min(n & ~std::size_t{3}, b64.size() - 4);
    const std::size_t b = r.below(b64.size() - n);
    return {b64.data() + b, n};
  }
};

// First <= n bytes of s, never cutting a UTF-8 sequence.
std::string utf8_prefix(std::string_view s, std::size_t n) {
  if (s.size() <= n) return std::string(s);
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

// ----------------------------------------------------------------------------- ids and time

std::string hex(Rng& r, int n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(static_cast<std::size_t>(n), '0');
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    if (i % 16 == 0) v = r.next();
    s[static_cast<std::size_t>(i)] = kHex[v & 15];
    v >>= 4;
  }
  return s;
}

std::string uuid(Rng& r) {
  std::string h = hex(r, 32);
  h[12] = '4';
  h[16] = "89ab"[r.below(4)];
  return h.substr(0, 8) + '-' + h.substr(8, 4) + '-' + h.substr(12, 4) + '-' + h.substr(16, 4) +
         '-' + h.substr(20);
}

std::string b62(Rng& r, std::string_view prefix, int n) {
  std::string s(prefix);
  for (int i = 0; i < n; ++i) s.push_back(kB62[r.below(kB62.size())]);
  return s;
}

// ms since epoch -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (civil-from-days, Howard Hinnant).
std::string iso(std::int64_t ms) {
  const std::int64_t secs = ms / 1000;
  const std::int64_t days = secs / 86400;
  const std::int64_t sod = secs % 86400;
  std::int64_t z = days + 719468;
  const std::int64_t era = z / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = yoe + era * 400;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", static_cast<int>(y),
                static_cast<int>(m), static_cast<int>(d), static_cast<int>(sod / 3600),
                static_cast<int>(sod / 60 % 60), static_cast<int>(sod % 60),
                static_cast<int>(ms % 1000));
  return buf;
}

constexpr std::int64_t kBaseMs = 1740787200000;  // 2025-03-01T00:00:00Z
constexpr std::int64_t kSpanMs = 330LL * 86400 * 1000;

// ----------------------------------------------------------------------------- output

struct FileBuf {
  std::string rel;  // relative to --out, e.g. projects/-home-user-proj-01/<uuid>.jsonl
  std::string data;
  std::int64_t mtime_ms = 0;
  bool jsonl = true;
};

class Writer {
 public:
  virtual ~Writer() = default;
  virtual void put(const FileBuf& f) = 0;
  virtual void finish() {}
};

void write_all(const std::filesystem::path& p, const void* data, std::size_t n, std::int64_t mt) {
  std::FILE* fp = std::fopen(p.c_str(), "wb");
  if (fp == nullptr) throw std::runtime_error("cannot create " + p.string());
  if (n > 0 && std::fwrite(data, 1, n, fp) != n) {
    std::fclose(fp);
    throw std::runtime_error("write failed: " + p.string());
  }
  if (std::fclose(fp) != 0) throw std::runtime_error("close failed: " + p.string());
  const timespec ts[2] = {{mt / 1000, (mt % 1000) * 1000000}, {mt / 1000, (mt % 1000) * 1000000}};
  ::utimensat(AT_FDCWD, p.c_str(), ts, 0);
}

std::string gzip_bytes(std::string_view in) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): zlib reads next_in, never writes it
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  return out;
}

std::string zstd_bytes(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  if (ZSTD_isError(n) != 0u) throw std::runtime_error("zstd compression failed");
  out.resize(n);
  return out;
}

class DirWriter final : public Writer {
 public:
  DirWriter(std::filesystem::path root, Format f) : root_(std::move(root)), fmt_(f) {}
  void put(const FileBuf& f) override {
    std::filesystem::path p = root_ / f.rel;
    const auto dir = p.parent_path();
    if (made_.insert(dir.string()).second) std::filesystem::create_directories(dir);
    if (f.jsonl && fmt_ == Format::kJsonlGz) {
      const std::string z = gzip_bytes(f.data);
      p += ".gz";
      write_all(p, z.data(), z.size(), f.mtime_ms);
    } else if (f.jsonl && fmt_ == Format::kJsonlZst) {
      const std::string z = zstd_bytes(f.data);
      p += ".zst";
      write_all(p, z.data(), z.size(), f.mtime_ms);
    } else {
      write_all(p, f.data.data(), f.data.size(), f.mtime_ms);
    }
  }

 private:
  std::filesystem::path root_;
  Format fmt_;
  std::set<std::string> made_;
};

class ArchiveWriter final : public Writer {
 public:
  ArchiveWriter(const std::filesystem::path& file, Format f) : a_(archive_write_new()) {
    if (a_ == nullptr) throw std::runtime_error("archive_write_new failed");
    int rc = ARCHIVE_OK;
    if (f == Format::kZip) {
      rc = archive_write_set_format_zip(a_);
    } else {
      rc = archive_write_set_format_pax_restricted(a_);
      if (rc == ARCHIVE_OK && f == Format::kTarZst) rc = archive_write_add_filter_zstd(a_);
      if (rc == ARCHIVE_OK && f == Format::kTarGz) {
        rc = archive_write_add_filter_gzip(a_);
        // No wall-clock timestamp in the gzip header: output must be byte-identical.
        if (rc == ARCHIVE_OK) archive_write_set_filter_option(a_, "gzip", "timestamp", nullptr);
      }
    }
    if (rc == ARCHIVE_OK) rc = archive_write_open_filename(a_, file.c_str());
    if (rc != ARCHIVE_OK) fail("open");
    entry_ = archive_entry_new();
  }
  ~ArchiveWriter() override {
    if (entry_ != nullptr) archive_entry_free(entry_);
    if (a_ != nullptr) archive_write_free(a_);
  }
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  void put(const FileBuf& f) override {
    archive_entry_clear(entry_);
    archive_entry_set_pathname(entry_, f.rel.c_str());
    archive_entry_set_size(entry_, static_cast<la_int64_t>(f.data.size()));
    archive_entry_set_filetype(entry_, AE_IFREG);
    archive_entry_set_perm(entry_, 0644);
    archive_entry_set_mtime(entry_, f.mtime_ms / 1000, 0);
    if (archive_write_header(a_, entry_) != ARCHIVE_OK) fail("header");
    std::size_t off = 0;
    while (off < f.data.size()) {
      const la_ssize_t n = archive_write_data(a_, f.data.data() + off, f.data.size() - off);
      if (n <= 0) fail("data");
      off += static_cast<std::size_t>(n);
    }
  }
  void finish() override {
    if (archive_write_close(a_) != ARCHIVE_OK) fail("close");
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("libarchive ") + what + ": " +
                             (archive_error_string(a_) ? archive_error_string(a_) : "?"));
  }
  archive* a_;
  archive_entry* entry_ = nullptr;
};

// ----------------------------------------------------------------------------- generator

struct Usage {
  std::int64_t in = 0, cc = 0, cr = 0, out = 0;
};

struct Conv;

// Where agent_progress copies of a subagent's entries go (2.1.39 only).
struct ProgressTarget {
  Conv* parent = nullptr;
  std::string tool_use_id;
  std::string prompt;
};

struct Conv {
  std::string* out = nullptr;
  const Ver* v = nullptr;
  std::string session_id, agent_id, cwd, branch, slug, model, prompt_id;
  bool sidechain = false;
  std::string last_uuid;  // "" => null parent
  std::int64_t context = 0;
  std::int64_t* clock = nullptr;
  ProgressTarget progress;
  std::vector<std::string> recent_uuids;  // for acompact references
};

struct AgentOutcome {
  std::string agent_id, final_text;
  Usage last;
  std::int64_t tool_count = 0, duration_ms = 0;
};

class Generator {
 public:
  Generator(const GenOptions& opt, Writer& w)
      : opt_(opt),
        w_(w),
        r_(opt.seed),
        pools_(opt.seed),
        huge_total_(opt.huge_lines >= 0
                        ? opt.huge_lines
                        : static_cast<std::int64_t>(opt.target_bytes / (100ull << 20))) {}

  Manifest run() {
    std::int64_t session_index = 0;
    while (m_.bytes < opt_.target_bytes) {
      session(session_index++);
    }
    // Guarantee the requested huge lines and every --bad kind even on tiny runs.
    while (huge_done_ < huge_total_) session(session_index++, true);
    if (opt_.bad) finish_bad();
    w_.finish();
    return m_;
  }

 private:
  // ---- helpers ------------------------------------------------------------------------
  std::int64_t tick(std::int64_t lo, std::int64_t hi) {
    *clock_ += r_.range(lo, hi);
    return *clock_;
  }

  static void head(std::string& o, Conv& c, std::string_view parent) {
    o += "{\"parentUuid\":";
    if (parent.empty()) o += "null";
    else json_str(o, parent);
    o += c.sidechain ? ",\"isSidechain\":true" : ",\"isSidechain\":false";
    if (c.v->era != Era::k21114) {
      o += ",\"userType\":\"external\",\"cwd\":";
      json_str(o, c.cwd);
      o += ",\"sessionId\":";
      json_str(o, c.session_id);
      o += ",\"version\":";
      json_str(o, c.v->version);
      o += ",\"gitBranch\":";
      json_str(o, c.branch);
    }
    if (!c.agent_id.empty()) {
      o += ",\"agentId\":";
      json_str(o, c.agent_id);
    }
    if (c.v->slug && !c.slug.empty()) {
      o += ",\"slug\":";
      json_str(o, c.slug);
    }
  }

  static void tail(std::string& o, Conv& c, std::string_view uuid_s, std::int64_t ts,
                   std::string_view extra = {}) {
    o += ",\"uuid\":";
    json_str(o, uuid_s);
    o += ",\"timestamp\":\"";
    o += iso(ts);
    o += '"';
    o += extra;
    if (c.v->era == Era::k21114) {
      o += ",\"userType\":\"external\",\"entrypoint\":\"cli\",\"cwd\":";
      json_str(o, c.cwd);
      o += ",\"sessionId\":";
      json_str(o, c.session_id);
      o += ",\"version\":";
      json_str(o, c.v->version);
      o += ",\"gitBranch\":";
      json_str(o, c.branch);
    }
    o += "}\n";
  }

  std::string new_uuid(Conv& c) {
    std::string u = uuid(r_);
    if (c.recent_uuids.size() >= 8) c.recent_uuids.erase(c.recent_uuids.begin());
    c.recent_uuids.push_back(u);
    return u;
  }

  static void usage_json(std::string& o, const Ver& v, const Usage& u, bool final_entry) {
    o += "{\"input_tokens\":" + std::to_string(u.in);
    o += ",\"cache_creation_input_tokens\":" + std::to_string(u.cc);
    o += ",\"cache_read_input_tokens\":" + std::to_string(u.cr);
    o += ",\"cache_creation\":{\"ephemeral_5m_input_tokens\":" + std::to_string(u.cc) +
         ",\"ephemeral_1h_input_tokens\":0}";
    o += ",\"output_tokens\":" + std::to_string(u.out);
    if (v.era == Era::k2139 && final_entry)
      o += ",\"server_tool_use\":{\"web_search_requests\":0,\"web_fetch_requests\":0}";
    o += ",\"service_tier\":\"standard\"";
    if (v.era == Era::k2139)
      o += final_entry ? ",\"inference_geo\":\"\"" : ",\"inference_geo\":\"global\"";
    if (v.era == Era::k2139 && final_entry) o += ",\"iterations\":[]";
    if (v.era == Era::k21114)
      o += ",\"inference_geo\":\"\",\"iterations\":[],\"speed\":\"standard\"";
    o += '}';
  }

  // Writes one top-level user entry. `message_content` is raw JSON for message.content.
  std::string user_entry(Conv& c, std::string_view parent, std::string_view message_content,
                         std::int64_t ts, std::string_view pre = {}, std::string_view extra = {}) {
    std::string u = new_uuid(c);
    std::string& o = *c.out;
    head(o, c, parent);
    o += pre;
    o += ",\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":";
    o += message_content;
    o += '}';
    tail(o, c, u, ts, extra);
    if (c.progress.parent != nullptr) {
      std::string msg = "{\"role\":\"user\",\"content\":";
      msg += message_content;
      msg += '}';
      agent_progress_copy(c, "user", msg, u, ts, {});
    }
    return u;
  }

  void agent_progress_copy(Conv& sub, std::string_view type, std::string_view msg,
                           std::string_view uuid_s, std::int64_t ts, std::string_view rid) {
    Conv& p = *sub.progress.parent;
    std::string& o = *p.out;
    std::string u = new_uuid(p);
    head(o, p, p.last_uuid);
    o += ",\"type\":\"progress\",\"data\":{\"message\":{\"type\":\"";
    o += type;
    o += "\",\"timestamp\":\"" + iso(ts) + "\",\"message\":";
    o += msg;
    if (!rid.empty()) {
      o += ",\"requestId\":";
      json_str(o, rid);
    }
    o += ",\"uuid\":";
    json_str(o, uuid_s);
    o += "},\"normalizedMessages\":[],\"type\":\"agent_progress\",\"prompt\":";
    json_str(o, sub.progress.prompt);
    o += ",\"agentId\":";
    json_str(o, sub.agent_id);
    o += "},\"toolUseID\":\"agent_msg_" + b62(r_, "", 24) + "\",\"parentToolUseID\":";
    json_str(o, sub.progress.tool_use_id);
    tail(o, p, u, ts + r_.range(1, 40));
    p.last_uuid = u;
    ++m_.progress;
    ++m_.agent_progress_copies;
  }

  void progress_entry(Conv& c, std::string_view data_json, std::string_view tool_use_id,
                      std::string_view parent_tool_use_id, std::int64_t ts, bool root = false) {
    std::string u = new_uuid(c);
    std::string& o = *c.out;
    head(o, c, root ? std::string_view{} : std::string_view{c.last_uuid});
    o += ",\"type\":\"progress\",\"data\":";
    o += data_json;
    o += ",\"toolUseID\":";
    json_str(o, tool_use_id);
    o += ",\"parentToolUseID\":";
    json_str(o, parent_tool_use_id);
    tail(o, c, u, ts);
    c.last_uuid = u;
    ++m_.progress;
  }

  void system_entry(Conv& c, std::string_view subtype_fields, std::int64_t ts,
                    bool null_parent = false) {
    std::string u = new_uuid(c);
    std::string& o = *c.out;
    head(o, c, null_parent ? std::string_view{} : std::string_view{c.last_uuid});
    o += ",\"type\":\"system\"";
    o += subtype_fields;
    tail(o, c, u, ts);
    c.last_uuid = u;
    ++m_.system_events;
  }

  void attachment(Conv& c, std::string_view body, std::int64_t ts) {
    std::string u = new_uuid(c);
    std::string& o = *c.out;
    head(o, c, c.last_uuid);
    o += ",\"attachment\":";
    o += body;
    o += ",\"type\":\"attachment\"";
    tail(o, c, u, ts);
    c.last_uuid = u;
    ++m_.attachments;
  }

  // ---- tools ----------------------------------------------------------------------------
  struct ToolCall {
    std::string id, name, input_json, entry_uuid;
    std::string prompt;  // Task only
    bool done = false;
  };

  std::string pick_tool(bool allow_task) {
    const std::uint64_t x = r_.below(100);
    if (allow_task && x < 6) return "Task";
    if (x < 34) return "Bash";
    if (x < 58) return "Read";
    if (x < 70) return "Edit";
    if (x < 76) return "Write";
    if (x < 84) return "Grep";
    if (x < 89) return "Glob";
    if (x < 95) return "TodoWrite";
    return "WebFetch";
  }

  std::string path_for(const Conv& c) {
    static constexpr std::array<std::string_view, 8> kFiles{
        "src/main.cpp",      "src/parser.cc", "lib/app.ex",   "README.md",
        "tests/test_api.py", "package.json",  "docs/設計.md", "include/util.h"};
    return c.cwd + "/" + std::string(kFiles[r_.below(kFiles.size())]);
  }

  std::string tool_input(Conv& c, ToolCall& t) {
    std::string o = "{";
    if (t.name == "Bash") {
      o += "\"command\":";
      json_str(o, pools_.prose(r_, static_cast<std::size_t>(r_.range(8, 120))));
      o += ",\"description\":";
      json_str(o, pools_.prose(r_, static_cast<std::size_t>(r_.range(10, 60))));
    } else if (t.name == "Read" || t.name == "Glob" || t.name == "Grep") {
      o += t.name == "Read" ? "\"file_path\":" : "\"pattern\":";
      json_str(o, t.name == "Read" ? path_for(c) : std::string(pools_.prose(r_, 12)));
    } else if (t.name == "Edit") {
      o += "\"file_path\":";
      json_str(o, path_for(c));
      o += ",\"old_string\":";
      json_str(o, pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(200, 1.0, 5, 6000))));
      o += ",\"new_string\":";
      json_str(o, pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(300, 1.0, 5, 8000))));
    } else if (t.name == "Write") {
      o += "\"file_path\":";
      json_str(o, path_for(c));
      o += ",\"content\":";
      json_str(o, pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(1500, 1.0, 20, 30000))));
    } else if (t.name == "TodoWrite") {
      o += "\"todos\":[";
      const auto n = r_.range(1, 5);
      for (std::int64_t i = 0; i < n; ++i) {
        if (i > 0) o += ',';
        o += "{\"content\":";
        json_str(o, pools_.prose(r_, 40));
        o += ",\"status\":\"pending\",\"activeForm\":";
        json_str(o, pools_.prose(r_, 30));
        o += '}';
      }
      o += ']';
    } else if (t.name == "WebFetch") {
      o += "\"url\":\"https://example.com/docs/" + hex(r_, 8) + "\",\"prompt\":";
      json_str(o, pools_.prose(r_, 60));
    } else {  // Task / Agent
      t.prompt = "Subtask " + hex(r_, 10) + ": ";
      t.prompt += pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(500, 0.8, 40, 6000)));
      o += "\"description\":";
      json_str(o, pools_.prose(r_, 30));
      o += ",\"prompt\":";
      json_str(o, t.prompt);
      o += ",\"subagent_type\":\"general-purpose\"";
    }
    o += '}';
    return o;
  }

  // Writes the tool_result user entry for call t (non-Task tools).
  void tool_result(Conv& c, ToolCall& t, std::int64_t ts, std::string_view task_result = {},
                   std::string_view task_text = {}) {
    const bool is_task = !task_result.empty();
    const bool err = !is_task && r_.chance(0.05);
    std::string content;
    std::string tur;  // toolUseResult JSON
    if (err) {
      static constexpr std::array<std::string_view, 4> kErr{
          "<tool_use_error>File has not been read yet. Read it first before writing to it."
          "</tool_use_error>",
          "Exit code 1\nnpm ERR! code ELIFECYCLE\nnpm ERR! errno 1",
          "The user doesn't want to proceed with this tool use. The tool use was rejected.",
          "<tool_use_error>String to replace not found in file.</tool_use_error>"};
      const std::string_view e = kErr[r_.below(kErr.size())];
      json_str(content, e);
      json_str(tur, std::string("Error: ") + std::string(e));
    } else if (is_task) {
      content = "[{\"type\":\"text\",\"text\":";
      json_str(content, task_text);
      content += "}]";
      tur = task_result;
    } else {
      const auto n = static_cast<std::size_t>(r_.lognormal(650, 1.75, 0, kMaxToolOutput));
      const std::string_view body = n == 0 ? std::string_view{} : pools_.prose(r_, n);
      if (t.name == "Read" && r_.chance(0.1)) {
        content = "[{\"type\":\"text\",\"text\":";
        json_str(content, body);
        content += "}]";
      } else {
        json_str(content, body);
      }
      if (t.name == "Bash") {
        tur = "{\"stdout\":";
        json_str(tur, body);
        tur += ",\"stderr\":\"\",\"interrupted\":false,\"isImage\":false}";
      } else if (t.name == "Read") {
        tur = "{\"type\":\"text\",\"file\":{\"filePath\":";
        json_str(tur, path_for(c));
        tur += ",\"content\":";
        json_str(tur, body);
        tur += ",\"numLines\":" + std::to_string(n / 40 + 1) +
               ",\"startLine\":1,\"totalLines\":" + std::to_string(n / 40 + 1) + "}}";
      } else if (t.name == "Glob" || t.name == "Grep") {
        tur = "{\"filenames\":[";
        json_str(tur, path_for(c));
        tur += "],\"durationMs\":" + std::to_string(r_.range(3, 400)) +
               ",\"numFiles\":1,\"truncated\":false}";
      } else if (t.name == "TodoWrite") {
        tur = "{\"oldTodos\":[],\"newTodos\":[]}";
      } else {
        tur = "{\"filePath\":";
        json_str(tur, path_for(c));
        tur += ",\"structuredPatch\":[],\"userModified\":false}";
      }
    }
    std::string msg = "[{\"tool_use_id\":";
    json_str(msg, t.id);
    msg += ",\"type\":\"tool_result\",\"content\":";
    msg += content;
    if (err) msg += ",\"is_error\":true";
    else if (r_.chance(0.6)) msg += ",\"is_error\":false";
    msg += "}]";
    std::string extra = ",\"toolUseResult\":" + tur;
    if (c.v->era == Era::k2139 || c.v->era == Era::k21114) {
      extra += ",\"sourceToolAssistantUUID\":";
      json_str(extra, t.entry_uuid);
    }
    std::string pre;
    if (!c.prompt_id.empty() && !c.sidechain) pre = ",\"promptId\":\"" + c.prompt_id + "\"";
    c.last_uuid = user_entry(c, t.entry_uuid, msg, ts, pre, extra);
    t.done = true;
    ++m_.tool_results;
    if (err) ++m_.tool_errors;
  }

  // ---- one API response and its tool calls ---------------------------------------------
  // Returns the final usage of the response. `final_step` forces a text-only end_turn answer.
  Usage response(Conv& c, bool final_step, bool allow_task, std::int64_t depth,
                 std::int64_t* tool_count, bool run_tools_flag = true) {
    const Ver& v = *c.v;
    const std::string mid = b62(r_, "msg_01", 22);
    const std::string rid = b62(r_, "req_011C", 20);
    Usage u;
    u.in = r_.range(1, 12);
    u.cc = r_.lognormal(900, 1.2, 0, 30000);
    u.cr = c.context;
    u.out = r_.lognormal(220, 1.1, 1, 16000);
    c.context += u.cc + u.out / 2;
    const bool partial = r_.chance(v.partial_prob);

    // Blocks.
    std::vector<std::string> blocks;
    std::vector<ToolCall> tools;
    if (r_.chance(0.35)) {
      std::string b = "{\"type\":\"thinking\",\"thinking\":";
      json_str(b,
               v.era == Era::k21114
                   ? std::string_view{}
                   : pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(400, 1.0, 0, 12000))));
      b += ",\"signature\":\"Es";
      b += pools_.base64(r_, static_cast<std::size_t>(r_.lognormal(1400, 0.6, 200, 9000)));
      b += "\"}";
      blocks.push_back(std::move(b));
    }
    if (final_step || r_.chance(0.6)) {
      std::string b = "{\"type\":\"text\",\"text\":";
      json_str(b,
               r_.chance(0.04)
                   ? std::string_view{"\n\n"}
                   : pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(300, 1.1, 2, 14000))));
      b += '}';
      blocks.push_back(std::move(b));
    }
    if (!final_step) {
      const std::int64_t n = r_.chance(0.18) ? r_.range(2, 4) : 1;
      for (std::int64_t i = 0; i < n; ++i) {
        ToolCall t;
        t.id = b62(r_, "toolu_01", 22);
        t.name = pick_tool(allow_task && depth == 0);
        if (allow_task && depth == 0 && !task_seen_[static_cast<std::size_t>(v.era)]) {
          t.name = "Task";
          task_seen_[static_cast<std::size_t>(v.era)] = true;
        }
        if (t.name == "Task" && v.era == Era::k21114) t.name = "Agent";
        t.input_json = tool_input(c, t);
        std::string b = "{\"type\":\"tool_use\",\"id\":\"" + t.id + "\",\"name\":\"" + t.name +
                        "\",\"input\":" + t.input_json;
        if (v.era == Era::k2139 || v.era == Era::k21114) b += ",\"caller\":{\"type\":\"direct\"}";
        b += '}';
        blocks.push_back(std::move(b));
        tools.push_back(std::move(t));
      }
    }
    const char* stop = tools.empty() ? "\"end_turn\"" : "\"tool_use\"";
    const std::int64_t early_out = r_.range(1, 12);
    const std::size_t first_tool = blocks.size() - tools.size();

    std::string parent = c.last_uuid;
    tick(800, 9000);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const bool last = i + 1 == blocks.size();
      Usage eu = u;
      const char* sr = "null";
      if (v.era == Era::k21114) {
        eu.out = partial && !last ? early_out : (partial ? std::max(early_out, u.out / 3) : u.out);
        if (!partial) sr = stop;
      } else if (last) {
        eu.out = partial ? std::max<std::int64_t>(early_out, r_.range(1, 40)) : u.out;
        if (!partial) sr = stop;
      } else {
        eu.out = early_out;
      }
      if (last) u.out = eu.out;  // the manifest counts the last entry's usage
      std::string msg = "{\"model\":\"" + c.model + "\",\"id\":\"" + mid +
                        "\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[" + blocks[i] +
                        "],\"stop_reason\":" + sr + ",\"stop_sequence\":null";
      if (v.era == Era::k21114) msg += ",\"stop_details\":null";
      msg += ",\"usage\":";
      usage_json(msg, v, eu, last);
      msg += '}';
      const std::string uu = new_uuid(c);
      const std::int64_t ts = i == 0 ? *clock_ : tick(150, 1800);
      std::string& o = *c.out;
      head(o, c, parent);
      o += ",\"message\":";
      o += msg;
      o += ",\"requestId\":\"" + rid + "\",\"type\":\"assistant\"";
      tail(o, c, uu, ts);
      ++m_.assistant_entries;
      if (c.progress.parent != nullptr) agent_progress_copy(c, "assistant", msg, uu, ts, rid);
      parent = uu;
      c.last_uuid = uu;
      if (i >= first_tool) {
        ToolCall& t = tools[i - first_tool];
        t.entry_uuid = uu;
        // Streaming order: a fast result of a parallel batch lands before the later tool_use
        // entries, a few hundred ms "earlier" than the entry written before it.
        if (!last && t.name != "Task" && t.name != "Agent" && r_.chance(0.35)) {
          tool_result(c, t, ts - r_.range(0, 350));
          c.last_uuid = uu;
          parent = uu;
        }
      }
    }
    ++m_.api_responses;
    if (partial) ++m_.partial_responses;
    m_.tool_uses += tools.size();
    m_.tokens.input += static_cast<std::uint64_t>(u.in);
    m_.tokens.cache_creation += static_cast<std::uint64_t>(u.cc);
    m_.tokens.cache_read += static_cast<std::uint64_t>(u.cr);
    m_.tokens.output += static_cast<std::uint64_t>(u.out);
    if (tool_count != nullptr) *tool_count += static_cast<std::int64_t>(tools.size());
    if (run_tools_flag) run_tools(c, tools, depth);
    return u;
  }

  void run_tools(Conv& c, std::vector<ToolCall>& tools, std::int64_t depth) {
    const Ver& v = *c.v;
    // Subagents first (their conversations happen while the tool runs).
    std::vector<std::string> inline_bufs;
    std::vector<std::pair<std::size_t, AgentOutcome>> outcomes;
    const std::int64_t start = *clock_;
    std::int64_t end = start;
    for (std::size_t i = 0; i < tools.size(); ++i) {
      ToolCall& t = tools[i];
      if (t.name != "Task" && t.name != "Agent") continue;
      *clock_ = start + r_.range(20, 2000);
      AgentOutcome ao;
      if (v.era == Era::k10) {
        inline_bufs.emplace_back();
        ao = subagent(c, t, &inline_bufs.back(), depth);
      } else {
        ao = subagent(c, t, nullptr, depth);
      }
      end = std::max(end, *clock_);
      outcomes.emplace_back(i, std::move(ao));
    }
    if (!inline_bufs.empty()) interleave(*c.out, inline_bufs);
    *clock_ = std::max(end, start);
    for (auto& t : tools) {
      if (t.done) continue;
      if (t.name == "Task" || t.name == "Agent") {
        for (auto& [idx, ao] : outcomes) {
          if (&tools[idx] != &t) continue;
          tool_result(c, t, tick(20, 400), task_result_json(v, t, ao), ao.final_text);
        }
        continue;
      }
      if (v.era == Era::k2139) {
        std::string d =
            "{\"type\":\"hook_progress\",\"hookEvent\":\"PreToolUse\",\"hookName\":\"PreToolUse:" +
            t.name + "\",\"command\":\"$HOME/.claude/hooks/pre.sh\"}";
        progress_entry(c, d, uuid(r_), t.id, tick(5, 80));
        if (t.name == "Bash") {
          const auto n = r_.count(4, 0, 30);
          std::string full;
          for (std::int64_t k = 0; k < n; ++k) {
            const std::string_view piece =
                pools_.prose(r_, static_cast<std::size_t>(r_.range(20, 300)));
            full += piece;
            if (full.size() > 6000) full.erase(0, full.size() - 6000);
            std::string bd = "{\"type\":\"bash_progress\",\"output\":";
            json_str(bd, piece);
            bd += ",\"fullOutput\":";
            json_str(bd, full);
            bd += ",\"elapsedTimeSeconds\":" + std::to_string(k + 1) +
                  ",\"totalLines\":" + std::to_string(k * 3 + 1) + "}";
            progress_entry(c, bd, "bash-progress-" + std::to_string(k), t.id, tick(300, 1500));
          }
        }
      }
      tool_result(c, t, tick(30, 8000));
      if (v.era == Era::k2139 && r_.chance(0.7)) {
        std::string d =
            "{\"type\":\"hook_progress\",\"hookEvent\":\"PostToolUse\",\"hookName\":"
            "\"PostToolUse:" +
            t.name + "\",\"command\":\"$HOME/.claude/hooks/post.sh\"}";
        progress_entry(c, d, uuid(r_), t.id, tick(5, 80));
      }
    }
  }

  // Interleaves the lines of several inline sidechains (1.0.x parallel Task calls).
  static void interleave(std::string& out, std::vector<std::string>& bufs) {
    std::vector<std::size_t> pos(bufs.size(), 0);
    bool any = true;
    while (any) {
      any = false;
      for (std::size_t i = 0; i < bufs.size(); ++i) {
        for (int k = 0; k < 3 && pos[i] < bufs[i].size(); ++k) {
          const std::size_t nl = bufs[i].find('\n', pos[i]);
          out.append(bufs[i], pos[i], nl + 1 - pos[i]);
          pos[i] = nl + 1;
          any = true;
        }
      }
    }
  }

  std::string task_result_json(const Ver& v, const ToolCall& t, const AgentOutcome& ao) {
    std::string o = "{\"status\":\"completed\",\"prompt\":";
    json_str(o, t.prompt);
    if (v.agent_id_in_result) {
      o += ",\"agentId\":";
      json_str(o, ao.agent_id);
    }
    if (v.era == Era::k21114) o += ",\"agentType\":\"general-purpose\"";
    o += ",\"content\":[{\"type\":\"text\",\"text\":";
    json_str(o, ao.final_text);
    o += "}],\"totalDurationMs\":" + std::to_string(ao.duration_ms);
    o += ",\"totalTokens\":" + std::to_string(ao.last.in + ao.last.cc + ao.last.cr + ao.last.out);
    o += ",\"totalToolUseCount\":" + std::to_string(ao.tool_count);
    o += ",\"usage\":";
    Usage last = ao.last;
    last.out = std::max<std::int64_t>(last.out, r_.range(100, 5000));  // the true final count
    usage_json(o, v, last, true);
    o += '}';
    return o;
  }

  // ---- subagents ---------------------------------------------------------------------------
  // Runs one subagent conversation for Task call t. With `inline_out` (1.0.x) the entries go to
  // that buffer (later interleaved into the main file); otherwise to a new agent file.
  AgentOutcome subagent(Conv& parent, ToolCall& t, std::string* inline_out, std::int64_t depth) {
    const Ver& v = *parent.v;
    AgentOutcome ao;
    Conv c;
    c.v = &v;
    c.session_id = parent.session_id;
    c.cwd = r_.chance(0.2) ? parent.cwd + "/packages/core" : parent.cwd;
    c.branch = parent.branch;
    c.slug = parent.slug;
    c.model = v.agent_model;
    c.sidechain = true;
    c.clock = clock_;
    c.context = r_.range(8000, 20000);
    FileBuf* f = nullptr;
    if (inline_out != nullptr) {
      c.out = inline_out;
    } else {
      std::string rel;
      if (v.era == Era::k20) {
        ao.agent_id = hex(r_, 8);
        rel = project_rel_ + "/agent-" + ao.agent_id + ".jsonl";
      } else {
        ao.agent_id = "a" + hex(r_, v.era == Era::k2139 ? 6 : 16);
        std::string dir = project_rel_ + "/" + parent.session_id + "/subagents";
        if (v.era == Era::k21114 && (!workflow_done_ || r_.chance(0.15))) {
          dir += "/workflows/wf_" + hex(r_, 12);
          workflow_done_ = true;
        }
        rel = dir + "/agent-" + ao.agent_id + ".jsonl";
        if (v.era == Era::k21114 && (m_.meta_files == 0 || r_.chance(0.8))) {
          FileBuf meta;
          meta.rel = dir + "/agent-" + ao.agent_id + ".meta.json";
          meta.jsonl = false;
          meta.data = "{\"agentType\":\"general-purpose\",\"description\":";
          json_str(meta.data, pools_.prose(r_, 30));
          meta.data += "}";
          extra_files_.push_back(std::move(meta));
        }
      }
      c.agent_id = ao.agent_id;
      extra_files_.emplace_back();
      f = &extra_files_.back();
      f->rel = rel;
      c.out = &f->data;
      if (v.era == Era::k2139) {
        c.progress.parent = &parent;
        c.progress.tool_use_id = t.id;
        c.progress.prompt = t.prompt;
      }
    }
    const std::int64_t t0 = *clock_;
    std::string content;
    json_str(content, t.prompt);
    c.last_uuid = user_entry(c, {}, content, *clock_);
    const auto steps = r_.count(4, 1, 12);
    for (std::int64_t s = 0; s < steps; ++s) {
      const bool fin = s + 1 == steps;
      ao.last = response(c, fin, false, depth + 1, &ao.tool_count);
    }
    ao.final_text = pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(600, 0.8, 20, 8000)));
    ao.duration_ms = *clock_ - t0;
    if (f != nullptr) {
      f->mtime_ms = *clock_;
      // extra_files_ may reallocate later: the pointer is not kept.
    }
    ++m_.subagents;
    return ao;
  }

  // A Warmup agent (2.0.x) or an orphan subagent file: both are unlinked.
  void unlinked_agent(const Ver& v, const std::string& session_id, bool warmup,
                      const std::string& cwd) {
    Conv c;
    c.v = &v;
    c.session_id = session_id;
    c.cwd = cwd;
    c.branch = "main";
    c.model = v.agent_model;
    c.sidechain = true;
    c.clock = clock_;
    c.context = warmup ? 0 : r_.range(8000, 20000);
    std::string rel;
    if (v.era == Era::k20) {
      c.agent_id = hex(r_, 8);
      rel = project_rel_ + "/agent-" + c.agent_id + ".jsonl";
    } else {
      c.agent_id = "a" + hex(r_, v.era == Era::k2139 ? 6 : 16);
      rel = project_rel_ + "/" + session_id + "/subagents/agent-" + c.agent_id + ".jsonl";
    }
    FileBuf f;
    f.rel = rel;
    c.out = &f.data;
    if (warmup) {
      if (v.warmup_user ? r_.chance(0.5) : r_.chance(0.2)) {
        c.last_uuid = user_entry(c, {}, "\"Warmup\"", *clock_);
      }
      response(c, true, false, 1, nullptr);
      ++m_.warmups;
    } else {
      std::string content;
      json_str(content, pools_.prose(r_, 300));
      c.last_uuid = user_entry(c, {}, content, *clock_);
      const auto steps = r_.count(3, 1, 6);
      for (std::int64_t s = 0; s < steps; ++s) response(c, s + 1 == steps, false, 1, nullptr);
      ++m_.orphans;
    }
    ++m_.subagents_unlinked;
    f.mtime_ms = *clock_;
    extra_files_.push_back(std::move(f));
  }

  // ---- compaction ------------------------------------------------------------------------
  void compaction(Conv& c) {
    const Ver& v = *c.v;
    Conv a;
    a.v = &v;
    a.session_id = c.session_id;
    a.cwd = c.cwd;
    a.branch = c.branch;
    a.slug = c.slug;
    a.model = c.model;
    a.sidechain = true;
    a.clock = clock_;
    a.agent_id = "acompact-" + hex(r_, 6);
    a.context = c.context;
    FileBuf f;
    f.rel = project_rel_ + "/" + c.session_id + "/subagents/agent-" + a.agent_id + ".jsonl";
    a.out = &f.data;
    // isMeta reminders whose parentUuid points into the parent file.
    const auto metas = r_.range(0, 3);
    for (std::int64_t i = 0; i < metas && !c.recent_uuids.empty(); ++i) {
      std::string content;
      json_str(content,
               "<system-reminder>\n" + std::string(pools_.prose(r_, 300)) + "\n</system-reminder>");
      user_entry(a, c.recent_uuids[r_.below(c.recent_uuids.size())], content, tick(10, 200), {},
                 ",\"isMeta\":true");
    }
    a.last_uuid = user_entry(
        a, c.last_uuid,
        "\"Your task is to create a detailed summary of the conversation so far, paying close "
        "attention to the user's explicit requests and your previous actions.\"",
        tick(10, 200));
    response(a, true, false, 1, nullptr);
    f.mtime_ms = *clock_;
    extra_files_.push_back(std::move(f));

    const std::int64_t ts = tick(200, 3000);
    const std::string logical = c.last_uuid;
    std::string fields =
        ",\"subtype\":\"compact_boundary\",\"content\":\"Conversation compacted\","
        "\"isMeta\":false,\"level\":\"info\",\"logicalParentUuid\":\"" +
        logical + "\",\"compactMetadata\":{\"trigger\":\"" + (r_.chance(0.8) ? "auto" : "manual") +
        "\",\"preTokens\":" + std::to_string(c.context) + "}";
    system_entry(c, fields, ts, true);
    std::string content;
    json_str(content,
             "This session is being continued from a previous conversation that ran out of "
             "context. The summary below covers the earlier portion of the conversation.\n\n" +
                 std::string(pools_.prose(r_, static_cast<std::size_t>(r_.range(3000, 14000)))));
    c.last_uuid = user_entry(c, c.last_uuid, content, ts + r_.range(0, 1), {},
                             ",\"isCompactSummary\":true,\"isVisibleInTranscriptOnly\":true");
    c.context = r_.range(15000, 30000);
    ++m_.compactions;
  }

  // ---- sessions ------------------------------------------------------------------------
  const Ver& pick_version(std::int64_t index) {
    const std::uint64_t x = r_.below(100);
    // The first sessions walk through every version so that even tiny runs hold every layout.
    if (opt_.layout == Layout::kMixed && index < static_cast<std::int64_t>(kVersions.size()))
      return kVersions[static_cast<std::size_t>(index)];
    switch (opt_.layout) {
      case Layout::kFlat: return kVersions[2 + (x & 1)];
      case Layout::kV21: return kVersions[x < 50 ? 4 : 5];
      case Layout::kMixed: break;
    }
    if (x < 10) return kVersions[0];
    if (x < 20) return kVersions[1];
    if (x < 35) return kVersions[2];
    if (x < 50) return kVersions[3];
    if (x < 75) return kVersions[4];
    return kVersions[5];
  }

  void session(std::int64_t index, bool huge_only = false) {
    if (index == 0 || r_.chance(0.1)) {
      ++project_no_;
      char buf[64];
      std::snprintf(buf, sizeof buf, "proj-%02d", project_no_);
      project_rel_ = std::string("projects/-home-user-") + buf;
      project_cwd_ = std::string("/home/user/") + buf;
      ++m_.projects;
    }
    const Ver& v = pick_version(index);
    std::int64_t clock = kBaseMs + static_cast<std::int64_t>(r_.below(kSpanMs));
    clock_ = &clock;
    extra_files_.clear();

    FileBuf main;
    Conv c;
    c.v = &v;
    c.session_id = uuid(r_);
    main.rel = project_rel_ + "/" + c.session_id + ".jsonl";
    c.out = &main.data;
    c.cwd = project_cwd_;
    c.branch = r_.chance(0.2) ? std::string{} : (r_.chance(0.8) ? "main" : "feature/" + hex(r_, 4));
    c.clock = &clock;
    c.model = v.model;
    c.context = r_.range(12000, 30000);
    if (v.slug) {
      c.slug = std::string(kSlugWords[r_.below(12)]) + "-" + std::string(kSlugWords[r_.below(12)]) +
               "-" + std::string(kSlugWords[r_.below(12)]);
    }
    std::string& o = main.data;
    const std::int64_t target = huge_only ? 2000 : r_.lognormal(70000, 1.3, 3000, 4000000);

    // File head.
    if (v.summaries && r_.chance(0.4)) {
      const auto n = r_.range(1, 4);
      for (std::int64_t i = 0; i < n; ++i) {
        o += "{\"type\":\"summary\",\"summary\":";
        json_str(o, pools_.prose(r_, static_cast<std::size_t>(r_.range(20, 70))));
        o += ",\"leafUuid\":\"" + uuid(r_) + "\"}\n";
        ++m_.summaries;
      }
    }
    if (v.era == Era::k21114) {
      o += "{\"type\":\"permission-mode\",\"permissionMode\":\"acceptEdits\",\"sessionId\":\"" +
           c.session_id + "\"}\n";
      attachment(
          c,
          "{\"type\":\"hook_success\",\"hookName\":\"SessionStart:startup\",\"toolUseID\":\"" +
              uuid(r_) +
              "\",\"hookEvent\":\"SessionStart\",\"content\":\"\",\"stdout\":\"ok\\n\","
              "\"stderr\":\"\",\"exitCode\":0,\"command\":\"${CLAUDE_PLUGIN_ROOT}/start.sh\","
              "\"durationMs\":" +
              std::to_string(r_.range(50, 2000)) + "}",
          tick(0, 10));
    }
    if (v.era == Era::k2139) {
      const std::string id = uuid(r_);
      progress_entry(c,
                     "{\"type\":\"hook_progress\",\"hookEvent\":\"SessionStart\",\"hookName\":"
                     "\"SessionStart:startup\",\"command\":\"$HOME/.claude/hooks/start.sh\"}",
                     id, id, tick(0, 10), true);
    }
    if (v.era == Era::k20 && r_.chance(0.6)) {
      const auto n = r_.range(1, 3);
      std::int64_t saved = clock;
      clock -= r_.range(500, 5000);
      for (std::int64_t i = 0; i < n; ++i) unlinked_agent(v, c.session_id, true, c.cwd);
      clock = saved;
    }

    std::int64_t turn = 0;
    while (static_cast<std::int64_t>(o.size()) < target && turn < 300) {
      if (turn > 0) tick(5000, turn % 4 == 0 ? 1800000 : 120000);
      const std::string prompt_uuid_pre = uuid(r_);
      if (v.fhs) {
        o += "{\"type\":\"file-history-snapshot\",\"messageId\":\"";
        o += prompt_uuid_pre;
        o += "\",\"snapshot\":{\"messageId\":\"";
        o += prompt_uuid_pre;
        o += "\",\"trackedFileBackups\":{},\"timestamp\":\"";
        o += iso(*clock_);
        o += "\"},\"isSnapshotUpdate\":false}\n";
        ++m_.file_history_snapshots;
      }
      if (v.queue_ops && r_.chance(0.08)) {
        o += "{\"type\":\"queue-operation\",\"operation\":\"enqueue\",\"timestamp\":\"" +
             iso(tick(10, 500)) + "\",\"sessionId\":\"" + c.session_id + "\",\"content\":";
        json_str(o, pools_.prose(r_, 80));
        o += "}\n{\"type\":\"queue-operation\",\"operation\":\"dequeue\",\"timestamp\":\"" +
             iso(tick(10, 500)) + "\",\"sessionId\":\"" + c.session_id + "\"}\n";
        m_.queue_operations += 2;
      }
      if ((v.era == Era::k2139 || v.era == Era::k21114) && r_.chance(0.05)) {
        system_entry(
            c,
            ",\"subtype\":\"local_command\",\"content\":\"<command-name>/model</command-name>"
            "\\n<local-command-stdout>Kept model as \\u001b[1mopus\\u001b[22m"
            "</local-command-stdout>\",\"level\":\"info\",\"isMeta\":false",
            tick(100, 3000));
      }
      if (r_.chance(0.08)) {  // isMeta caveat: not a prompt
        user_entry(c, c.last_uuid,
                   "\"Caveat: The messages below were generated by the user while running local "
                   "commands. DO NOT respond to these messages.\"",
                   tick(10, 200), {}, ",\"isMeta\":true");
      }
      // The human prompt.
      c.prompt_id = v.era == Era::k21114 ? uuid(r_) : std::string{};
      std::string pre;
      if (!c.prompt_id.empty()) pre = ",\"promptId\":\"" + c.prompt_id + "\"";
      std::string content;
      const bool huge =
          huge_done_ < huge_total_ &&
          (huge_only || m_.bytes >= static_cast<std::uint64_t>(huge_done_ + 1) * opt_.target_bytes /
                                        static_cast<std::uint64_t>(huge_total_ + 1));
      const std::string_view ptext =
          pools_.prose(r_, static_cast<std::size_t>(r_.lognormal(160, 1.2, 3, 20000)));
      if (huge || r_.chance(0.01)) {
        const std::size_t n = huge ? static_cast<std::size_t>(r_.range(520000, 5000000))
                                   : static_cast<std::size_t>(r_.range(2000, 60000));
        content = "[{\"type\":\"text\",\"text\":";
        json_str(content, ptext);
        content +=
            "},{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":"
            "\"image/png\",\"data\":\"iVBORw0KGgo";
        content += pools_.base64(r_, n);
        content += "\"}}]";
        if (huge) ++huge_done_;
      } else if (r_.chance(0.25)) {
        content = "[{\"type\":\"text\",\"text\":";
        json_str(content, ptext);
        content += "}]";
      } else {
        json_str(content, ptext);
      }
      std::string extra;
      if (v.thinking_meta) extra += ",\"thinkingMetadata\":{\"maxThinkingTokens\":31999}";
      if (v.slug) extra += ",\"todos\":[]";
      if (v.era == Era::k2139 || v.era == Era::k21114) extra += ",\"permissionMode\":\"default\"";
      c.last_uuid = user_entry(c, c.last_uuid, content, tick(100, 2000), pre, extra);
      ++m_.prompts;
      if (v.era == Era::k21114 && turn == 0) {
        o += "{\"type\":\"last-prompt\",\"lastPrompt\":";
        json_str(o, utf8_prefix(ptext, 60) + (ptext.size() > 60 ? "…" : ""));
        o += ",\"sessionId\":\"" + c.session_id + "\"}\n";
      }
      if (v.era == Era::k21114 && r_.chance(0.3)) {
        attachment(c,
                   "{\"type\":\"task_reminder\",\"content\":[],\"itemCount\":" +
                       std::to_string(r_.range(0, 5)) + "}",
                   tick(1, 20));
      }
      const std::int64_t turn_start = *clock_;
      const auto steps = huge_only ? 1 : r_.count(4, 1, 25);
      for (std::int64_t s = 0; s < steps; ++s) {
        const bool fin = s + 1 == steps;
        // A session that just ends: last tool_use without result (rare).
        const bool abandon =
            !fin && static_cast<std::int64_t>(o.size()) > target && r_.chance(0.05);
        response(c, fin, true, 0, nullptr, !abandon);
        if (abandon) break;
      }
      if (v.era == Era::k2139 || v.era == Era::k21114) {
        if (r_.chance(0.5)) {
          system_entry(
              c,
              ",\"subtype\":\"stop_hook_summary\",\"hookCount\":1,\"hookInfos\":[{\"command\":"
              "\"$HOME/.claude/hooks/stop.sh\"}],\"hookErrors\":[],\"preventedContinuation\":"
              "false,\"stopReason\":\"\",\"hasOutput\":true,\"level\":\"suggestion\"",
              tick(5, 200));
        }
        if (r_.chance(0.8)) {
          std::string f = ",\"subtype\":\"turn_duration\",\"durationMs\":" +
                          std::to_string(*clock_ - turn_start + r_.range(5, 500));
          if (v.era == Era::k21114) f += ",\"messageCount\":" + std::to_string(r_.range(3, 120));
          system_entry(c, f + ",\"isMeta\":false", tick(1, 50));
        }
        if (v.era == Era::k21114 && r_.chance(0.04)) {
          std::string f = ",\"subtype\":\"away_summary\",\"content\":";
          json_str(f, pools_.prose(r_, 200));
          system_entry(c, f + ",\"isMeta\":false", tick(60000, 600000));
        }
        // The first 2.1.x session with two turns always compacts (coverage on tiny runs).
        if (c.context > 140000 || (c.context > 60000 && r_.chance(0.05)) ||
            (m_.compactions == 0 && turn == 0))
          compaction(c);
      }
      ++turn;
    }
    main.mtime_ms = *clock_;

    // Orphan subagent file: its parent session file does not exist.
    if (v.era != Era::k10 && r_.chance(0.03)) {
      unlinked_agent(v, uuid(r_), false, c.cwd);
    }

    flush(main, index);
    for (auto& f : extra_files_) flush(f, -1);
    extra_files_.clear();
    ++m_.sessions;
  }

  // ---- bad input injection (--bad) -----------------------------------------------------
  std::string bad_line(int kind) {
    switch (kind) {
      case 0:
        ++m_.bad_lines["malformed_json"];
        return r_.chance(0.5) ? "{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":"
                                "\"unterminated}\n"
                              : "{\"parentUuid\":null,,\"type\":\"assistant\" oops}\n";
      case 1: {
        ++m_.bad_lines["invalid_utf8"];
        std::string s = "{\"type\":\"queue-operation\",\"operation\":\"enqueue\",\"timestamp\":\"" +
                        iso(kBaseMs) + "\",\"content\":\"bad \xff\xfe bytes \xc3( here\"}\n";
        return s;
      }
      case 2:
        ++m_.bad_lines["nul_bytes"];
        return std::string(static_cast<std::size_t>(r_.range(16, 256)), '\0') + "\n";
      default: return {};
    }
  }

  void inject_bad(FileBuf& f, int kind) {
    if (kind == 3) {  // truncated final line, no LF
      std::string line = "{\"parentUuid\":\"" + uuid(r_) +
                         "\",\"isSidechain\":false,\"type\":\"assistant\",\"message\":{\"model\":"
                         "\"claude-opus-4-6\",\"id\":\"msg_01";
      line += b62(r_, "", 22) + "\",\"content\":[{\"type\":\"text\",\"text\":\"partial wri";
      f.data += line;
      ++m_.bad_lines["truncated_final"];
      return;
    }
    std::string bl = bad_line(kind);
    // Insert at a line boundary somewhere in the file.
    std::size_t n_lines = static_cast<std::size_t>(std::count(f.data.begin(), f.data.end(), '\n'));
    std::size_t target = r_.below(n_lines + 1), pos = 0;
    for (std::size_t i = 0; i < target; ++i) pos = f.data.find('\n', pos) + 1;
    f.data.insert(pos, bl);
  }

  void finish_bad() {
    for (int k = 0; k < 4; ++k) {
      if (bad_done_[static_cast<std::size_t>(k)]) continue;
      FileBuf f;
      f.rel = project_rel_ + "/" + uuid(r_) + ".jsonl";
      f.mtime_ms = kBaseMs;
      if (k == 3) {
        inject_bad(f, 3);
      } else {
        f.data = bad_line(k);
      }
      flush(f, -1);
    }
    if (!empty_done_) {
      FileBuf f;
      f.rel = project_rel_ + "/" + uuid(r_) + ".jsonl";
      f.mtime_ms = kBaseMs;
      m_.bad_lines["empty_files"] += 1;
      flush(f, -1);
    }
  }

  void flush(FileBuf& f, std::int64_t session_index) {
    if (opt_.bad && session_index >= 0) {
      // The first sessions carry one of each kind; later ones occasionally.
      if (session_index < 4) {
        inject_bad(f, static_cast<int>(session_index));
        bad_done_[static_cast<std::size_t>(session_index)] = true;
      } else if (r_.chance(0.02)) {
        inject_bad(f, static_cast<int>(r_.below(3)));
      }
      if (session_index == 4 && !empty_done_) {
        FileBuf e;
        e.rel = project_rel_ + "/" + uuid(r_) + ".jsonl";
        e.mtime_ms = f.mtime_ms;
        empty_done_ = true;
        m_.bad_lines["empty_files"] += 1;
        flush(e, -1);
      }
    }
    if (f.jsonl) {
      ++m_.files;
      m_.bytes += f.data.size();
      std::size_t start = 0;
      while (start < f.data.size()) {
        std::size_t nl = f.data.find('\n', start);
        const std::size_t end = nl == std::string::npos ? f.data.size() : nl;
        const std::size_t len = end - start;
        ++m_.lines;
        if (len >= static_cast<std::size_t>(kHugeLineBytes)) ++m_.huge_lines;
        m_.max_line_bytes = std::max<std::uint64_t>(m_.max_line_bytes, len);
        start = end + 1;
      }
    } else {
      ++m_.meta_files;
    }
    w_.put(f);
  }

  const GenOptions& opt_;
  Writer& w_;
  Rng r_;
  Pools pools_;
  Manifest m_;
  std::int64_t* clock_ = nullptr;
  std::deque<FileBuf> extra_files_;  // deque: subagent() keeps a pointer to back()
  int project_no_ = 0;
  std::string project_rel_, project_cwd_;
  std::int64_t huge_total_ = 0, huge_done_ = 0;
  std::array<bool, 4> bad_done_{};
  bool empty_done_ = false;
  bool workflow_done_ = false;
  std::array<bool, 4> task_seen_{};  // per era: forced first Task call (coverage)
};

}  // namespace

bool parse_size(const std::string& text, std::uint64_t& out) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return false;
  double v = 0;
  try {
    v = std::stod(text.substr(0, i));
  } catch (...) {
    return false;
  }
  std::string suf = text.substr(i);
  for (auto& ch : suf) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double mul = 1;
  if (suf.empty() || suf == "B") mul = 1;
  else if (suf == "K" || suf == "KB" || suf == "KIB") mul = 1024.0;
  else if (suf == "M" || suf == "MB" || suf == "MIB") mul = 1024.0 * 1024;
  else if (suf == "G" || suf == "GB" || suf == "GIB") mul = 1024.0 * 1024 * 1024;
  else return false;
  out = static_cast<std::uint64_t>(v * mul);
  return true;
}

std::string Manifest::to_json(const GenOptions& opt) const {
  std::string o = "{\n";
  auto kv = [&o](const char* k, std::uint64_t v) {
    o += "  \"";
    o += k;
    o += "\": " + std::to_string(v) + ",\n";
  };
  o += "  \"schema\": \"chsync-gen/1\",\n";
  o += "  \"seed\": " + std::to_string(opt.seed) + ",\n";
  o += "  \"target_bytes\": " + std::to_string(opt.target_bytes) + ",\n";
  if (!archive.empty()) {
    o += "  \"archive\": ";
    json_str(o, archive);
    o += ",\n";
  }
  kv("files", files);
  kv("meta_files", meta_files);
  kv("bytes", bytes);
  kv("lines", lines);
  kv("projects", projects);
  kv("sessions", sessions);
  kv("prompts", prompts);
  kv("api_responses", api_responses);
  kv("partial_responses", partial_responses);
  kv("assistant_entries", assistant_entries);
  kv("tool_uses", tool_uses);
  kv("tool_results", tool_results);
  kv("tool_errors", tool_errors);
  kv("subagents", subagents);
  kv("subagents_unlinked", subagents_unlinked);
  kv("warmups", warmups);
  kv("orphans", orphans);
  kv("compactions", compactions);
  kv("system_events", system_events);
  kv("summaries", summaries);
  kv("progress", progress);
  kv("agent_progress_copies", agent_progress_copies);
  kv("file_history_snapshots", file_history_snapshots);
  kv("queue_operations", queue_operations);
  kv("attachments", attachments);
  kv("huge_lines", huge_lines);
  kv("max_line_bytes", max_line_bytes);
  o += "  \"tokens\": {\"input\": " + std::to_string(tokens.input) +
       ", \"cache_read\": " + std::to_string(tokens.cache_read) +
       ", \"cache_creation\": " + std::to_string(tokens.cache_creation) +
       ", \"output\": " + std::to_string(tokens.output) + "},\n";
  o += "  \"bad_lines\": {";
  bool first = true;
  for (const auto& [k, v] : bad_lines) {
    if (!first) o += ", ";
    first = false;
    o += "\"" + k + "\": " + std::to_string(v);
  }
  o += "}\n}\n";
  return o;
}

Manifest generate(const GenOptions& opt) {
  std::filesystem::create_directories(opt.out);
  std::unique_ptr<Writer> w;
  std::string archive;
  switch (opt.format) {
    case Format::kTar: archive = "projects.tar"; break;
    case Format::kTarZst: archive = "projects.tar.zst"; break;
    case Format::kTarGz: archive = "projects.tar.gz"; break;
    case Format::kZip: archive = "projects.zip"; break;
    default: break;
  }
  if (archive.empty()) w = std::make_unique<DirWriter>(opt.out, opt.format);
  else w = std::make_unique<ArchiveWriter>(opt.out / archive, opt.format);
  Generator g(opt, *w);
  Manifest m = g.run();
  m.archive = archive;
  return m;
}

}  // namespace chsync::gen
