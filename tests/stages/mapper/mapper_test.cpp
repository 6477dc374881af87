// Rule-by-rule tests of the Mapper on hand-written fixtures (tests/data/fixtures/mapper).
#include <gtest/gtest.h>

#include "pipeline/ids.h"
#include "stages/mapper/entry.h"
#include "tests/stages/mapper/test_util.h"

namespace chsync::test {
namespace {

std::string fixture(const std::string& name) {
  return read_file(std::string(CHSYNC_SOURCE_DIR) + "/tests/data/fixtures/mapper/" + name);
}

std::int64_t ts(const char* s) {
  std::int64_t v = 0;
  EXPECT_TRUE(parse_rfc3339_ms(s, v));
  return v;
}

const Span* by_id(const MapResult& r, const SpanId& id) {
  for (const auto& s : r.spans)
    if (s.span_id == id) return &s;
  return nullptr;
}

std::vector<const Span*> of_kind(const MapResult& r, SpanKind k) {
  std::vector<const Span*> out;
  for (const auto& s : r.spans)
    if (s.kind == k) out.push_back(&s);
  return out;
}

MapResult map_one(const std::string& text, const MapOptions& o = final_options(),
                  const std::string& display = "proj/s.jsonl") {
  Bundle b;
  b.seq = 7;
  b.files.push_back(file_ref(display));
  return map_bundle(b, {text}, o);
}

void expect_no_orphans(const MapResult& r) {
  for (const auto& s : r.spans) {
    if (!s.has_parent) continue;
    const Span* p = by_id(r, s.parent_id);
    ASSERT_NE(p, nullptr) << dump(s);
    EXPECT_EQ(p->trace_id, s.trace_id) << dump(s);
  }
}

TEST(MapperTest, SplitResponseWithInterleavedParallelTools) {
  const MapResult r = map_one(fixture("split_parallel.jsonl"));
  IdHasher ids;
  expect_no_orphans(r);
  ASSERT_EQ(of_kind(r, SpanKind::kGeneration).size(), 2u);
  ASSERT_EQ(of_kind(r, SpanKind::kTrace).size(), 2u);
  EXPECT_EQ(r.stats.turns, 2u);

  const Span* root = by_id(r, ids.span("turn", "u1"));
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->trace_id, ids.turn_trace("s1", "u1"));
  EXPECT_EQ(root->name, "claude-code");  // --trace-name default: one stable root name
  EXPECT_EQ(root->trace_name, "claude-code");
  EXPECT_EQ(find_attr(*root, "turn_number")->num, 1);
  EXPECT_EQ(find_attr(*root, "prompt_preview")->str, "list files");
  EXPECT_EQ(root->input, "list files");
  EXPECT_EQ(root->output, "Here: a.txt");
  EXPECT_EQ(root->start_ms, ts("2025-01-01T00:00:00.000Z"));
  EXPECT_EQ(root->end_ms, ts("2025-01-01T00:00:05.000Z"));
  EXPECT_EQ(find_attr(*root, "schema")->str, "chsync.span/1");
  EXPECT_EQ(find_attr(*root, "mapping_version")->num, 2);
  EXPECT_EQ(find_attr(*root, "cwd")->str, "/p");
  EXPECT_EQ(find_attr(*root, "git_branch")->str, "main");
  EXPECT_EQ(find_attr(*root, "cc_version")->str, "2.0.37");
  EXPECT_EQ(root->source_file, "proj/s.jsonl");
  EXPECT_EQ(root->source_line, 1u);
  EXPECT_EQ(root->bundle_seq, 7u);

