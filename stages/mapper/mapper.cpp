// BundleMapper: see mapper.h for the contract and docs/mapping.md for every mapping choice.
#include "stages/mapper/mapper.h"
#include "stages/redact/redact.h"

#include <simdjson.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "pipeline/ids.h"
#include "stages/mapper/entry.h"
#include "stages/mapper/messages.h"
#include "stages/mapper/tree.h"

namespace chsync {

using mapper::Block;
using mapper::Entry;
using mapper::EntryType;
using mapper::ParseStatus;

namespace {

constexpr std::string_view kSchema = "chsync.span/1";
constexpr std::int64_t kMappingVersion =
    2;  // 2: GenAI span names, message parts, tool spans beside chat
constexpr std::size_t kStatusMessageBytes = 512;
constexpr int kNone = -1;

using mapper::is_command_output;
using mapper::is_prompt;
using mapper::ltrim;
using mapper::starts_with;

std::string status_message(std::string_view s) {
  return std::string(s.substr(0, mapper::utf8_cut(s, kStatusMessageBytes)));
}

}  // namespace

struct BundleMapper::Impl {
  // ---- per-bundle working types (indices into the vectors below) ----
  struct Turn {
    int prompt = kNone;  // entry index; kNone for the preamble pseudo-turn
    int first = kNone;   // first entry of the turn (the prompt, or the preamble's first entry)
    int number = 0;      // 1-based prompt number; 0 for the preamble
    bool final = false;
    bool included = false;
    std::string last_text;     // final assistant text of the turn (main context)
    std::string command_text;  // <local-command-stdout> etc., used when there is no assistant text
  };
  struct Group {  // one API response
    std::string key;
    std::vector<int> all;   // every entry of the response
    std::vector<int> kept;  // entries contributing new blocks (replayed copies dropped)
    std::vector<Block> blocks;
    int ctx = kNone;
    std::optional<std::string> input;
    std::vector<int> input_entries;  // the user entries of the call's input delta
    std::int64_t trigger_ts = 0;
    bool has_trigger = false;
  };
  struct Tool {
    const Block* block = nullptr;
    int entry = kNone;
    int group = kNone;
  };
  struct Agent {
    std::string key;   // agentId, or the Task tool_use_id (1.0.x inline), or the root uuid
    int file = kNone;  // subagent file, or kNone for inline sidechains
    int root = kNone;  // inline: root entry
    std::vector<int> entries;
    std::string link_tool;   // Task/Agent tool_use_id
    int link_event = kNone;  // compaction boundary entry (acompact files)
    bool inline_sidechain = false;
    bool compaction = false;
    std::string last_text;
  };
  // Where an entry's spans hang: a turn (main context) or an agent stream.
  struct Ctx {
    bool is_agent = false;
    int index = kNone;
  };
  struct Resolved {
    int state = 0;  // 0 new, 1 resolving, 2 done
    bool included = false;
    bool unlinked = false;
    TraceId trace{};
    SpanId parent{};
    bool has_parent = false;
    int order = 0;  // ordering key of the top-level turn
  };

  MapOptions opt;
  Bundle bundle;
  BadLineFn on_bad;
  MapStats stats;
  mapper::EntryParser parser;
  IdHasher ids;
  std::vector<Entry> entries;
  std::vector<std::int64_t> last_ts;  // per file: timestamp fill for entries without one
  std::string user_id;

  Impl(const MapOptions& o, const Bundle& b, BadLineFn fn)
      : opt(o), bundle(b), on_bad(std::move(fn)) {
    last_ts.assign(bundle.files.size(), 0);
    user_id = opt.user_id;
    if (user_id.empty() && !opt.user_from_path_regex.empty() && !bundle.files.empty()) {
      const FileRef& f = bundle.files.front();
      const std::string path = !f.key.empty() ? f.key : !f.path.empty() ? f.path : f.display;
      try {
        const std::regex re(opt.user_from_path_regex);
        std::smatch m;
        if (std::regex_search(path, m, re) && m.size() > 1) user_id = m[1].str();
      } catch (const std::regex_error&) {
        // The CLI validates the pattern; a bad one here just means no user id.
      }
    }
  }

  void bad_line(std::size_t file, std::uint64_t line, std::string kind, std::string message) {
    if (!on_bad) return;
    BadLine b;
    b.file = file < bundle.files.size() ? bundle.files[file].display : std::string();
    b.line = line;
    b.kind = std::move(kind);
    b.message = std::move(message);
    on_bad(b);
  }

  void add_line(std::size_t file, std::string_view line, std::size_t cap, std::uint64_t line_no) {
    ++stats.lines;
    if (ltrim(line).empty()) return;  // blank lines carry nothing
    Entry e;
    bool repaired = false;
    std::string err;
    const ParseStatus st =
        parser.parse(line.data(), line.size(), cap, opt.message_hash, e, repaired, err);
    if (repaired) {
      ++stats.bad_lines_utf8;
      bad_line(file, line_no, "utf8", "invalid UTF-8 replaced by U+FFFD");
    }
    if (st == ParseStatus::kBadJson) {
      ++stats.bad_lines_json;
      bad_line(file, line_no, "json", err);
      return;
    }
    if (st == ParseStatus::kBadSchema) {
      ++stats.bad_lines_schema;
      bad_line(file, line_no, "schema", err);
      return;
    }
    if (st == ParseStatus::kSkipped) return;
    if (e.type == EntryType::kProgress && e.progress_agent_id.empty()) return;
    if (file < last_ts.size()) {
      if (e.has_ts) last_ts[file] = e.ts_ms;
      else e.ts_ms = last_ts[file];
    }
    e.file = static_cast<std::uint32_t>(file);
    e.line = line_no;
    e.seq = static_cast<std::uint32_t>(entries.size());
    entries.push_back(std::move(e));
  }

