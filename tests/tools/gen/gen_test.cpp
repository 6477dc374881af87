// Tests for tools/gen (chsync-gen): determinism, JSON validity, manifest == independent recount,
// --bad injection, archive formats. Runs the built binary in a temp dir.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using chsync::test::TempDir;

namespace {

const std::string kGen = std::string(CHSYNC_BINARY_DIR) + "/chsync-gen";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int run_gen(const fs::path& out, const std::string& args) {
  const std::string cmd = kGen + " --out '" + out.string() + "' " + args + " --manifest '" +
                          (out / "manifest.json").string() + "' > '" +
                          (out / "stdout.json").string() + "' 2>/dev/null";
  return std::system(cmd.c_str());
}

// relative path -> contents, for every regular file under root/projects.
std::map<std::string, std::string> tree(const fs::path& root) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(root / "projects")) {
    if (e.is_regular_file()) m[fs::relative(e.path(), root).string()] = slurp(e.path());
  }
  return m;
}

std::map<std::string, std::uint64_t> read_manifest(const fs::path& p,
                                                   std::map<std::string, std::uint64_t>* bad) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.load(p.string());
  std::map<std::string, std::uint64_t> m;
  for (auto [k, v] : doc.get_object()) {
    if (v.is_uint64()) m[std::string(k)] = v.get_uint64();
  }
  for (auto [k, v] : doc["tokens"].get_object()) m["tokens." + std::string(k)] = v.get_uint64();
  if (bad != nullptr) {
    for (auto [k, v] : doc["bad_lines"].get_object()) (*bad)[std::string(k)] = v.get_uint64();
  }
  return m;
}

struct Recount {
  std::map<std::string, std::uint64_t> c;
  std::uint64_t bad_lines = 0, empty_files = 0;
};

bool is_true(simdjson::dom::object o, std::string_view k) {
  bool b = false;
  return o[k].get(b) == simdjson::SUCCESS && b;
}

// Independent recount from the files, following the definitions in tools/gen/README.md.
Recount recount(const std::map<std::string, std::string>& files) {
  Recount r;
  auto& c = r.c;
  simdjson::dom::parser parser;
  struct Resp {
    std::uint64_t in, cr, cc, out;
    bool stopped;
  };
  std::unordered_map<std::string, Resp> responses;
  std::set<std::string> referenced_agents;
  std::vector<std::string> agent_file_ids;
  std::set<std::string> projects;
  for (const auto& [rel, data] : files) {
    const fs::path p(rel);
    if (p.extension() == ".json") {
      ++c["meta_files"];
      continue;
    }
    ++c["files"];
    c["bytes"] += data.size();
    if (data.empty()) ++r.empty_files;
    projects.insert(std::next(p.begin())->string());
    const std::string name = p.filename().string();
    const bool is_agent = name.rfind("agent-", 0) == 0;
    const bool is_main = !is_agent && p.parent_path().filename().string().rfind("-home", 0) == 0;
    std::string file_agent_id;
    std::uint64_t valid = 0;
    std::size_t start = 0;
    while (start < data.size()) {
      std::size_t nl = data.find('\n', start);
      const std::size_t end = nl == std::string::npos ? data.size() : nl;
      const std::string_view line(data.data() + start, end - start);
      start = end + 1;
      ++c["lines"];
      if (line.size() >= 500000) ++c["huge_lines"];
      c["max_line_bytes"] = std::max<std::uint64_t>(c["max_line_bytes"], line.size());
      simdjson::dom::element doc;
      if (parser.parse(line.data(), line.size()).get(doc) != simdjson::SUCCESS ||
          !doc.is_object()) {
        ++r.bad_lines;
        continue;
      }
      ++valid;
      simdjson::dom::object o = doc.get_object();
      std::string_view type;
      if (o["type"].get(type) != simdjson::SUCCESS) continue;
      std::string_view aid;
      if (file_agent_id.empty() && o["agentId"].get(aid) == simdjson::SUCCESS)
        file_agent_id = std::string(aid);
      if (type == "assistant") {
        ++c["assistant_entries"];
        std::string_view rid = o["requestId"];
        simdjson::dom::object msg = o["message"];
        simdjson::dom::object u = msg["usage"];
        Resp& rr = responses[std::string(rid)];
        const bool stopped_before = rr.stopped;
        rr = Resp{u["input_tokens"].get_uint64(), u["cache_read_input_tokens"].get_uint64(),
                  u["cache_creation_input_tokens"].get_uint64(), u["output_tokens"].get_uint64(),
                  stopped_before || !msg["stop_reason"].is_null()};
        for (auto b : msg["content"].get_array()) {
          if (std::string_view(b["type"]) == "tool_use") ++c["tool_uses"];
        }
      } else if (type == "user") {
        simdjson::dom::element content = o["message"]["content"];
        bool tool_result = false;
        if (content.is_array()) {
          for (auto b : content.get_array()) {
            if (std::string_view(b["type"]) != "tool_result") continue;
            tool_result = true;
            ++c["tool_results"];
            if (is_true(b.get_object(), "is_error")) ++c["tool_errors"];
          }
        }
        simdjson::dom::object tur;
        std::string_view ref;
        if (o["toolUseResult"].get(tur) == simdjson::SUCCESS &&
            tur["agentId"].get(ref) == simdjson::SUCCESS)
          referenced_agents.insert(std::string(ref));
        const bool side = is_true(o, "isSidechain");
        if (is_main && !side && !is_true(o, "isMeta") && !is_true(o, "isCompactSummary") &&
            !tool_result)
          ++c["prompts"];
        if (is_main && side && o["parentUuid"].is_null()) ++c["subagents"];  // 1.0.x inline
      } else if (type == "system") {
        ++c["system_events"];
        std::string_view st;
        if (o["subtype"].get(st) == simdjson::SUCCESS && st == "compact_boundary")
          ++c["compactions"];
      } else if (type == "summary") {
        ++c["summaries"];
      } else if (type == "progress") {
        ++c["progress"];
        if (std::string_view(o["data"]["type"]) == "agent_progress") ++c["agent_progress_copies"];
      } else if (type == "file-history-snapshot") {
        ++c["file_history_snapshots"];
      } else if (type == "queue-operation") {
        ++c["queue_operations"];
      } else if (type == "attachment") {
        ++c["attachments"];
      }
    }
    if (is_main && valid > 0) ++c["sessions"];
    if (is_agent && name.rfind("agent-acompact-", 0) != 0) agent_file_ids.push_back(file_agent_id);
  }
  c["projects"] = projects.size();
  for (const auto& id : agent_file_ids) {
    if (referenced_agents.contains(id)) ++c["subagents"];
    else ++c["subagents_unlinked"];
  }
  c["api_responses"] = responses.size();
  for (const auto& [rid, rr] : responses) {
    c["tokens.input"] += rr.in;
    c["tokens.cache_read"] += rr.cr;
    c["tokens.cache_creation"] += rr.cc;
    c["tokens.output"] += rr.out;
    if (!rr.stopped) ++c["partial_responses"];
  }
  return r;
}