  const Span* a = by_id(r, ids.span("generation", "req_A"));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->parent_id, root->span_id);
  EXPECT_EQ(a->name, "chat claude-x");
  EXPECT_EQ(a->tokens_in, 115);
  EXPECT_EQ(a->tokens_out, 42);  // largest output_tokens, never summed
  EXPECT_TRUE(a->usage.final);
  EXPECT_EQ(a->usage.cache_creation_5m, 5);
  EXPECT_EQ(a->stop_reason, "tool_use");
  EXPECT_EQ(a->finish_reason, "tool_call");  // mapped to the OTel set; the raw value stays
  // Output parts follow the content blocks: reasoning, then the two tool calls (no signature).
  ASSERT_EQ(a->output_messages.size(), 1u);
  const auto& parts = a->output_messages[0].parts;
  ASSERT_GE(parts.size(), 3u);
  EXPECT_EQ(a->output_messages[0].role, "assistant");
  EXPECT_EQ(parts[0].type, MessagePart::Type::kReasoning);
  EXPECT_NE(parts[0].content.find("hmm"), std::string::npos);
  int calls = 0;
  for (const auto& p : parts)
    if (p.type == MessagePart::Type::kToolCall) {
      ++calls;
      EXPECT_FALSE(p.id.empty());
      EXPECT_FALSE(p.name.empty());
      EXPECT_EQ(p.content.front(), '{');  // the tool input as JSON
    }
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(a->input_messages.size(), 1u);
  EXPECT_EQ(a->input_messages[0].role, "user");
  EXPECT_EQ(a->input_messages[0].parts[0].content, "list files");
  EXPECT_EQ(a->response_id, "msg_A");
  EXPECT_EQ(a->start_ms, ts("2025-01-01T00:00:00.000Z"));  // the prompt triggered it
  EXPECT_EQ(a->end_ms, ts("2025-01-01T00:00:03.000Z"));
  EXPECT_EQ(a->source_line, 2u);
  EXPECT_NE(a->output->find("hmm"), std::string::npos);
  EXPECT_EQ(a->output->find("SECRET_SIG"), std::string::npos);
  EXPECT_NE(a->output->find("[tool_use Read toolu_2]"), std::string::npos);
  EXPECT_EQ(a->input, "list files");
  EXPECT_EQ(find_attr(*a, "input_mode")->str, "delta");
  EXPECT_EQ(find_attr(*a, "request_id")->str, "req_A");
  EXPECT_TRUE(find_attr(*a, "usage_final")->flag);
  EXPECT_EQ(find_attr(*a, "cache_creation_5m_input_tokens")->num, 5);

  const Span* b = by_id(r, ids.span("generation", "req_B"));
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->usage.final);  // no stop_reason anywhere: partial output count
  EXPECT_FALSE(find_attr(*b, "usage_final")->flag);
  EXPECT_EQ(b->start_ms, ts("2025-01-01T00:00:04.000Z"));
  EXPECT_NE(b->input->find("[tool_result Bash toolu_1]\na.txt"), std::string::npos);
  EXPECT_NE(b->input->find("[tool_result Read toolu_2 error]"), std::string::npos);
  EXPECT_EQ(b->finish_reason, "");  // no stop_reason and the last block is text: unknown
  // Tool results are tool_call_response parts, one "tool" message each, linked by id.
  ASSERT_EQ(b->input_messages.size(), 2u);
  EXPECT_EQ(b->input_messages[0].role, "tool");
  EXPECT_EQ(b->input_messages[0].parts[0].type, MessagePart::Type::kToolCallResponse);
  EXPECT_EQ(b->input_messages[0].parts[0].id, "toolu_1");
  EXPECT_EQ(b->input_messages[0].parts[0].name, "Bash");
  EXPECT_EQ(b->input_messages[0].parts[0].content, "a.txt");
  EXPECT_TRUE(b->input_messages[1].parts[0].is_error);

  const Span* t1 = by_id(r, ids.span("tool", "toolu_1"));
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->parent_id, root->span_id);  // beside the chat span, under the turn
  EXPECT_EQ(t1->tool_name, "Bash");
  EXPECT_EQ(t1->name, "execute_tool Bash");
  EXPECT_EQ(t1->input, R"({"command":"ls"})");
  EXPECT_TRUE(t1->input_is_json);
  EXPECT_EQ(t1->output, "a.txt");
  EXPECT_EQ(t1->tool_result, "a.txt");
  EXPECT_FALSE(t1->is_error);
  EXPECT_EQ(t1->start_ms, ts("2025-01-01T00:00:02.000Z"));
  EXPECT_EQ(t1->end_ms, t1->start_ms);  // result stamped earlier: clamped, never negative
  const Span* t2 = by_id(r, ids.span("tool", "toolu_2"));
  ASSERT_NE(t2, nullptr);
  EXPECT_TRUE(t2->is_error);
  EXPECT_EQ(t2->status_message, "Error: File does not exist.");
  EXPECT_EQ(t2->tool_result, "<tool_use_error>File does not exist.</tool_use_error>");

  // Parents come before children.
  for (std::size_t i = 0; i < r.spans.size(); ++i)
    for (std::size_t j = 0; j < i; ++j) EXPECT_NE(r.spans[j].parent_id, r.spans[i].span_id);
}

