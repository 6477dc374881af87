// BundleMapper: see mapper.h for the contract and docs/mapping.md for every mapping choice.
// Phases 1 and 2 of mapper_impl.h (entries, the structure of the bundle) and the output order;
// the spans themselves are built in mapper_spans.cpp.
#include "stages/mapper/mapper.h"

#include <algorithm>
#include <limits>
#include <regex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "stages/mapper/entry.h"
#include "stages/mapper/mapper_impl.h"
#include "stages/mapper/messages.h"
#include "stages/mapper/tree.h"
#include "stages/redact/redact.h"

namespace chsync {

using mapper::EntryType;
using mapper::is_command_output;
using mapper::is_prompt;
using mapper::ltrim;
using mapper::ParseStatus;
using mapper::starts_with;

BundleMapper::Impl::Impl(MapOptions o, Bundle b, BadLineFn fn)
    : opt(std::move(o)), bundle(std::move(b)), on_bad(std::move(fn)), user_id(opt.user_id) {
  last_ts.assign(bundle.files.size(), 0);
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

void BundleMapper::Impl::bad_line(std::size_t file, std::uint64_t line, std::string kind,
                                  std::string message) {
  if (!on_bad) return;
  BadLine b;
  b.file = file < bundle.files.size() ? bundle.files[file].display : std::string();
  b.line = line;
  b.kind = std::move(kind);
  b.message = std::move(message);
  on_bad(b);
}

void BundleMapper::Impl::add_line(std::size_t file, std::string_view line, std::size_t cap,
                                  std::uint64_t line_no) {
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

// The whole bundle is known: build its structure, then its spans, then put them in order.
void BundleMapper::Impl::finish(std::vector<Span>& out) {
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

bool BundleMapper::Impl::file_final(int f) const {
  if (f < 0 || static_cast<std::size_t>(f) >= bundle.files.size()) return true;
  const FileRef& r = bundle.files[static_cast<std::size_t>(f)];
  return !r.settles || opt.now_ms - r.mtime_ms >= opt.settle_ms;
}

bool BundleMapper::Impl::in_range(std::int64_t ts) const {
  if (opt.since_ms != 0 && ts < opt.since_ms) return false;
  if (opt.until_ms != 0 && ts > opt.until_ms) return false;
  return true;
}

void BundleMapper::Impl::find_session() {
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

void BundleMapper::Impl::find_title() {
  std::unordered_set<std::string> uuids;
  for (const Entry& e : entries)
    if (!e.uuid.empty()) uuids.insert(e.uuid);
  for (const Entry& e : entries) {
    if (e.type != EntryType::kSummary || e.summary.empty()) continue;
    if (uuids.contains(e.leaf_uuid)) {
      session_title = e.summary;
      return;
    }
    session_title = e.summary;  // else: the last summary line
  }
}

// Turns of the main file and agent streams (subagent files, 1.0.x inline sidechains).
void BundleMapper::Impl::assign_contexts() {
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
        ag.key = !fr.agent_id.empty() ? fr.agent_id : !e.agent_id.empty() ? e.agent_id : fr.display;
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
      int a = kNone;
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

std::string BundleMapper::Impl::tool_name_of(const std::string& id) const {
  auto it = tools.find(id);
  return it != tools.end() ? it->second.block->tool_name : std::string();
}

std::vector<const mapper::Entry*> BundleMapper::Impl::entries_of(
    const std::vector<int>& idx) const {
  std::vector<const Entry*> out;
  out.reserve(idx.size());
  for (int i : idx) out.push_back(&entries[static_cast<std::size_t>(i)]);
  return out;
}

void BundleMapper::Impl::build_groups() {
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
      if (b.type != Block::Type::kToolUse || b.tool_id.empty() || tools.contains(b.tool_id))
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

void BundleMapper::Impl::link_agents() {
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
            !task_used.contains(id) && !t.block->task_prompt.empty() &&
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
    if (it != by_agent_id.end() && tools.contains(it->second)) a.link_tool = it->second;
  }
}

// Trace, parent and finality of a context, following agent links up to a turn.
const BundleMapper::Impl::Resolved& BundleMapper::Impl::resolve_turn(int t) {
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
  r.trace = opt.trace_per_session ? ids.session_trace(session_id) : ids.turn_trace(session_id, key);
  r.parent = ids.span("turn", key);
  r.has_parent = true;
  return r;
}

const BundleMapper::Impl::Resolved& BundleMapper::Impl::resolve_agent(int a) {
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

void BundleMapper::Impl::truncate_field(Span& s, std::optional<std::string>& field,
                                        const char* name) {
  if (!field || opt.max_field_bytes == 0 || field->size() <= opt.max_field_bytes) return;
  const std::string n(name);
  s.metadata.push_back(Attr::boolean(n + "_truncated", true));
  s.metadata.push_back(
      Attr::integer(n + "_original_bytes", static_cast<std::int64_t>(field->size())));
  s.metadata.push_back(Attr::string(n + "_sha256", sha256_hex(*field)));
  field->resize(mapper::utf8_cut(*field, opt.max_field_bytes));
}

// Parents before children; siblings by (start, span id); trees by turn order.
void BundleMapper::Impl::order_output(std::vector<Span>& out) {
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
void BundleMapper::Impl::fill_leading_times() {
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
