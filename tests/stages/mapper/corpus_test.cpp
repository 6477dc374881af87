// Golden test over every real transcript in tests/data/real: the mapper's output is compared with
// counts computed independently from the raw JSON (simdjson DOM, no shared code with the mapper).
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "tests/stages/mapper/test_util.h"

namespace chsync::test {
namespace {

namespace fs = std::filesystem;

struct CorpusBundle {
  Bundle bundle;
  std::vector<std::string> contents;
};

std::string first_session_id(const std::string& text) {
  simdjson::dom::parser p;
  for (const auto& line : split_lines(text)) {
    simdjson::dom::element el;
    if (p.parse(line).get(el)) continue;
    std::string_view sid;
    if (!el["sessionId"].get(sid)) return std::string(sid);
  }
  return {};
}

std::string agent_id_of(const fs::path& p) {
  std::string stem = p.stem().string();  // agent-<id>
  return stem.substr(6);
}

// Same grouping as discover: main <session>.jsonl + <session>/subagents/**/agent-*.jsonl + flat
// agent-*.jsonl siblings whose sessionId matches; unclaimed agent files are their own bundle.
std::vector<CorpusBundle> discover_corpus(const fs::path& root) {
  std::vector<fs::path> mains, agents;
  for (const auto& de : fs::recursive_directory_iterator(root)) {
    if (!de.is_regular_file() || de.path().extension() != ".jsonl") continue;
    const std::string name = de.path().filename().string();
    if (name.rfind("agent-", 0) == 0) agents.push_back(de.path());
    else mains.push_back(de.path());
  }
  std::sort(mains.begin(), mains.end());
  std::sort(agents.begin(), agents.end());
  std::set<fs::path> claimed;
  std::vector<CorpusBundle> out;
  auto rel = [&](const fs::path& p) { return fs::relative(p, root).string(); };
  std::uint64_t seq = 0;
  for (const auto& m : mains) {
    CorpusBundle b;
    b.bundle.seq = ++seq;
    b.bundle.files.push_back(file_ref(rel(m)));
    b.contents.push_back(read_file(m.string()));
    const std::string sid = first_session_id(b.contents.back());
    b.bundle.session_id = sid.empty() ? m.stem().string() : sid;
    const fs::path session_dir = m.parent_path() / m.stem();
    for (const auto& a : agents) {
      if (claimed.contains(a)) continue;
      const std::string as = a.string();
      const bool nested = as.rfind((session_dir / "subagents").string() + "/", 0) == 0;
      const bool sibling = a.parent_path() == m.parent_path() && !sid.empty() &&
                           first_session_id(read_file(as)) == sid;
      if (!nested && !sibling) continue;
      claimed.insert(a);
      b.bundle.files.push_back(file_ref(rel(a), true, agent_id_of(a)));
      b.contents.push_back(read_file(as));
    }
    out.push_back(std::move(b));
  }
  for (const auto& a : agents) {
    if (claimed.contains(a)) continue;
    CorpusBundle b;
    b.bundle.seq = ++seq;
    b.bundle.files.push_back(file_ref(rel(a), true, agent_id_of(a)));
    b.contents.push_back(read_file(a.string()));
    b.bundle.session_id = first_session_id(b.contents.back());
    out.push_back(std::move(b));
  }
  return out;
}

struct Expected {
  std::uint64_t responses = 0, tools = 0, tool_errors = 0, agents_linked = 0, agent_streams = 0;
  std::int64_t tokens_in = 0, tokens_out = 0;
};

std::int64_t num(simdjson::dom::element e, const char* k) {
  std::int64_t v = 0;
  if (e[k].get(v)) return 0;
  return v;
}

// Counts straight from the raw JSON (transcript-format §7.1-§7.3).
Expected expected_counts(const CorpusBundle& b) {
  Expected x;
  simdjson::dom::parser p;
  struct Resp {
    std::int64_t in = 0, out = 0;
  };
  std::map<std::string, Resp> resp;  // last entry wins
  std::set<std::string> tool_ids, agent_links, task_prompts;
  std::map<std::string, bool> first_result;
  std::size_t boundaries = 0;
  std::vector<std::string> inline_roots;
  for (std::size_t f = 0; f < b.contents.size(); ++f) {
    const bool main = f == 0 && !b.bundle.files[0].is_subagent;
    for (const auto& line : split_lines(b.contents[f])) {
      simdjson::dom::element el;
      if (p.parse(line).get(el)) continue;
      std::string_view type;
      if (el["type"].get(type)) continue;
      if (type == "progress") {
        std::string_view dt, aid;
        if (!el["data"]["type"].get(dt) && dt == "agent_progress" &&
            !el["data"]["agentId"].get(aid))
          agent_links.insert(std::string(aid));
        continue;
      }
      if (type == "system") {
        std::string_view st;
        if (main && !el["subtype"].get(st) && st == "compact_boundary") ++boundaries;
        continue;
      }
      simdjson::dom::element msg;
      if (el["message"].get(msg)) continue;
      if (type == "assistant") {
        std::string_view rid, mid;
        std::string key;
        if (!el["requestId"].get(rid) && !rid.empty()) key = rid;
        else if (!msg["id"].get(mid)) key = mid;
        simdjson::dom::element u;
        Resp r;
        if (!msg["usage"].get(u)) {
          r.in = num(u, "input_tokens") + num(u, "cache_read_input_tokens") +
                 num(u, "cache_creation_input_tokens");
          r.out = num(u, "output_tokens");
        }
        resp[key] = r;
        simdjson::dom::array content;
        if (!msg["content"].get(content))
          for (auto blk : content) {
            std::string_view bt, id, name, prompt;
            if (blk["type"].get(bt) || bt != "tool_use") continue;
            if (!blk["id"].get(id)) tool_ids.insert(std::string(id));
            if (!blk["name"].get(name) && (name == "Task" || name == "Agent") &&
                !blk["input"]["prompt"].get(prompt))
              task_prompts.insert(std::string(prompt));
          }
      } else if (type == "user") {
        std::string_view aid;
        if (!el["toolUseResult"]["agentId"].get(aid)) agent_links.insert(std::string(aid));
        bool side = false;
        if (el["isSidechain"].get(side)) side = false;
        simdjson::dom::element parent;
        std::string_view root_text;
        if (main && side && !el["parentUuid"].get(parent) && parent.is_null() &&
            !msg["content"].get(root_text))
          inline_roots.emplace_back(root_text);
        simdjson::dom::array content;
        if (!msg["content"].get(content))
          for (auto blk : content) {
            std::string_view bt, id;
            if (blk["type"].get(bt) || bt != "tool_result" || blk["tool_use_id"].get(id)) continue;
            bool err = false;
            if (blk["is_error"].get(err)) err = false;
            first_result.emplace(std::string(id), err);
          }
      }
    }
  }
  x.responses = resp.size();
  for (const auto& [k, r] : resp) {
    x.tokens_in += r.in;
    x.tokens_out += r.out;
  }
  x.tools = tool_ids.size();
  for (const auto& [id, err] : first_result)
    if (err && tool_ids.contains(id)) ++x.tool_errors;
  std::size_t acompact = 0;
  for (const FileRef& fr : b.bundle.files) {
    if (!fr.is_subagent) continue;
    ++x.agent_streams;
    if (fr.agent_id.rfind("acompact", 0) == 0) ++acompact;
    else if (agent_links.contains(fr.agent_id)) ++x.agents_linked;
  }
  x.agents_linked += std::min(acompact, b.bundle.files[0].is_subagent ? 0 : boundaries);
  std::multiset<std::string> prompts(task_prompts.begin(), task_prompts.end());
  for (const auto& r : inline_roots) {
    ++x.agent_streams;
    if (prompts.contains(r)) ++x.agents_linked;
  }
  return x;
}

bool is_zero(const std::uint8_t* d, std::size_t n) {
  return std::all_of(d, d + n, [](std::uint8_t c) { return c == 0; });
}

TEST(MapperCorpusTest, MatchesIndependentCounts) {
  const fs::path root = fs::path(CHSYNC_SOURCE_DIR) / "tests/data/real";
  ASSERT_TRUE(fs::exists(root));
  const auto bundles = discover_corpus(root);
  ASSERT_GT(bundles.size(), 50u);
  std::uint64_t gens = 0, tools = 0, tool_errors = 0, linked = 0, unlinked = 0, spans_total = 0;
  std::int64_t tin = 0, tout = 0;
  for (const auto& b : bundles) {
    SCOPED_TRACE(b.bundle.files[0].display);
    const MapResult r = map_bundle(b.bundle, b.contents, final_options());
    const Expected x = expected_counts(b);
    EXPECT_TRUE(r.bad.empty());
    EXPECT_EQ(r.stats.turns_held, 0u);
    std::uint64_t g = 0, t = 0, te = 0, al = 0, au = 0;
    std::int64_t in = 0, out = 0;
    std::unordered_map<std::uint64_t, TraceId> trace_of;
    for (const Span& s : r.spans) {
      EXPECT_TRUE(trace_of.emplace(s.span_key(), s.trace_id).second) << "duplicate span id";
      EXPECT_FALSE(is_zero(s.span_id.data(), 8));
      EXPECT_FALSE(is_zero(s.trace_id.data(), 16));
      EXPECT_EQ(to_hex(s.span_id).size(), 16u);
      EXPECT_EQ(to_hex(s.trace_id).size(), 32u);
      EXPECT_LE(s.start_ms, s.end_ms);
      EXPECT_EQ(s.bundle_seq, b.bundle.seq);
      EXPECT_FALSE(s.source_file.empty());
      EXPECT_GT(s.source_line, 0u);
      if (s.kind == SpanKind::kGeneration) {
        ++g;
        in += s.tokens_in;
        out += s.tokens_out;
      }
      if (s.kind == SpanKind::kSpan && s.tool_name) {
        ++t;
        if (s.is_error) ++te;
      }
      if (s.kind == SpanKind::kAgent) (find_attr(s, "unlinked") ? au : al)++;
    }
    // No orphans: every parent exists, earlier in the output, in the same trace.
    std::unordered_set<std::uint64_t> seen;
    for (const Span& s : r.spans) {
      if (s.has_parent) {
        std::uint64_t pk = 0;
        for (auto c : s.parent_id) pk = (pk << 8) | c;
        ASSERT_TRUE(seen.count(pk)) << "orphan or child before parent: " << dump(s);
        EXPECT_EQ(trace_of[pk], s.trace_id);
      }
      seen.insert(s.span_key());
    }
    EXPECT_EQ(g, x.responses);
    EXPECT_EQ(t, x.tools);
    EXPECT_EQ(te, x.tool_errors);
    EXPECT_EQ(in, x.tokens_in);
    EXPECT_EQ(out, x.tokens_out);
    EXPECT_EQ(al, x.agents_linked);
    EXPECT_EQ(al + au, x.agent_streams);
    // Determinism: a second run gives byte-identical spans.
    const MapResult again = map_bundle(b.bundle, b.contents, final_options());
    ASSERT_EQ(again.spans.size(), r.spans.size());
    for (std::size_t i = 0; i < r.spans.size(); ++i)
      EXPECT_EQ(dump(again.spans[i]), dump(r.spans[i]));
    gens += g;
    tools += t;
    tool_errors += te;
    linked += al;
    unlinked += au;
    tin += in;
    tout += out;
    spans_total += r.spans.size();
  }
  std::printf(
      "corpus: bundles=%zu spans=%llu generations=%llu tools=%llu tool_errors=%llu "
      "agents_linked=%llu agents_unlinked=%llu tokens_in=%lld tokens_out=%lld\n",
      bundles.size(), static_cast<unsigned long long>(spans_total),
      static_cast<unsigned long long>(gens), static_cast<unsigned long long>(tools),
      static_cast<unsigned long long>(tool_errors), static_cast<unsigned long long>(linked),
      static_cast<unsigned long long>(unlinked), static_cast<long long>(tin),
      static_cast<long long>(tout));
}

// tests/data/vectors/seed-message-hash.tsv: "<path below tests/data/real>\t<line>\t<hash>" per line
// of the corpus, computed by the seed tool's own Go code (see the README beside it).
std::map<std::pair<std::string, std::uint64_t>, std::string> load_seed_vectors() {
  std::map<std::pair<std::string, std::uint64_t>, std::string> out;
  const std::string text =
      read_file(std::string(CHSYNC_SOURCE_DIR) + "/tests/data/vectors/seed-message-hash.tsv");
  for (const auto& row : split_lines(text)) {
    const auto t1 = row.find('\t');
    const auto t2 = row.find('\t', t1 + 1);
    if (t1 == std::string::npos || t2 == std::string::npos) {
      ADD_FAILURE() << "malformed vector row: " << row;
      continue;
    }
    out[{row.substr(0, t1), std::stoull(row.substr(t1 + 1, t2 - t1 - 1))}] = row.substr(t2 + 1);
  }
  return out;
}

// The hash function behind `chsync hash`, over every row of the seed's vectors: each line of every
// real transcript must hash exactly as the seed tool hashed it.
TEST(SeedVectorsTest, SeedMessageHashMatchesEveryRow) {
  const auto vectors = load_seed_vectors();
  ASSERT_EQ(vectors.size(), 11506u);
  const fs::path root = fs::path(CHSYNC_SOURCE_DIR) / "tests/data/real";
  std::map<std::string, std::vector<std::string>> files;
  std::size_t checked = 0, mismatched = 0;
  for (const auto& [key, want] : vectors) {
    auto it = files.find(key.first);
    if (it == files.end()) {
      ASSERT_TRUE(fs::exists(root / key.first)) << key.first;
      it = files.emplace(key.first, split_lines(read_file((root / key.first).string()))).first;
    }
    ASSERT_LE(key.second, it->second.size()) << key.first;
    std::string got;
    const bool ok = seed_message_hash(it->second[key.second - 1], got);
    if (!ok || got != want) {
      if (++mismatched <= 20) {
        ADD_FAILURE() << key.first << ":" << key.second << ": seed " << want << ", chsync "
                      << (ok ? got : std::string("(no hash)"));
      }
    }
    ++checked;
  }
  EXPECT_EQ(mismatched, 0u) << "of " << checked;
  EXPECT_EQ(checked, 11506u);
}

// The mapper with message_hash on: every span made from a line carries that line's seed hash.
TEST(SeedVectorsTest, MapperSpansCarryTheSeedHash) {
  const auto vectors = load_seed_vectors();
  const auto bundles = discover_corpus(fs::path(CHSYNC_SOURCE_DIR) / "tests/data/real");
  MapOptions o = final_options();
  o.message_hash = true;
  std::set<std::pair<std::string, std::uint64_t>> lines_seen;
  std::size_t spans_with_hash = 0, spans_from_lines = 0, mismatched = 0;
  for (const auto& b : bundles) {
    const MapResult r = map_bundle(b.bundle, b.contents, o);
    for (const Span& s : r.spans) {
      if (s.source_line == 0) continue;
      ++spans_from_lines;
      const Attr* a = find_attr(s, "message_hash");
      if (a == nullptr) continue;
      ++spans_with_hash;
      const auto it = vectors.find({s.source_file, s.source_line});
      ASSERT_NE(it, vectors.end()) << s.source_file << ":" << s.source_line << " not in vectors";
      if (a->str != it->second && ++mismatched <= 20) {
        ADD_FAILURE() << s.source_file << ":" << s.source_line << ": seed " << it->second
                      << ", span " << a->str;
      }
      lines_seen.insert(it->first);
    }
  }
  EXPECT_EQ(mismatched, 0u);
  // Every span made from a line carries the hash (the seed hashes every line it reads).
  EXPECT_EQ(spans_with_hash, spans_from_lines);
  std::printf("seed vectors: %zu spans carry a hash, %zu distinct lines of %zu rows\n",
              spans_with_hash, lines_seen.size(), vectors.size());
  // 3,323 distinct source lines when written (the other lines fold into spans made from another
  // line: streamed parts of one response, tool results, progress): a floor, not a tautology.
  EXPECT_GT(lines_seen.size(), 3000u);
}

}  // namespace
}  // namespace chsync::test