TEST(MapperTest, LastTurnHeldUntilSettled) {
  Bundle b;
  FileRef f = file_ref("s.jsonl");
  f.settles = true;
  f.mtime_ms = 1000000;
  b.files.push_back(f);
  MapOptions o;
  o.now_ms = 1000000 + 60000;  // changed a minute ago, settle 10 min
  MapResult r = map_bundle(b, {fixture("split_parallel.jsonl")}, o);
  EXPECT_EQ(r.stats.turns, 1u);
  EXPECT_EQ(r.stats.turns_held, 1u);
  IdHasher ids;
  EXPECT_EQ(by_id(r, ids.span("turn", "u2")), nullptr);
  EXPECT_NE(by_id(r, ids.span("turn", "u1")), nullptr);
  o.now_ms = 1000000 + 600000;
  r = map_bundle(b, {fixture("split_parallel.jsonl")}, o);
  EXPECT_EQ(r.stats.turns, 2u);
  EXPECT_EQ(r.stats.turns_held, 0u);
}

TEST(MapperTest, InlineSidechainsCompactionAndAcompact) {
  Bundle b;
  b.files.push_back(file_ref("p/s2.jsonl"));
  b.files.push_back(
      file_ref("p/s2/subagents/agent-acompact-abc123.jsonl", true, "acompact-abc123"));
  const MapResult r = map_bundle(b, {fixture("inline_sidechain.jsonl"), fixture("acompact.jsonl")},
                                 final_options());
  IdHasher ids;
  expect_no_orphans(r);
  EXPECT_EQ(r.stats.turns, 1u);  // the compaction summary is not a turn
  const TraceId trace = ids.turn_trace("s2", "u1");
  for (const auto& s : r.spans) EXPECT_EQ(s.trace_id, trace) << dump(s);

  const Span* ag_a = by_id(r, ids.span("agent", "toolu_T1"));
  const Span* ag_b = by_id(r, ids.span("agent", "toolu_T2"));
  ASSERT_NE(ag_a, nullptr);
  ASSERT_NE(ag_b, nullptr);
  EXPECT_EQ(ag_a->parent_id, ids.span("tool", "toolu_T1"));
  EXPECT_EQ(ag_b->parent_id, ids.span("tool", "toolu_T2"));
  EXPECT_EQ(ag_a->kind, SpanKind::kAgent);
  EXPECT_EQ(ag_a->name, "invoke_agent general-purpose");
  EXPECT_EQ(ag_a->input, "Do A");
  EXPECT_EQ(ag_a->output, "A done");
  EXPECT_EQ(by_id(r, ids.span("generation", "req_sa"))->parent_id, ag_a->span_id);
  EXPECT_EQ(by_id(r, ids.span("generation", "req_sb"))->parent_id, ag_b->span_id);
  const Span* task = by_id(r, ids.span("tool", "toolu_T1"));
  EXPECT_EQ(find_attr(*task, "task_total_tokens")->num, 10);

  const Span* ev = by_id(r, ids.span("event", "sys1"));
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->kind, SpanKind::kEvent);
  EXPECT_EQ(ev->name, "compaction");
  EXPECT_EQ(ev->output, "This session is being continued. Summary: stuff");
  EXPECT_EQ(find_attr(*ev, "trigger")->str, "auto");
  EXPECT_EQ(find_attr(*ev, "pre_tokens")->num, 1234);
  const Span* comp = by_id(r, ids.span("agent", "acompact-abc123"));
  ASSERT_NE(comp, nullptr);
  EXPECT_EQ(comp->parent_id, ev->span_id);
  EXPECT_EQ(find_attr(*comp, "unlinked"), nullptr);
  EXPECT_EQ(by_id(r, ids.span("generation", "req_c"))->parent_id, comp->span_id);
  EXPECT_EQ(find_attr(*by_id(r, ids.span("turn", "u1")), "session_title")->str, "Todo app");
}

