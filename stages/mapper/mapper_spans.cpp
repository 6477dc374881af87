// Phase 3 of mapper_impl.h: the spans of one bundle and their metadata, built from the structure
// that finish() resolved (turns, API responses, tools, agents, system events). Every mapping
// choice is in docs/mapping.md.
#include <algorithm>
#include <string>
#include <string_view>

#include "pipeline/text.h"
#include "stages/mapper/entry.h"
#include "stages/mapper/mapper_impl.h"
#include "stages/mapper/messages.h"

namespace chsync {

using mapper::EntryType;
using mapper::ltrim;

namespace {

constexpr std::string_view kSchema = "chsync.span/1";
constexpr std::int64_t kMappingVersion =
    2;  // 2: GenAI span names, message parts, tool spans beside chat
constexpr std::size_t kStatusMessageBytes = 512;

std::string status_message(std::string_view s) {
  return std::string(s.substr(0, mapper::utf8_cut(s, kStatusMessageBytes)));
}

}  // namespace

Span BundleMapper::Impl::make_span(const Resolved& r, int entry, SpanKind kind) {
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

void BundleMapper::Impl::push(Span s, int order) {
  if (!span_keys.insert(s.span_key()).second) return;  // one span per id within a bundle
  if (s.end_ms < s.start_ms) s.end_ms = s.start_ms;
  spans.push_back(std::move(s));
  span_order.push_back(order);
}

void BundleMapper::Impl::add_trace_metadata(Span& s, const Entry* e) {
  s.metadata.push_back(Attr::string("session_id", session_id));
  if (e != nullptr) {
    if (!e->cwd.empty()) s.metadata.push_back(Attr::string("cwd", e->cwd));
    s.metadata.push_back(Attr::string("git_branch", e->git_branch));
    if (!e->version.empty()) s.metadata.push_back(Attr::string("cc_version", e->version));
  }
  if (!bundle.project.empty()) s.metadata.push_back(Attr::string("project", bundle.project));
  if (!session_title.empty()) s.metadata.push_back(Attr::string("session_title", session_title));
}

void BundleMapper::Impl::emit_generations() {
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
      s.metadata.push_back(Attr::string("agent_id", agents[static_cast<std::size_t>(c.index)].key));
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

void BundleMapper::Impl::emit_tools() {
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
      if (!re.tur_agent_id.empty()) s.metadata.push_back(Attr::string("agent_id", re.tur_agent_id));
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

void BundleMapper::Impl::emit_agents() {
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

void BundleMapper::Impl::emit_events() {
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

void BundleMapper::Impl::emit_turns() {
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

void BundleMapper::Impl::emit_session_root() {
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

}  // namespace chsync