void expect_manifest_matches(const fs::path& out, const std::map<std::string, std::string>& files,
                             bool bad) {
  std::map<std::string, std::uint64_t> bad_kinds;
  auto m = read_manifest(out / "manifest.json", &bad_kinds);
  Recount r = recount(files);
  static const char* kKeys[] = {"files",
                                "meta_files",
                                "bytes",
                                "lines",
                                "projects",
                                "sessions",
                                "prompts",
                                "api_responses",
                                "partial_responses",
                                "assistant_entries",
                                "tool_uses",
                                "tool_results",
                                "tool_errors",
                                "subagents",
                                "subagents_unlinked",
                                "compactions",
                                "system_events",
                                "summaries",
                                "progress",
                                "agent_progress_copies",
                                "file_history_snapshots",
                                "queue_operations",
                                "attachments",
                                "huge_lines",
                                "max_line_bytes",
                                "tokens.input",
                                "tokens.cache_read",
                                "tokens.cache_creation",
                                "tokens.output"};
  for (const char* k : kKeys) {
    ASSERT_TRUE(m.count(k)) << k;
    EXPECT_EQ(m[k], r.c[k]) << "manifest key " << k;
  }
  EXPECT_EQ(m["subagents_unlinked"], m["warmups"] + m["orphans"]);
  std::uint64_t bad_sum = 0;
  for (const auto& [k, v] : bad_kinds) {
    if (k != "empty_files") bad_sum += v;
  }
  EXPECT_EQ(r.bad_lines, bad_sum) << "unparseable lines must be exactly the injected ones";
  if (bad) {
    for (const char* k : {"malformed_json", "invalid_utf8", "nul_bytes", "truncated_final"}) {
      EXPECT_GE(bad_kinds[k], 1u) << k;
    }
    EXPECT_EQ(r.empty_files, bad_kinds["empty_files"]);
    EXPECT_GE(r.empty_files, 1u);
  } else {
    EXPECT_EQ(r.bad_lines, 0u);
    EXPECT_EQ(r.empty_files, 0u);
  }
  // stdout carries the same manifest.
  EXPECT_EQ(slurp(out / "manifest.json"), slurp(out / "stdout.json"));
}