TEST(MapperTest, SubagentFilesWorkflowsAndWarmup) {
  Bundle b;
  b.files.push_back(file_ref("p/s3.jsonl"));
  b.files.push_back(file_ref("p/s3/subagents/agent-a111111.jsonl", true, "a111111"));
  b.files.push_back(file_ref("p/s3/subagents/workflows/wf1/agent-a222222.jsonl", true, "a222222"));
  b.files.push_back(file_ref("p/agent-deadbeef.jsonl", true, "deadbeef"));
  const MapResult r = map_bundle(b,
                                 {fixture("subagent_main.jsonl"), fixture("subagent_a111111.jsonl"),
                                  fixture("subagent_a222222.jsonl"), fixture("warmup_agent.jsonl")},
                                 final_options());
  IdHasher ids;
  expect_no_orphans(r);
  const TraceId trace = ids.turn_trace("s3", "u1");
  const Span* a1 = by_id(r, ids.span("agent", "a111111"));
  ASSERT_NE(a1, nullptr);
  EXPECT_EQ(a1->trace_id, trace);
  EXPECT_EQ(a1->parent_id, ids.span("tool", "toolu_A"));
  EXPECT_EQ(a1->agent_id, "a111111");
  EXPECT_EQ(a1->name, "invoke_agent Explore");
  // The agent_progress copy (999 tokens) never becomes a generation.
  const Span* g = by_id(r, ids.span("generation", "req_s1"));
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->tokens_in, 4);
  EXPECT_EQ(g->parent_id, a1->span_id);
  EXPECT_EQ(g->source_file, "p/s3/subagents/agent-a111111.jsonl");
  const Span* task = by_id(r, ids.span("tool", "toolu_A"));
  EXPECT_EQ(find_attr(*task, "task_total_tokens")->num, 33854);  // metadata only

  const Span* a2 = by_id(r, ids.span("agent", "a222222"));
  ASSERT_NE(a2, nullptr);
  EXPECT_EQ(a2->trace_id, trace);
  const Span* inner = by_id(r, ids.span("tool", "toolu_inner"));
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->parent_id, a2->span_id);
  EXPECT_EQ(inner->trace_id, trace);
  EXPECT_EQ(inner->output, "x.c");

  const Span* warm = by_id(r, ids.span("agent", "deadbeef"));
  ASSERT_NE(warm, nullptr);
  EXPECT_FALSE(warm->has_parent);
  EXPECT_EQ(warm->trace_id, ids.turn_trace("s3", "agent:deadbeef"));
  EXPECT_TRUE(find_attr(*warm, "unlinked")->flag);
  EXPECT_TRUE(find_attr(*warm, "warmup")->flag);
  EXPECT_EQ(r.stats.agents, 3u);
  EXPECT_EQ(r.stats.agents_unlinked, 1u);
  EXPECT_EQ(r.stats.generations, 4u);
}