  // ---------------------------------------------------------------------------------------------
  // finish(): the whole bundle is known; build spans.

  std::string session_id;
  int main_file = kNone;
  std::vector<Turn> turns;
  std::vector<Agent> agents;
  std::vector<Group> groups;
  std::vector<Ctx> ctx_of;  // per entry
  std::unordered_map<std::string, int> group_by_key;
  std::unordered_map<std::string, Tool> tools;  // by tool_use_id
  std::vector<std::string> tool_order;
  std::unordered_map<std::string, std::pair<int, int>> results;  // tool_use_id -> (entry, result)
  std::vector<Resolved> turn_res, agent_res;
  std::string session_title;
  std::vector<Span> spans;
  std::vector<int> span_order;  // ordering key per span
  std::unordered_set<std::uint64_t> span_keys;

  bool file_final(int f) const {
    if (f < 0 || static_cast<std::size_t>(f) >= bundle.files.size()) return true;
    const FileRef& r = bundle.files[static_cast<std::size_t>(f)];
    return !r.settles || opt.now_ms - r.mtime_ms >= opt.settle_ms;
  }

  bool in_range(std::int64_t ts) const {
    if (opt.since_ms != 0 && ts < opt.since_ms) return false;
    if (opt.until_ms != 0 && ts > opt.until_ms) return false;
    return true;
  }

  void find_session() {
    if (!bundle.files.empty() && !bundle.files[0].is_subagent) main_file = 0;
    for (const Entry& e : entries)
      if (static_cast<int>(e.file) == main_file && !e.session_id.empty()) {
        session_id = e.session_id;
        return;
      }
    if (!bundle.session_id.empty()) {
      session_id = bundle.session_id;
      return;
    }
    for (const Entry& e : entries)
      if (!e.session_id.empty()) {
        session_id = e.session_id;
        return;
      }
  }

  // Turns of the main file and agent streams (subagent files, 1.0.x inline sidechains).
  void assign_contexts() {
    ctx_of.assign(entries.size(), Ctx{});
    std::set<std::pair<std::int64_t, std::string>> prompt_seen;  // replay detection
    std::unordered_map<std::string, int> side_agent;             // inline sidechain uuid -> agent
    std::vector<int> file_agent(bundle.files.size(), kNone);
    int cur = kNone;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      const int idx = static_cast<int>(i);
      const bool relevant = e.type == EntryType::kUser || e.type == EntryType::kAssistant ||
                            e.type == EntryType::kSystem;
      if (static_cast<int>(e.file) != main_file) {
        int& a = file_agent[e.file];
        if (!relevant) {  // agent_progress links and titles only; no stream position
          ctx_of[i] = Ctx{a != kNone, a};
          continue;
        }
        if (a == kNone) {
          Agent ag;
          ag.file = static_cast<int>(e.file);
          const FileRef& fr = bundle.files[e.file];
          ag.key = !fr.agent_id.empty()  ? fr.agent_id
                   : !e.agent_id.empty() ? e.agent_id
                                         : fr.display;
          ag.compaction = starts_with(ag.key, "acompact");
          a = static_cast<int>(agents.size());
          agents.push_back(std::move(ag));
        }
        agents[static_cast<std::size_t>(a)].entries.push_back(idx);
        ctx_of[i] = Ctx{true, a};
        continue;
      }
      if (e.is_sidechain && e.agent_id.empty() && relevant) {
        auto it = e.parent_uuid.empty() ? side_agent.end() : side_agent.find(e.parent_uuid);
        int a;
        if (it != side_agent.end()) {
          a = it->second;
        } else {
          Agent ag;
          ag.inline_sidechain = true;
          ag.root = idx;
          ag.key = e.uuid;
          a = static_cast<int>(agents.size());
          agents.push_back(std::move(ag));
        }
        if (!e.uuid.empty()) side_agent[e.uuid] = a;
        agents[static_cast<std::size_t>(a)].entries.push_back(idx);
        ctx_of[i] = Ctx{true, a};
        continue;
      }
      if (!relevant) {
        ctx_of[i] = Ctx{false, cur};
        continue;
      }
      if (is_prompt(e) && prompt_seen.emplace(e.ts_ms, e.text).second) {
        Turn t;
        t.prompt = idx;
        t.first = idx;
        t.number =
            static_cast<int>(turns.size()) + (turns.empty() || turns[0].prompt != kNone ? 1 : 0);
        cur = static_cast<int>(turns.size());
        turns.push_back(std::move(t));
      } else if (cur == kNone) {
        Turn t;  // preamble: entries before the first prompt
        t.first = idx;
        cur = 0;
        turns.push_back(std::move(t));
      }
      ctx_of[i] = Ctx{false, cur};
      if (e.type == EntryType::kUser && e.results.empty() && is_command_output(e.text))
        turns[static_cast<std::size_t>(cur)].command_text = e.text;
    }
  }