TEST(GenTest, SameSeedIsByteIdenticalAndOtherSeedDiffers) {
  TempDir a{"chsync-gen-test"}, b{"chsync-gen-test"}, c{"chsync-gen-test"};
  ASSERT_EQ(run_gen(a.path(), "--bytes 3M --seed 42 --huge-lines 1"), 0);
  ASSERT_EQ(run_gen(b.path(), "--bytes 3M --seed 42 --huge-lines 1"), 0);
  ASSERT_EQ(run_gen(c.path(), "--bytes 3M --seed 43 --huge-lines 1"), 0);
  const auto ta = tree(a.path()), tb = tree(b.path()), tc = tree(c.path());
  EXPECT_GT(ta.size(), 5u);
  EXPECT_TRUE(ta == tb) << "same seed must give identical trees";
  EXPECT_EQ(slurp(a.path() / "manifest.json"), slurp(b.path() / "manifest.json"));
  EXPECT_FALSE(ta == tc) << "a different seed must change the output";
}

TEST(GenTest, ManifestMatchesRecountMixedLayout) {
  TempDir d{"chsync-gen-test"};
  ASSERT_EQ(run_gen(d.path(), "--bytes 4M --seed 7 --huge-lines 2"), 0);
  const auto files = tree(d.path());
  expect_manifest_matches(d.path(), files, false);
  auto m = read_manifest(d.path() / "manifest.json", nullptr);
  EXPECT_GE(m["bytes"], 4u << 20);
  EXPECT_EQ(m["huge_lines"], 2u);
  // Every layout is present.
  bool flat = false, v21 = false, meta = false, workflow = false;
  for (const auto& [rel, data] : files) {
    const fs::path p(rel);
    if (p.filename().string().rfind("agent-", 0) == 0 &&
        p.parent_path().filename() != "subagents" && rel.find("/workflows/") == std::string::npos)
      flat = true;
    if (p.parent_path().filename() == "subagents") v21 = true;
    if (p.extension() == ".json") meta = true;
    if (rel.find("/subagents/workflows/wf_") != std::string::npos) workflow = true;
  }
  EXPECT_TRUE(flat);
  EXPECT_TRUE(v21);
  EXPECT_TRUE(meta);
  EXPECT_TRUE(workflow);
  EXPECT_GT(m["subagents"], 0u);
  EXPECT_GT(m["subagents_unlinked"], 0u);
  EXPECT_GT(m["compactions"], 0u);
  EXPECT_GT(m["partial_responses"], 0u);
  EXPECT_GT(m["tool_errors"], 0u);
}

TEST(GenTest, ManifestMatchesRecountWithBadInput) {
  TempDir d{"chsync-gen-test"};
  ASSERT_EQ(run_gen(d.path(), "--bytes 2M --seed 9 --bad --huge-lines 0"), 0);
  expect_manifest_matches(d.path(), tree(d.path()), true);
}

TEST(GenTest, FlatAndV21Layouts) {
  for (const char* layout : {"flat", "v2.1"}) {
    TempDir d{"chsync-gen-test"};
    ASSERT_EQ(
        run_gen(d.path(), std::string("--bytes 2M --seed 3 --huge-lines 0 --layout ") + layout), 0);
    const auto files = tree(d.path());
    expect_manifest_matches(d.path(), files, false);
    for (const auto& [rel, data] : files) {
      if (fs::path(rel).filename().string().rfind("agent-", 0) != 0) continue;
      const bool in_sub = rel.find("/subagents/") != std::string::npos;
      EXPECT_EQ(in_sub, std::string(layout) == "v2.1") << rel;
    }
  }
}

std::map<std::string, std::string> read_archive(const fs::path& p) {
  std::map<std::string, std::string> m;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  EXPECT_EQ(archive_read_open_filename(a, p.c_str(), 1 << 16), ARCHIVE_OK);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string data;
    char buf[1 << 16];
    la_ssize_t n = 0;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
      data.append(buf, static_cast<std::size_t>(n));
    EXPECT_EQ(n, 0);
    m[archive_entry_pathname(e)] = std::move(data);
  }
  archive_read_free(a);
  return m;
}

TEST(GenTest, ArchiveFormatsHoldTheSameMembers) {
  TempDir dir{"chsync-gen-test"};
  ASSERT_EQ(run_gen(dir.path(), "--bytes 2M --seed 11 --huge-lines 1"), 0);
  const auto expected = tree(dir.path());
  for (const char* fmt : {"tar.zst", "zip", "tar.gz"}) {
    TempDir t, t2;
    ASSERT_EQ(run_gen(t.path(), std::string("--bytes 2M --seed 11 --huge-lines 1 --format ") + fmt),
              0);
    const fs::path ar = t.path() / (std::string("projects.") + fmt);
    ASSERT_TRUE(fs::exists(ar)) << ar;
    EXPECT_TRUE(read_archive(ar) == expected) << fmt;
    EXPECT_EQ(!slurp(t.path() / "manifest.json").empty(), true);
    // Archives are deterministic too.
    ASSERT_EQ(
        run_gen(t2.path(), std::string("--bytes 2M --seed 11 --huge-lines 1 --format ") + fmt), 0);
    EXPECT_EQ(slurp(ar), slurp(t2.path() / (std::string("projects.") + fmt))) << fmt;
  }
}

}  // namespace