TEST(MapperTest, TracePerSession) {
  MapOptions o = final_options();
  o.trace_per_session = true;
  const MapResult r = map_one(fixture("split_parallel.jsonl"), o);
  IdHasher ids;
  expect_no_orphans(r);
  const TraceId trace = ids.session_trace("s1");
  for (const auto& s : r.spans) EXPECT_EQ(s.trace_id, trace);
  ASSERT_EQ(of_kind(r, SpanKind::kTrace).size(), 1u);
  const Span& root = r.spans.front();
  EXPECT_EQ(root.span_id, ids.span("session", "s1"));
  EXPECT_EQ(root.kind, SpanKind::kTrace);
  EXPECT_FALSE(root.has_parent);
  const Span* t1 = by_id(r, ids.span("turn", "u1"));
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->kind, SpanKind::kSpan);
  EXPECT_FALSE(t1->tool_name.has_value());
  EXPECT_EQ(t1->parent_id, root.span_id);
  EXPECT_EQ(root.end_ms, ts("2025-01-01T00:01:00.000Z"));
}

std::string prompt_line(const std::string& uuid, const std::string& when, const std::string& text) {
  std::string s = R"({"type":"user","uuid":")" + uuid +
                  R"(","parentUuid":null,"sessionId":"s9","timestamp":")" + when +
                  R"(","message":{"role":"user","content":)";
  mapper::append_json_string(s, text);
  return s + "}}\n";
}

std::string text_line(const std::string& uuid, const std::string& when, const std::string& msg,
                      const std::string& block, const char* stop = "null",
                      const char* model = "m") {
  return R"({"type":"assistant","uuid":")" + uuid + R"(","sessionId":"s9","timestamp":")" + when +
         R"(","requestId":"req_)" + msg + R"(","message":{"id":"msg_)" + msg + R"(","model":")" +
         model + R"(","content":[)" + block + R"(],"stop_reason":)" + stop +
         R"(,"usage":{"input_tokens":1,"output_tokens":2}}})" + "\n";
}

TEST(MapperTest, ReplayedEntriesAfterResumeGiveOneSpan) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "hi");
  t += text_line("a1", "2025-01-01T00:00:01.000Z", "X", R"({"type":"text","text":"hello"})");
  // Resume replays the turn with fresh uuids but the original ids and content.
  t += prompt_line("u1b", "2025-01-01T00:00:00.000Z", "hi");
  t += text_line("a1b", "2025-01-01T00:05:00.000Z", "X", R"({"type":"text","text":"hello"})");
  t += prompt_line("u2", "2025-01-01T00:06:00.000Z", "next");
  const MapResult r = map_one(t);
  expect_no_orphans(r);
  EXPECT_EQ(r.stats.turns, 2u);
  const auto gens = of_kind(r, SpanKind::kGeneration);
  ASSERT_EQ(gens.size(), 1u);
  EXPECT_EQ(gens[0]->output, "hello");
  EXPECT_EQ(gens[0]->end_ms, ts("2025-01-01T00:00:01.000Z"));
}

TEST(MapperTest, EntriesBeforeTheFirstTimestampTakeIt) {
  // The first prompt has an unparsable timestamp: its turn must not start in 1970 (a receiver
  // refuses that) nor at now() (runs would differ); it takes the file's first known time.
  std::string t = prompt_line("u1", "", "hi");
  t += text_line("a1", "2025-01-01T00:00:01.000Z", "X", R"({"type":"text","text":"hello"})");
  t += prompt_line("u2", "2025-01-01T00:06:00.000Z", "next");
  const MapResult r = map_one(t);
  expect_no_orphans(r);
  ASSERT_FALSE(r.spans.empty());
  for (const Span& s : r.spans) {
    EXPECT_GE(s.start_ms, ts("2025-01-01T00:00:01.000Z")) << s.name;
    EXPECT_GE(s.end_ms, s.start_ms) << s.name;
  }
  EXPECT_GE(r.stats.turns, 1u);
}

