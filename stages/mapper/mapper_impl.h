// The per-bundle model behind BundleMapper (mapper.h), private to stages/mapper.
//
// One Impl maps one bundle, on one thread, in three phases:
//   1. add_line (mapper.cpp): every line is parsed into an Entry (bad lines counted and reported).
//   2. finish (mapper.cpp): the whole bundle is known; the structure is built from the entries:
//      turns of the main file and agent streams (subagent files, inline sidechains), one Group per
//      API response, tools by tool_use_id, agents linked to the Task call or compaction boundary
//      that started them, and per turn/agent its trace, parent span and finality (Resolved).
//   3. span building (mapper_spans.cpp): make_span/emit_* turn that structure into spans with
//      their metadata (docs/mapping.md); emit_* only read the structure, except that
//      emit_generations records each turn's and agent's final text for the spans emitted after
//      it. Then order_output (mapper.cpp) orders them parents first and applies the content
//      policy and field truncation.
// Indices: Turn, Group, Tool, Agent and Ctx refer to entries, turns and agents by their index in
// the vectors below (kNone: none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "pipeline/ids.h"
#include "stages/mapper/entry.h"
#include "stages/mapper/mapper.h"

namespace chsync {

struct BundleMapper::Impl {
  using Block = mapper::Block;
  using Entry = mapper::Entry;
  static constexpr int kNone = -1;

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

  // ---- phase 1: lines -> entries (mapper.cpp) ----
  MapOptions opt;
  Bundle bundle;
  BadLineFn on_bad;
  MapStats stats;
  mapper::EntryParser parser;
  IdHasher ids;
  std::vector<Entry> entries;
  std::vector<std::int64_t> last_ts;  // per file: timestamp fill for entries without one
  std::string user_id;

  Impl(MapOptions o, Bundle b, BadLineFn fn);
  void add_line(std::size_t file, std::string_view line, std::size_t cap, std::uint64_t line_no);
  void bad_line(std::size_t file, std::uint64_t line, std::string kind, std::string message);

  // ---- phase 2: the structure of the bundle (mapper.cpp) ----
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
  std::vector<std::pair<int, std::vector<int>>> pending_inputs;  // group -> its input entries
  std::vector<Resolved> turn_res, agent_res;
  std::string session_title;

  void finish(std::vector<Span>& out);
  void fill_leading_times();
  void find_session();
  void find_title();
  void assign_contexts();
  void build_groups();
  void link_agents();
  const Resolved& resolve_turn(int t);
  const Resolved& resolve_agent(int a);
  const Resolved& resolve_ctx(const Ctx& c) {
    return c.is_agent ? resolve_agent(c.index) : resolve_turn(c.index);
  }
  Ctx group_ctx(const Group& g) const { return ctx_of[static_cast<std::size_t>(g.ctx)]; }
  bool file_final(int f) const;
  bool in_range(std::int64_t ts) const;
  std::string tool_name_of(const std::string& id) const;
  std::vector<const Entry*> entries_of(const std::vector<int>& idx) const;

  // ---- phase 3: spans (mapper_spans.cpp), then their order and content policy (mapper.cpp) ----
  std::vector<Span> spans;
  std::vector<int> span_order;  // ordering key per span
  std::unordered_set<std::uint64_t> span_keys;

  Span make_span(const Resolved& r, int entry, SpanKind kind);
  void push(Span s, int order);
  void add_trace_metadata(Span& s, const Entry* e);
  void emit_generations();
  void emit_tools();
  void emit_agents();
  void emit_events();
  void emit_turns();
  void emit_session_root();
  void order_output(std::vector<Span>& out);
  void truncate_field(Span& s, std::optional<std::string>& field, const char* name);
};

}  // namespace chsync