  std::string tool_name_of(const std::string& id) const {
    auto it = tools.find(id);
    return it != tools.end() ? it->second.block->tool_name : std::string();
  }

  std::vector<const Entry*> entries_of(const std::vector<int>& idx) const {
    std::vector<const Entry*> out;
    out.reserve(idx.size());
    for (int i : idx) out.push_back(&entries[static_cast<std::size_t>(i)]);
    return out;
  }

  void build_groups() {
    std::unordered_map<int, std::vector<int>> pending;  // stream -> user entries since last call
    auto stream_of = [&](const Ctx& c) { return c.is_agent ? c.index + 1 : 0; };
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      const Ctx c = ctx_of[i];
      if (c.index == kNone && !c.is_agent) continue;
      if (e.type == EntryType::kUser) {
        pending[stream_of(c)].push_back(static_cast<int>(i));
        for (std::size_t r = 0; r < e.results.size(); ++r)
          results.emplace(e.results[r].tool_use_id,
                          std::make_pair(static_cast<int>(i), static_cast<int>(r)));
        continue;
      }
      if (e.type != EntryType::kAssistant) continue;
      std::string key = !e.request_id.empty()   ? e.request_id
                        : !e.message_id.empty() ? e.message_id
                                                : "uuid:" + std::to_string(e.file) + ":" + e.uuid;
      auto [it, inserted] = group_by_key.emplace(key, static_cast<int>(groups.size()));
      if (inserted) {
        Group g;
        g.key = std::move(key);
        g.ctx = static_cast<int>(i);  // the first entry; its Ctx is looked up through ctx_of
        auto& p = pending[stream_of(c)];
        if (!p.empty()) {
          g.trigger_ts = entries[static_cast<std::size_t>(p.back())].ts_ms;
          g.has_trigger = true;
          pending_inputs.emplace_back(static_cast<int>(groups.size()), p);
        }
        p.clear();
        groups.push_back(std::move(g));
      }
      Group& g = groups[static_cast<std::size_t>(it->second)];
      g.all.push_back(static_cast<int>(i));
      bool added = false;
      for (const Block& b : e.blocks) {
        if (std::find(g.blocks.begin(), g.blocks.end(), b) != g.blocks.end()) continue;
        g.blocks.push_back(b);
        added = true;
      }
      if (added || e.blocks.empty()) g.kept.push_back(static_cast<int>(i));
    }
    // Tools: first tool_use block per id (a replay repeats ids).
    for (std::size_t gi = 0; gi < groups.size(); ++gi) {
      const Group& g = groups[gi];
      for (const Block& b : g.blocks) {
        if (b.type != Block::Type::kToolUse || b.tool_id.empty() || tools.count(b.tool_id))
          continue;
        int entry = g.all.front();
        for (int k : g.all) {
          const auto& eb = entries[static_cast<std::size_t>(k)].blocks;
          if (std::any_of(eb.begin(), eb.end(),
                          [&](const Block& x) { return x.tool_id == b.tool_id; })) {
            entry = k;
            break;
          }
        }
        tools.emplace(b.tool_id, Tool{&b, entry, static_cast<int>(gi)});
        tool_order.push_back(b.tool_id);
      }
    }
    // Inputs need tool names, so they are rendered once tools are known.
    const mapper::ToolNameFn name_of = [this](const std::string& id) { return tool_name_of(id); };
    for (auto& [gi, p] : pending_inputs) {
      Group& g = groups[static_cast<std::size_t>(gi)];
      std::string s = mapper::render_input_text(entries_of(p), name_of);
      if (!s.empty()) g.input = std::move(s);
      g.input_entries = std::move(p);
    }
  }
  std::vector<std::pair<int, std::vector<int>>> pending_inputs;

  Ctx group_ctx(const Group& g) const { return ctx_of[static_cast<std::size_t>(g.ctx)]; }

  void link_agents() {
    std::unordered_map<std::string, std::string> by_agent_id;  // agentId -> Task tool_use_id
    for (const Entry& e : entries) {
      if (e.type == EntryType::kUser && !e.tur_agent_id.empty() && !e.results.empty())
        by_agent_id.emplace(e.tur_agent_id, e.results.front().tool_use_id);
    }
    for (const Entry& e : entries)  // 2.1.38-39 agent_progress: a fallback link
      if (e.type == EntryType::kProgress && !e.parent_tool_use_id.empty())
        by_agent_id.emplace(e.progress_agent_id, e.parent_tool_use_id);
    // Compaction boundaries of the main file, in time order, for acompact-* files.
    std::vector<int> boundaries;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      if (static_cast<int>(e.file) == main_file && e.type == EntryType::kSystem &&
          e.subtype == "compact_boundary" && !e.uuid.empty())
        boundaries.push_back(static_cast<int>(i));
    }
    std::vector<bool> boundary_used(boundaries.size(), false);
    std::unordered_set<std::string> task_used;
    // Agents in order of their last entry time, so greedy boundary matching is stable.
    for (Agent& a : agents) {
      if (a.inline_sidechain) {
        const Entry& root = entries[static_cast<std::size_t>(a.root)];
        if (root.type != EntryType::kUser) continue;
        for (const auto& id : tool_order) {
          const Tool& t = tools.at(id);
          if ((t.block->tool_name == "Task" || t.block->tool_name == "Agent") &&
              !task_used.count(id) && !t.block->task_prompt.empty() &&
              t.block->task_prompt == root.text &&
              !ctx_of[static_cast<std::size_t>(t.entry)].is_agent) {
            a.link_tool = id;
            a.key = id;  // design: 1.0.x inline sidechains are keyed by the Task tool_use_id
            task_used.insert(id);
            break;
          }
        }
        continue;
      }
      if (a.compaction) {
        const std::int64_t last = entries[static_cast<std::size_t>(a.entries.back())].ts_ms;
        for (std::size_t b = 0; b < boundaries.size(); ++b) {
          if (boundary_used[b] || entries[static_cast<std::size_t>(boundaries[b])].ts_ms < last)
            continue;
          boundary_used[b] = true;
          a.link_event = boundaries[b];
          break;
        }
        continue;
      }
      auto it = by_agent_id.find(a.key);
      if (it != by_agent_id.end() && tools.count(it->second)) a.link_tool = it->second;
    }
  }

  // Trace, parent and finality of a context, following agent links up to a turn.
  const Resolved& resolve_turn(int t) {
    Resolved& r = turn_res[static_cast<std::size_t>(t)];
    if (r.state == 2) return r;
    r.state = 2;
    Turn& turn = turns[static_cast<std::size_t>(t)];
    const bool main_settled = file_final(main_file);
    const bool is_last = static_cast<std::size_t>(t) + 1 == turns.size();
    turn.final = !is_last || main_settled;
    const Entry& first = entries[static_cast<std::size_t>(turn.first)];
    turn.included = turn.final && in_range(first.ts_ms);
    r.included = turn.included;
    r.order = t;
    const std::string& key = first.uuid;
    r.trace =
        opt.trace_per_session ? ids.session_trace(session_id) : ids.turn_trace(session_id, key);
    r.parent = ids.span("turn", key);
    r.has_parent = true;
    return r;
  }

  const Resolved& resolve_ctx(const Ctx& c) {
    return c.is_agent ? resolve_agent(c.index) : resolve_turn(c.index);
  }

  const Resolved& resolve_agent(int a) {
    Resolved& r = agent_res[static_cast<std::size_t>(a)];
    if (r.state == 2) return r;
    Agent& ag = agents[static_cast<std::size_t>(a)];
    const SpanId self = ids.span("agent", ag.key);
    if (r.state == 0) {
      r.state = 1;
      const Resolved* up = nullptr;
      if (!ag.link_tool.empty()) {
        const Tool& t = tools.at(ag.link_tool);
        up = &resolve_ctx(ctx_of[static_cast<std::size_t>(t.entry)]);
      } else if (ag.link_event != kNone) {
        const Ctx c = ctx_of[static_cast<std::size_t>(ag.link_event)];
        if (c.index != kNone) up = &resolve_ctx(c);
      }
      if (up != nullptr && up->state == 2) {
        Resolved copy = *up;
        r.included = copy.included;
        r.trace = copy.trace;
        r.order = copy.order;
        r.unlinked = false;
      } else {
        ag.link_tool.clear();
        ag.link_event = kNone;
        r.unlinked = true;
        const int f = ag.file != kNone ? ag.file : main_file;
        const Entry& first = entries[static_cast<std::size_t>(ag.entries.front())];
        r.included = file_final(f) && in_range(first.ts_ms);
        r.trace = opt.trace_per_session ? ids.session_trace(session_id)
                                        : ids.turn_trace(session_id, "agent:" + ag.key);
        r.order = static_cast<int>(turns.size()) + a;
      }
    }
    r.state = 2;
    r.parent = self;
    r.has_parent = true;
    return r;
  }

  // ---- span construction ----

  Span make_span(const Resolved& r, int entry, SpanKind kind) {
    Span s;
    s.trace_id = r.trace;
    s.kind = kind;
    s.session_id = session_id;
    s.user_id = user_id;
    s.bundle_seq = bundle.seq;
    if (entry != kNone) {
      const Entry& e = entries[static_cast<std::size_t>(entry)];
      s.source_file = bundle.files[e.file].display;
      s.source_line = e.line;
      s.start_ms = s.end_ms = e.ts_ms;
      if (opt.message_hash && !e.message_hash.empty())
        s.metadata.push_back(Attr::string("message_hash", e.message_hash));
    }
    s.metadata.insert(s.metadata.begin(), {Attr::string("schema", std::string(kSchema)),
                                           Attr::integer("mapping_version", kMappingVersion)});
    return s;
  }

  void push(Span s, int order) {
    if (!span_keys.insert(s.span_key()).second) return;  // one span per id within a bundle
    if (s.end_ms < s.start_ms) s.end_ms = s.start_ms;
    spans.push_back(std::move(s));
    span_order.push_back(order);
  }

  void add_trace_metadata(Span& s, const Entry* e) {
    s.metadata.push_back(Attr::string("session_id", session_id));
    if (e != nullptr) {
      if (!e->cwd.empty()) s.metadata.push_back(Attr::string("cwd", e->cwd));
      s.metadata.push_back(Attr::string("git_branch", e->git_branch));
      if (!e->version.empty()) s.metadata.push_back(Attr::string("cc_version", e->version));
    }
    if (!bundle.project.empty()) s.metadata.push_back(Attr::string("project", bundle.project));
    if (!session_title.empty()) s.metadata.push_back(Attr::string("session_title", session_title));
  }

  void find_title() {
    std::unordered_set<std::string> uuids;
    for (const Entry& e : entries)
      if (!e.uuid.empty()) uuids.insert(e.uuid);
    for (const Entry& e : entries) {
      if (e.type != EntryType::kSummary || e.summary.empty()) continue;
      if (uuids.count(e.leaf_uuid)) {
        session_title = e.summary;
        return;
      }
      session_title = e.summary;  // else: the last summary line
    }
  }

  void emit_generations() {
    for (Group& g : groups) {
      const Ctx c = group_ctx(g);
      const Resolved& r = resolve_ctx(c);
      if (!r.included) continue;
      const Entry& first = entries[static_cast<std::size_t>(g.all.front())];
      Span s = make_span(r, g.all.front(), SpanKind::kGeneration);
      s.span_id = ids.span("generation", g.key);
      s.parent_id = r.parent;
      s.has_parent = true;
      // Usage: the entry with the largest output_tokens (the last one); never summed.
      const Entry* best = nullptr;
      bool final = false, api_error = false;
      std::string model, stop;
      for (int k : g.all) {
        const Entry& e = entries[static_cast<std::size_t>(k)];
        if (!e.stop_reason.empty()) {
          final = true;
          stop = e.stop_reason;
        }
        if (e.is_api_error || e.model == "<synthetic>") api_error = true;
        if (model.empty()) model = e.model;
        if (e.usage.present && (!best || e.usage.output_tokens >= best->usage.output_tokens))
          best = &e;
      }
      std::int64_t end = first.ts_ms;
      for (int k : g.kept) end = std::max(end, entries[static_cast<std::size_t>(k)].ts_ms);
      s.start_ms = g.has_trigger ? std::min(g.trigger_ts, first.ts_ms) : first.ts_ms;
      s.end_ms = end;
      s.name = "chat " + (model.empty() ? std::string("unknown") : model);
      if (!model.empty()) s.model = model;
      s.input = g.input;
      std::string text;
      s.output = mapper::render_output_text(g.blocks, &text);
      s.input_messages = mapper::input_messages(
          entries_of(g.input_entries), [this](const std::string& id) { return tool_name_of(id); });
      s.output_messages = mapper::output_messages(g.blocks);
      bool inferred = false;
      s.finish_reason = mapper::finish_reason(stop, g.blocks, api_error, &inferred);
      if (!c.is_agent) {
        Turn& t = turns[static_cast<std::size_t>(c.index)];
        if (!text.empty()) t.last_text = text;
      } else if (!text.empty()) {
        agents[static_cast<std::size_t>(c.index)].last_text = text;
      }
      s.response_id = first.message_id;
      s.stop_reason = stop;
      s.metadata.push_back(Attr::string("input_mode", "delta"));
      if (!first.request_id.empty())
        s.metadata.push_back(Attr::string("request_id", first.request_id));
      if (!first.message_id.empty())
        s.metadata.push_back(Attr::string("message_id", first.message_id));
      if (!stop.empty()) s.metadata.push_back(Attr::string("stop_reason", stop));
      if (inferred) s.metadata.push_back(Attr::boolean("finish_reason_inferred", true));
      s.metadata.push_back(Attr::integer("entry_count", static_cast<std::int64_t>(g.kept.size())));
      if (c.is_agent)
        s.metadata.push_back(
            Attr::string("agent_id", agents[static_cast<std::size_t>(c.index)].key));
      if (api_error) {
        s.is_error = true;
        s.status_message = status_message(text.empty() ? std::string("API error") : text);
        s.metadata.push_back(Attr::boolean("api_error", true));
      } else if (best != nullptr) {
        s.usage = best->usage;
        s.usage.final = final;
        // The 5m/1h split is identical on every entry that has it; take it from any of them.
        for (int k : g.all) {
          const Usage& u = entries[static_cast<std::size_t>(k)].usage;
          s.usage.cache_creation_5m = std::max(s.usage.cache_creation_5m, u.cache_creation_5m);
          s.usage.cache_creation_1h = std::max(s.usage.cache_creation_1h, u.cache_creation_1h);
        }
        s.tokens_in = s.usage.prompt_total();
        s.tokens_out = s.usage.output_tokens;
        s.metadata.push_back(Attr::integer("input_tokens", s.usage.input_tokens));
        s.metadata.push_back(
            Attr::integer("cache_read_input_tokens", s.usage.cache_read_input_tokens));
        s.metadata.push_back(
            Attr::integer("cache_creation_input_tokens", s.usage.cache_creation_input_tokens));
        if (s.usage.cache_creation_5m >= 0)
          s.metadata.push_back(
              Attr::integer("cache_creation_5m_input_tokens", s.usage.cache_creation_5m));
        if (s.usage.cache_creation_1h >= 0)
          s.metadata.push_back(
              Attr::integer("cache_creation_1h_input_tokens", s.usage.cache_creation_1h));
        s.metadata.push_back(Attr::integer("output_tokens", s.usage.output_tokens));
        s.metadata.push_back(Attr::boolean("usage_final", final));
      }
      ++stats.generations;
      push(std::move(s), r.order);
    }
  }

  void emit_tools() {
    for (const std::string& id : tool_order) {
      const Tool& t = tools.at(id);
      const Group& g = groups[static_cast<std::size_t>(t.group)];
      const Resolved& r = resolve_ctx(group_ctx(g));
      if (!r.included) continue;
      Span s = make_span(r, t.entry, SpanKind::kSpan);
      s.span_id = ids.span("tool", id);
      // Beside the chat span that asked for it, under the turn or agent (docs/mapping.md "Tool
      // span placement"); the chat's tool_call part carries the same id.
      s.parent_id = r.parent;
      s.has_parent = true;
      s.name = "execute_tool " + t.block->tool_name;
      s.tool_name = t.block->tool_name;
      s.tool_use_id = id;
      s.input = t.block->input_json;
      s.input_is_json = true;
      s.metadata.push_back(Attr::string("tool_use_id", id));
      auto rit = results.find(id);
      if (rit != results.end()) {
        const Entry& re = entries[static_cast<std::size_t>(rit->second.first)];
        const auto& res = re.results[static_cast<std::size_t>(rit->second.second)];
        s.end_ms = re.ts_ms;
        s.output = res.content;
        s.tool_result = res.content;
        s.is_error = res.is_error;
        if (res.is_error)
          s.status_message = status_message(!re.tur_error.empty() ? re.tur_error : res.content);
        // toolUseResult as a string is usually the result content again: kept only when it says
        // more.
        if (!re.tur_error.empty() && re.tur_error != res.content)
          s.metadata.push_back(Attr::string("tool_use_result_error", status_message(re.tur_error)));
        if (!re.tur_agent_id.empty())
          s.metadata.push_back(Attr::string("agent_id", re.tur_agent_id));
        if (re.tur_total_tokens >= 0)
          s.metadata.push_back(Attr::integer("task_total_tokens", re.tur_total_tokens));
        if (re.tur_total_duration_ms >= 0)
          s.metadata.push_back(Attr::integer("task_total_duration_ms", re.tur_total_duration_ms));
        if (re.tur_total_tool_use_count >= 0)
          s.metadata.push_back(
              Attr::integer("task_total_tool_use_count", re.tur_total_tool_use_count));
        if (!re.tur_usage_json.empty())
          s.metadata.push_back(Attr::json("task_usage", re.tur_usage_json));
      } else {
        // Only final turns are mapped, so a missing result will never come.
        s.metadata.push_back(Attr::boolean("unfinished", true));
      }
      ++stats.tool_spans;
      push(std::move(s), r.order);
    }
  }

  void emit_agents() {
    for (std::size_t a = 0; a < agents.size(); ++a) {
      Agent& ag = agents[a];
      const Resolved& r = resolve_agent(static_cast<int>(a));
      if (!r.included) continue;
      Span s = make_span(r, ag.entries.front(), SpanKind::kAgent);
      s.span_id = r.parent;
      std::int64_t start = entries[static_cast<std::size_t>(ag.entries.front())].ts_ms, end = start;
      for (int k : ag.entries) {
        start = std::min(start, entries[static_cast<std::size_t>(k)].ts_ms);
        end = std::max(end, entries[static_cast<std::size_t>(k)].ts_ms);
      }
      s.start_ms = start;
      s.end_ms = end;
      std::string type;
      std::optional<std::string> input;
      if (!ag.link_tool.empty()) {
        const Tool& t = tools.at(ag.link_tool);
        s.parent_id = ids.span("tool", ag.link_tool);
        s.has_parent = true;
        type = t.block->subagent_type;
        if (!t.block->task_prompt.empty()) input = t.block->task_prompt;
        auto rit = results.find(ag.link_tool);
        if (type.empty() && rit != results.end())
          type = entries[static_cast<std::size_t>(rit->second.first)].tur_agent_type;
      } else if (ag.link_event != kNone) {
        s.parent_id = ids.span("event", entries[static_cast<std::size_t>(ag.link_event)].uuid);
        s.has_parent = true;
      } else if (opt.trace_per_session) {
        s.parent_id = ids.span("session", session_id);
        s.has_parent = true;
      }
      // The first user text of the stream is the subagent's prompt.
      bool warmup = false;
      for (int k : ag.entries) {
        const Entry& e = entries[static_cast<std::size_t>(k)];
        if (e.type != EntryType::kUser || !e.results.empty() || e.is_meta) continue;
        if (!input && !e.text.empty()) input = e.text;
        warmup = ltrim(e.text) == "Warmup";
        break;
      }
      if (ag.compaction) type = "compaction";
      if (type.empty()) type = warmup ? "warmup" : "subagent";
      s.name = "invoke_agent " + type;
      if (!s.has_parent) s.trace_name = opt.trace_name;
      s.agent_name = type;
      s.agent_id = ag.key;
      s.input = input;
      if (!ag.last_text.empty()) s.output = ag.last_text;
      if (r.unlinked && !opt.trace_per_session)
        add_trace_metadata(s, &entries[static_cast<std::size_t>(ag.entries.front())]);
      s.metadata.push_back(Attr::string("agent_id", ag.key));
      s.metadata.push_back(Attr::string("agent_type", type));
      if (ag.inline_sidechain) s.metadata.push_back(Attr::boolean("inline_sidechain", true));
      if (warmup) s.metadata.push_back(Attr::boolean("warmup", true));
      if (r.unlinked) s.metadata.push_back(Attr::boolean("unlinked", true));
      ++stats.agents;
      if (r.unlinked) ++stats.agents_unlinked;
      push(std::move(s), r.order);
    }
  }

  void emit_events() {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      if (e.type != EntryType::kSystem || e.uuid.empty()) continue;
      const Ctx c = ctx_of[i];
      if (!c.is_agent && c.index == kNone) continue;
      const Resolved& r = resolve_ctx(c);
      if (!r.included) continue;
      Span s = make_span(r, static_cast<int>(i), SpanKind::kEvent);
      s.span_id = ids.span("event", e.uuid);
      s.parent_id = r.parent;
      s.has_parent = true;
      if (!e.subtype.empty()) s.metadata.push_back(Attr::string("subtype", e.subtype));
      if (!e.level.empty()) s.metadata.push_back(Attr::string("level", e.level));
      if (e.subtype == "compact_boundary") {
        s.name = "compaction";
        if (!e.compact_trigger.empty())
          s.metadata.push_back(Attr::string("trigger", e.compact_trigger));
        if (e.compact_pre_tokens >= 0)
          s.metadata.push_back(Attr::integer("pre_tokens", e.compact_pre_tokens));
        // The summary is the next isCompactSummary user entry (parentUuid = the boundary).
        for (std::size_t k = i + 1; k < entries.size() && entries[k].file == e.file; ++k) {
          if (entries[k].type == EntryType::kUser && entries[k].is_compact_summary) {
            s.output = entries[k].text;
            break;
          }
          if (entries[k].type == EntryType::kAssistant) break;
        }
      } else {
        s.name = e.subtype.empty() ? std::string("system") : "system." + e.subtype;
        if (!e.content.empty()) s.output = e.content;
        if (e.duration_ms >= 0) s.metadata.push_back(Attr::integer("duration_ms", e.duration_ms));
      }
      if (e.level == "error" || e.subtype == "api_error") {
        s.is_error = true;
        s.status_message = status_message(e.content.empty() ? e.subtype : e.content);
      }
      ++stats.events;
      push(std::move(s), r.order);
    }
  }

  void emit_turns() {
    for (std::size_t t = 0; t < turns.size(); ++t) {
      const Resolved& r = resolve_turn(static_cast<int>(t));
      Turn& turn = turns[t];
      if (turn.prompt != kNone && !turn.final) ++stats.turns_held;
      if (!r.included) continue;
      if (turn.prompt == kNone &&
          std::find(span_order.begin(), span_order.end(), r.order) == span_order.end())
        continue;  // a preamble of meta entries only: nothing to show
      if (turn.prompt != kNone) ++stats.turns;
      const Entry& first = entries[static_cast<std::size_t>(turn.first)];
      Span s = make_span(r, turn.first, opt.trace_per_session ? SpanKind::kSpan : SpanKind::kTrace);
      s.span_id = r.parent;
      if (opt.trace_per_session) {
        s.parent_id = ids.span("session", session_id);
        s.has_parent = true;
      }
      // Roots share one stable name (--trace-name) so a backend can filter and group them; the
      // turn number and the prompt's first words tell them apart. Under --trace-per-session the
      // turn spans are children of the session root and keep "turn N".
      if (!opt.trace_per_session) s.trace_name = opt.trace_name;
      s.name = !opt.trace_per_session ? opt.trace_name
               : turn.prompt != kNone ? "turn " + std::to_string(turn.number)
                                      : std::string("session start");
      if (turn.prompt != kNone) s.input = first.text;
      else s.metadata.push_back(Attr::boolean("pseudo_turn", true));
      if (!turn.last_text.empty()) s.output = turn.last_text;
      else if (!turn.command_text.empty()) s.output = turn.command_text;
      if (!opt.trace_per_session) add_trace_metadata(s, &first);
      if (turn.prompt != kNone) {
        s.metadata.push_back(Attr::string("prompt_uuid", first.uuid));
        s.metadata.push_back(Attr::integer("turn_number", turn.number));
        const std::string preview = mapper::prompt_preview(first.text);
        if (!preview.empty()) s.metadata.push_back(Attr::string("prompt_preview", preview));
      }
      push(std::move(s), r.order);
    }
  }

  void emit_session_root() {
    if (!opt.trace_per_session || spans.empty()) return;
    const Resolved fake{2, true, false, ids.session_trace(session_id), {}, false, -1};
    int first_prompt = kNone;
    std::string last_output;
    for (const Turn& t : turns) {
      if (!t.included || t.prompt == kNone) continue;
      if (first_prompt == kNone) first_prompt = t.prompt;
      if (!t.last_text.empty()) last_output = t.last_text;
    }
    const int anchor = first_prompt != kNone ? first_prompt : 0;
    Span s = make_span(fake, entries.empty() ? kNone : anchor, SpanKind::kTrace);
    s.span_id = ids.span("session", session_id);
    s.name = opt.trace_name;
    s.trace_name = opt.trace_name;
    if (first_prompt != kNone) s.input = entries[static_cast<std::size_t>(first_prompt)].text;
    if (!last_output.empty()) s.output = last_output;
    std::int64_t start = spans.front().start_ms, end = spans.front().end_ms;
    for (const Span& c : spans) {
      start = std::min(start, c.start_ms);
      end = std::max(end, c.end_ms);
    }
    s.start_ms = start;
    s.end_ms = end;
    add_trace_metadata(s, entries.empty() ? nullptr : &entries[static_cast<std::size_t>(anchor)]);
    push(std::move(s), -1);
  }

  void truncate_field(Span& s, std::optional<std::string>& field, const char* name) {
    if (!field || opt.max_field_bytes == 0 || field->size() <= opt.max_field_bytes) return;
    const std::string n(name);
    s.metadata.push_back(Attr::boolean(n + "_truncated", true));
    s.metadata.push_back(
        Attr::integer(n + "_original_bytes", static_cast<std::int64_t>(field->size())));
    s.metadata.push_back(Attr::string(n + "_sha256", sha256_hex(*field)));
    field->resize(mapper::utf8_cut(*field, opt.max_field_bytes));
  }

  // Parents before children; siblings by (start, span id); trees by turn order.
  void order_output(std::vector<Span>& out) {
    const std::vector<std::size_t> order = mapper::tree_order(spans, span_order);
    out.reserve(out.size() + order.size());
    for (std::size_t i : order) {
      Span& s = spans[i];
      // Spans whose parent was not emitted would be orphans: a mapping bug, never expected.
      apply_content_policy(s, opt.redactor, opt.no_content);  // before truncation and its sha256
      truncate_field(s, s.input, "input");
      // A tool span's tool_result is its output: cut it the same way, without a second set of
      // truncation metadata (the same sha256 and size twice).
      const bool result_is_output = s.tool_result && s.output && *s.tool_result == *s.output;
      truncate_field(s, s.output, "output");
      if (result_is_output) s.tool_result = s.output;
      else truncate_field(s, s.tool_result, "tool_result");
      mapper::apply_message_policy(s, opt.redactor, opt.no_content, opt.max_field_bytes);
      out.push_back(std::move(s));
    }
    stats.spans += order.size();
  }

  // An entry without a usable timestamp took its file's previous one in add_line(); the entries
  // before a file's first timestamp still have none. They take the file's first timestamp, or the
  // bundle's earliest when their file has none at all: never 0 (1970, which receivers refuse) and
  // never now() (which would differ between runs). A bundle without any timestamp keeps 0.
  void fill_leading_times() {
    constexpr std::int64_t kUnknown = std::numeric_limits<std::int64_t>::min();
    std::vector<std::int64_t> first(bundle.files.size(), kUnknown);
    std::int64_t earliest = kUnknown;
    for (const Entry& e : entries) {
      if (!e.has_ts) continue;
      if (e.file < first.size() && first[e.file] == kUnknown) first[e.file] = e.ts_ms;
      if (earliest == kUnknown || e.ts_ms < earliest) earliest = e.ts_ms;
    }
    if (earliest == kUnknown) return;
    std::vector<bool> seen(first.size(), false);
    for (Entry& e : entries) {
      if (e.file >= first.size() || seen[e.file]) continue;
      if (e.has_ts) {
        seen[e.file] = true;
        continue;
      }
      e.ts_ms = first[e.file] != kUnknown ? first[e.file] : earliest;
    }
  }

  void finish(std::vector<Span>& out) {
    fill_leading_times();
    find_session();
    find_title();
    assign_contexts();
    build_groups();
    link_agents();
    turn_res.assign(turns.size(), Resolved{});
    agent_res.assign(agents.size(), Resolved{});
    for (std::size_t t = 0; t < turns.size(); ++t) resolve_turn(static_cast<int>(t));
    for (std::size_t a = 0; a < agents.size(); ++a) resolve_agent(static_cast<int>(a));
    emit_generations();  // first: fills turn/agent final texts
    emit_tools();
    emit_events();  // before agents: compaction events parent the acompact agents
    emit_agents();
    emit_turns();
    mapper::extend_root_ends(spans);
    emit_session_root();
    order_output(out);
  }
};

BundleMapper::BundleMapper(const MapOptions& options, const Bundle& bundle, BadLineFn on_bad_line)
    : impl_(std::make_unique<Impl>(options, bundle, std::move(on_bad_line))) {}
BundleMapper::~BundleMapper() = default;

void BundleMapper::add_line(std::size_t file_index, std::string_view line,
                            std::size_t padded_capacity, std::uint64_t line_no,
                            std::uint64_t /*offset*/) {
  impl_->add_line(file_index, line, padded_capacity, line_no);
}

void BundleMapper::finish(std::vector<Span>& out) { impl_->finish(out); }

const MapStats& BundleMapper::stats() const noexcept { return impl_->stats; }

}  // namespace chsync