TEST(MapperTest, UnfinishedToolInFinalTurn) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "run");
  t += text_line(
      "a1", "2025-01-01T00:00:01.000Z", "X",
      R"({"type":"tool_use","id":"toolu_z","name":"Bash","input":{"command":"sleep 9"}})");
  const MapResult r = map_one(t);
  IdHasher ids;
  const Span* tool = by_id(r, ids.span("tool", "toolu_z"));
  ASSERT_NE(tool, nullptr);
  EXPECT_TRUE(find_attr(*tool, "unfinished")->flag);
  EXPECT_FALSE(tool->is_error);
  EXPECT_FALSE(tool->tool_result.has_value());
}

TEST(MapperTest, SyntheticApiErrorHasNoUsage) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "hi");
  std::string line = text_line("a1", "2025-01-01T00:00:01.000Z", "E",
                               R"({"type":"text","text":"API Error: 529 overloaded"})",
                               "\"stop_sequence\"", "<synthetic>");
  line.insert(1, R"("isApiErrorMessage":true,)");
  t += line;
  const MapResult r = map_one(t);
  const auto gens = of_kind(r, SpanKind::kGeneration);
  ASSERT_EQ(gens.size(), 1u);
  EXPECT_TRUE(gens[0]->is_error);
  EXPECT_EQ(gens[0]->tokens_in, 0);
  EXPECT_EQ(gens[0]->tokens_out, 0);
  EXPECT_FALSE(gens[0]->usage.present);
  EXPECT_EQ(gens[0]->status_message, "API Error: 529 overloaded");
}

TEST(MapperTest, TruncationCutsAtUtf8Boundary) {
  std::string text = "ab";
  for (int i = 0; i < 10; ++i) text += "\xC3\xA9";  // é, 2 bytes each
  MapOptions o = final_options();
  o.max_field_bytes = 5;  // "ab" + é + half of é -> cut to 4 bytes
  const MapResult r = map_one(prompt_line("u1", "2025-01-01T00:00:00.000Z", text), o);
  ASSERT_EQ(r.spans.size(), 1u);
  const Span& s = r.spans[0];
  EXPECT_EQ(*s.input, "ab\xC3\xA9");
  EXPECT_TRUE(find_attr(s, "input_truncated")->flag);
  EXPECT_EQ(find_attr(s, "input_original_bytes")->num, 22);
  EXPECT_EQ(find_attr(s, "input_sha256")->str, sha256_hex(text));
  EXPECT_EQ(find_attr(s, "output_truncated"), nullptr);
}

TEST(MapperTest, InvalidUtf8IsReplacedAndCounted) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "bad \xFF byte");
  const MapResult r = map_one(t);
  EXPECT_EQ(r.stats.bad_lines_utf8, 1u);
  ASSERT_EQ(r.bad.size(), 1u);
  EXPECT_EQ(r.bad[0].kind, "utf8");
  ASSERT_EQ(r.spans.size(), 1u);
  EXPECT_EQ(*r.spans[0].input, "bad \xEF\xBF\xBD byte");
}

TEST(MapperTest, MalformedLineIsReportedAndSkipped) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "one");
  t += "{\"type\":\"user\",\"message\":\n";
  t += "[1,2]\n";
  t += text_line("a1", "2025-01-01T00:00:01.000Z", "X", R"({"type":"text","text":"ok"})");
  const MapResult r = map_one(t, final_options(), "dir/x.jsonl");
  EXPECT_EQ(r.stats.bad_lines_json, 1u);
  EXPECT_EQ(r.stats.bad_lines_schema, 1u);
  ASSERT_EQ(r.bad.size(), 2u);
  EXPECT_EQ(r.bad[0].kind, "json");
  EXPECT_EQ(r.bad[0].file, "dir/x.jsonl");
  EXPECT_EQ(r.bad[0].line, 2u);
  EXPECT_EQ(r.bad[1].kind, "schema");
  EXPECT_EQ(of_kind(r, SpanKind::kGeneration).size(), 1u);
}

TEST(MapperTest, NonPromptUserEntriesDoNotStartTurns) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "go");
  t += prompt_line("u2", "2025-01-01T00:00:01.000Z", "[Request interrupted by user]");
  t += prompt_line("u3", "2025-01-01T00:00:02.000Z",
                   "<local-command-stdout>ok</local-command-stdout>");
  std::string meta = prompt_line("u4", "2025-01-01T00:00:03.000Z", "Caveat: ...");
  meta.insert(1, R"("isMeta":true,)");
  t += meta;
  t += prompt_line("u5", "2025-01-01T00:00:04.000Z", "<command-name>/model</command-name>");
  const MapResult r = map_one(t);
  EXPECT_EQ(r.stats.turns, 2u);  // "go" and the typed slash command
  IdHasher ids;
  EXPECT_EQ(by_id(r, ids.span("turn", "u1"))->output,
            "<local-command-stdout>ok</local-command-stdout>");
}

TEST(MapperTest, SinceUntilFilterTurnsByPromptTime) {
  std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "a");
  t += prompt_line("u2", "2025-01-02T00:00:00.000Z", "b");
  t += prompt_line("u3", "2025-01-03T00:00:00.000Z", "c");
  MapOptions o = final_options();
  o.since_ms = ts("2025-01-01T12:00:00.000Z");
  o.until_ms = ts("2025-01-02T12:00:00.000Z");
  const MapResult r = map_one(t, o);
  ASSERT_EQ(r.spans.size(), 1u);
  EXPECT_EQ(r.spans[0].input, "b");
}

TEST(MapperTest, UserIdFromOptionOrPath) {
  const std::string t = prompt_line("u1", "2025-01-01T00:00:00.000Z", "a");
  MapOptions o = final_options();
  o.user_from_path_regex = "^/home/([^/]+)/";
  Bundle b;
  FileRef f = file_ref("proj/s.jsonl");
  f.key = f.path = "/home/alice/.claude/projects/proj/s.jsonl";
  b.files.push_back(f);
  EXPECT_EQ(map_bundle(b, {t}, o).spans.at(0).user_id, "alice");
  o.user_id = "bob";
  EXPECT_EQ(map_bundle(b, {t}, o).spans.at(0).user_id, "bob");
}

TEST(MapperTest, SeedMessageHash) {
  const std::string line =
      R"({"type":"user","sessionId":"s","timestamp":"2025-01-01T00:00:00.000Z","uuid":"u","message":{"role":"user","content":"x\"y"}})";
  std::string hex;
  ASSERT_TRUE(seed_message_hash(line, hex));
  // The seed's recipe, computed outside chsync (coreutils):
  //   printf '%s' 'users2025-01-01T00:00:00.000Zu{"role":"user","content":"x\"y"}' | sha256sum
  // first 32 hex characters. The whole real corpus is checked against the seed tool's own output
  // in corpus_test.cpp (SeedVectors).
  EXPECT_EQ(hex, "4d061bdd410340e8c84bdb201daeae86");
  EXPECT_FALSE(seed_message_hash("[1]", hex));
  EXPECT_FALSE(seed_message_hash("{", hex));
  MapOptions o = final_options();
  o.message_hash = true;
  const MapResult r = map_one(line + "\n", o);
  ASSERT_EQ(r.spans.size(), 1u);
  EXPECT_EQ(find_attr(r.spans[0], "message_hash")->str, hex);
}

TEST(MapperTest, RepairUtf8Rules) {
  std::string out;
  EXPECT_FALSE(mapper::repair_utf8("plain é", out));
  EXPECT_TRUE(mapper::repair_utf8("a\xE2\x82z", out));  // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(out, "a\xEF\xBF\xBDz");
  EXPECT_TRUE(mapper::repair_utf8("\xED\xA0\x80", out));  // surrogate: each byte invalid
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(mapper::utf8_cut("ab\xC3\xA9", 3), 2u);
  EXPECT_EQ(mapper::utf8_cut("ab\xC3\xA9", 4), 4u);
}

}  // namespace
}  // namespace chsync::test
