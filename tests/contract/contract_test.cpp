// Backend contract tests. chsync's real output for the real transcripts in tests/data/real is read
// back the way each backend documents reading it (backend_models.h), and the stored result is
// asserted: Langfuse (OTel path and legacy events), Phoenix (OpenInference) and GenAI-aware
// backends (gen_ai.* messages). Golden files (tests/data/golden/<backend>.txt) show one real
// transcript as each backend would display it; CHSYNC_UPDATE_GOLDEN=1 rewrites them.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "backends/langfuse_legacy/langfuse_legacy.h"
#include "backends/otlp/otlp_exporter.h"
#include "backends/otlp/otlp_proto.h"
#include "stages/discover/discover.h"
#include "stages/mapper/mapper.h"
#include "stages/redact/redact.h"
#include "tests/contract/backend_models.h"

namespace chsync::contract {
namespace {

namespace fs = std::filesystem;
using otlp::Profile;

const std::string kRealDir = std::string(CHSYNC_SOURCE_DIR) + "/tests/data/real";
const std::string kGoldenDir = std::string(CHSYNC_SOURCE_DIR) + "/tests/data/golden";
const std::string kGoldenInput =
    "-experiments-worktrees/ef958aa1-0e93-49f0-bb71-150f63befcd1.jsonl";  // with 6 subagents

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

MapOptions options() {
  MapOptions o;
  o.now_ms = 4102444800000;  // 2100: every file has settled
  o.settle_ms = 0;
  o.user_id = "dev@example.com";
  return o;
}

std::vector<Span> map_bundle(const Bundle& b, const MapOptions& o) {
  BundleMapper m(o, b, nullptr);
  for (std::size_t f = 0; f < b.files.size(); ++f) {
    const std::string text = read_all(b.files[f].path);
    std::uint64_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(pos, nl - pos);
      const std::size_t n = line.size();
      line.append(64, '\0');
      m.add_line(f, std::string_view(line.data(), n), line.size(), ++line_no, pos);
      pos = nl + 1;
    }
  }
  std::vector<Span> out;
  m.finish(out);
  return out;
}

bool is_golden_input(const Bundle& b) {
  if (b.files.empty()) return false;
  const std::string& d = b.files.front().display;
  return d.size() >= kGoldenInput.size() &&
         d.compare(d.size() - kGoldenInput.size(), kGoldenInput.size(), kGoldenInput) == 0;
}

std::vector<Bundle> corpus_bundles() {
  DiscoverResult r = discover({kRealDir}, DiscoverOptions{});
  return r.bundles;
}

// Every span of the corpus, mapped once per process (the corpus is 24 MB).
const std::vector<Span>& corpus_spans() {
  static const std::vector<Span> spans = [] {
    std::vector<Span> all;
    for (const Bundle& b : corpus_bundles())
      for (Span& s : map_bundle(b, options())) all.push_back(std::move(s));
    return all;
  }();
  return spans;
}

// The resource an exporter of this profile really sends (its constructor builds it; no request
// is made).
class NoTransport final : public http::Transport {
 public:
  void post(http::Request /*req*/, http::ResponseFn /*done*/) override {
    ADD_FAILURE() << "no request expected";
  }
  void schedule(std::chrono::milliseconds /*delay*/, std::function<void(bool)> fn) override {
    fn(true);
  }
  void cancel_all() override {}
  void shutdown() noexcept override {}
};

Attrs exporter_resource(Profile p, const std::string& environment) {
  otlp::OtlpOptions o;
  o.profile = p;
  o.environment = environment;
  otlp::OtlpExporter exp(o, *http::parse_url("http://127.0.0.1:9/v1/traces"),
                         std::make_unique<NoTransport>());
  pbv1::Resource res;
  EXPECT_TRUE(res.ParseFromString(exp.resource_bytes()));
  return attrs_of(res.attributes());
}

// Encodes spans as one OTLP/protobuf request and decodes it with libprotobuf (the wire bytes).
std::vector<pbv1::Span> wire(const std::vector<Span>& spans, Profile p,
                             std::vector<std::string> tags = {}) {
  otlp::SpanEncoder enc(otlp::EncoderOptions(p, true, std::move(tags)));
  std::string blob, body;
  for (const Span& s : spans) enc.append_span(s, blob);
  otlp::build_request(otlp::encode_resource({{"service.name", "claude-code"}}),
                      otlp::encode_scope("chsync", "x"), blob, body);
  pbv1::ExportTraceServiceRequest req;
  EXPECT_TRUE(req.ParseFromString(body));
  std::vector<pbv1::Span> out;
  for (const auto& rs : req.resource_spans())
    for (const auto& ss : rs.scope_spans())
      for (const auto& s : ss.spans()) out.push_back(s);
  return out;
}

bool is_root(const Span& s) {
  return s.kind == SpanKind::kTrace || (s.kind == SpanKind::kAgent && !s.has_parent);
}
bool is_tool(const Span& s) { return s.kind == SpanKind::kSpan && s.tool_name.has_value(); }

std::size_t tool_calls_of(const Span& s) {
  std::size_t n = 0;
  for (const auto& m : s.output_messages)
    for (const auto& p : m.parts) n += p.type == MessagePart::Type::kToolCall;
  return n;
}

bool valid_json(const std::string& text) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  return !p.parse(text).get(e);
}

// ---- Langfuse (OTel endpoint) ----------------------------------------------------------------

TEST(LangfuseContract, EverySpanOfTheCorpusBecomesTheObservationLangfuseShouldStore) {
  const auto& spans = corpus_spans();
  ASSERT_GT(spans.size(), 1000u);
  const Attrs res = exporter_resource(Profile::kLangfuse, "ci");
  const auto pb = wire(spans, Profile::kLangfuse, {"team-a"});
  ASSERT_EQ(pb.size(), spans.size());
  std::set<std::string> trace_ids, traces_with_name, traces_updated;
  std::map<std::string, std::set<std::string>> tool_ids_by_trace, called_ids_by_trace;
  std::size_t generations = 0, with_tool_calls = 0, tool_responses = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    const LangfuseObservation o = langfuse_ingest(pb[i], res);
    SCOPED_TRACE(s.source_file + ":" + std::to_string(s.source_line) + " " + s.name);
    trace_ids.insert(o.trace_id);
    // type
    const std::string want = s.kind == SpanKind::kGeneration ? "GENERATION"
                             : s.kind == SpanKind::kEvent    ? "EVENT"
                             : is_tool(s)                    ? "TOOL"
                             : s.kind == SpanKind::kSpan     ? "SPAN"
                                                             : "AGENT";
    EXPECT_EQ(o.type, want);
    // name: Langfuse names tools by gen_ai.tool.name
    EXPECT_EQ(o.name, is_tool(s) ? *s.tool_name : s.name);
    // environment from the resource, no version (chsync's build must not appear as `version`)
    EXPECT_EQ(o.environment, "ci");
    EXPECT_FALSE(o.version.has_value());
    EXPECT_EQ(o.level, s.is_error ? "ERROR" : "DEFAULT");
    // metadata once: nothing left over for metadata.attributes but the content-free GenAI keys
    for (const auto& k : o.unmapped) EXPECT_NE(k.rfind("chsync.", 0), 0u) << k;
    if (o.trace_update) traces_updated.insert(o.trace_id + "/" + o.id);
    if (is_root(s)) {
      EXPECT_TRUE(o.is_root);
      ASSERT_TRUE(o.trace_name.has_value());
      EXPECT_EQ(*o.trace_name, "claude-code");
      traces_with_name.insert(o.trace_id);
      EXPECT_EQ(o.session_id.value_or(""), s.session_id);
      EXPECT_EQ(o.user_id.value_or(""), "dev@example.com");
      EXPECT_EQ(o.tags, (std::vector<std::string>{"claude-code", "team-a"}));
      const Attr* v = nullptr;
      for (const Attr& a : s.metadata)
        if (a.key == "cc_version") v = &a;
      if (v) {
        EXPECT_EQ(o.release.value_or(""), v->str);
      }
      if (s.input) {
        EXPECT_EQ(o.trace_input.value_or(""), *s.input);
      }
      if (s.output) {
        EXPECT_EQ(o.trace_output.value_or(""), *s.output);
      }
    } else {
      EXPECT_FALSE(o.trace_update) << "a non-root span updates its trace";
      EXPECT_FALSE(o.session_id.has_value());
    }
    if (s.kind == SpanKind::kGeneration) {
      ++generations;
      if (s.model) {
        EXPECT_EQ(o.model, *s.model);
      }
      if (s.usage.present) {
        EXPECT_EQ(o.usage.at("input"), s.usage.input_tokens);
        EXPECT_EQ(o.usage.at("output"), s.usage.output_tokens);
        EXPECT_EQ(o.usage.at("cache_read_input_tokens"), s.usage.cache_read_input_tokens);
      }
      // Input and output are chat messages; tool calls are in the output, where Langfuse finds
      // them.
      if (o.input) {
        EXPECT_TRUE(valid_json(*o.input)) << *o.input;
      }
      ASSERT_TRUE(o.output.has_value());
      EXPECT_TRUE(valid_json(*o.output));
      EXPECT_EQ(o.tool_call_names.size(), tool_calls_of(s));
      with_tool_calls += !o.tool_call_names.empty();
      for (const auto& id : o.tool_call_ids) called_ids_by_trace[o.trace_id].insert(id);
      for (const auto& m : s.input_messages) tool_responses += m.role == "tool";
      if (!s.finish_reason.empty()) {
        EXPECT_EQ(o.metadata.contains("finish_reason") ? o.metadata.at("finish_reason") : "",
                  s.finish_reason);
      }
    }
    if (is_tool(s)) tool_ids_by_trace[o.trace_id].insert(s.tool_use_id);
  }
  EXPECT_EQ(traces_with_name.size(), trace_ids.size()) << "every trace gets a name";
  EXPECT_EQ(traces_updated.size(), traces_with_name.size()) << "one trace update per trace";
  EXPECT_GT(with_tool_calls, generations / 4);
  EXPECT_GT(tool_responses, 100u);
  // Every tool observation is linked to the tool call of a generation in its trace (by id).
  for (const auto& [trace, ids] : tool_ids_by_trace)
    for (const auto& id : ids)
      EXPECT_TRUE(called_ids_by_trace[trace].count(id)) << trace << " " << id;
}

TEST(LangfuseContract, EnvironmentDefaultsAndLegacyTraceForEveryRoot) {
  const auto& spans = corpus_spans();
  const Attrs res = exporter_resource(Profile::kLangfuse, "");
  const auto pb = wire({spans.front()}, Profile::kLangfuse);
  EXPECT_EQ(langfuse_ingest(pb[0], res).environment, "default");

  // Legacy: a trace-create for every trace id, so no observation's tokens fall outside a trace.
  std::set<std::string> traces, created;
  std::size_t typed = 0;
  for (const Span& s : spans) {
    traces.insert(to_hex(s.trace_id));
    const auto evs = langfuse::legacy_events(s, langfuse::EventOptions{"ci", {"team-a"}, true},
                                             "2026-01-01T00:00:00.000Z");
    for (const auto& e : evs) {
      simdjson::dom::parser p;
      simdjson::dom::element el;
      ASSERT_FALSE(p.parse(e).get(el)) << e;
      std::string_view type = el["type"].get_string().value();
      if (type == "trace-create") {
        created.insert(std::string(el["body"]["id"].get_string().value()));
        EXPECT_EQ(el["body"]["name"].get_string().value(), "claude-code");
        EXPECT_EQ(el["body"]["tags"].at(1).get_string().value(), "team-a");
        EXPECT_EQ(el["body"]["environment"].get_string().value(), "ci");
      }
      if (type == "tool-create") {
        ++typed;
        EXPECT_TRUE(is_tool(s));
      }
      if (type == "agent-create") {
        EXPECT_TRUE(s.kind == SpanKind::kAgent || s.kind == SpanKind::kTrace);
      }
    }
  }
  EXPECT_EQ(created, traces);
  EXPECT_GT(typed, 0u);
}

// ---- OpenInference (Phoenix) -----------------------------------------------------------------

// Issue 19: a profile sends what its backend reads, and no content value twice in one span (the
// Langfuse root used to carry its prompt and answer as observation I/O and again as trace I/O,
// which Langfuse copies from the root observation anyway).
TEST(ContentPolicy, NoSpanCarriesTheSameContentTwice) {
  for (Profile p : {Profile::kGeneric, Profile::kLangfuse, Profile::kPhoenix}) {
    std::size_t checked = 0;
    for (const auto& w : wire(corpus_spans(), p)) {
      std::map<std::string, std::string> seen;  // value -> first key
      for (const auto& kv : w.attributes()) {
        if (!kv.value().has_string_value()) continue;
        const std::string& v = kv.value().string_value();
        if (v.size() < 64) continue;  // names, ids, short labels may repeat legitimately
        // Two messages of a conversation may say the same thing (data, not duplication); the
        // prompt preview is an 80-byte label.
        if (kv.key().find("_messages.") != std::string::npos ||
            kv.key().ends_with("prompt_preview"))
          continue;
        ++checked;
        auto [it, fresh] = seen.emplace(v, kv.key());
        EXPECT_TRUE(fresh) << "profile " << static_cast<int>(p) << " span " << w.name() << ": "
                           << kv.key() << " repeats " << it->second << " (" << v.size()
                           << " bytes)";
      }
    }
    EXPECT_GT(checked, 1000u) << "profile " << static_cast<int>(p);
  }
}

TEST(OpenInferenceContract, EverySpanReadsAsOpenInference) {
  const auto& spans = corpus_spans();
  const auto pb = wire(spans, Profile::kPhoenix);
  std::size_t llm_with_messages = 0, tool_calls = 0, llm = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    const OiSpan o = openinference_read(pb[i]);
    SCOPED_TRACE(s.source_file + ":" + std::to_string(s.source_line) + " " + s.name);
    EXPECT_TRUE(o.problems.empty()) << o.problems.front();
    static const std::set<std::string> kKinds = {"LLM", "TOOL", "AGENT", "CHAIN"};
    EXPECT_TRUE(kKinds.count(o.kind)) << o.kind;
    EXPECT_EQ(o.session_id.value_or(""), s.session_id);
    ASSERT_TRUE(o.metadata.has_value());
    EXPECT_TRUE(valid_json(*o.metadata));
    for (const auto& kv : pb[i].attributes())
      EXPECT_NE(kv.key().rfind("gen_ai.", 0), 0u) << kv.key();
    if (o.kind == "AGENT") {
      EXPECT_FALSE(o.agent_name.value_or("").empty());
    }
    if (s.kind == SpanKind::kGeneration) {
      ++llm;
      if (s.model) {
        EXPECT_EQ(o.model, *s.model);
      }
      if (s.usage.present) {
        EXPECT_EQ(o.prompt, s.usage.prompt_total());
        EXPECT_EQ(o.total, o.prompt + o.completion);
        EXPECT_EQ(o.cache_read, s.usage.cache_read_input_tokens);
        EXPECT_EQ(o.cache_write, s.usage.cache_creation_input_tokens);
      }
      EXPECT_EQ(o.input_messages.size(), s.input_messages.size());
      ASSERT_EQ(o.output_messages.size(), s.output_messages.size());
      llm_with_messages += !o.input_messages.empty() || !o.output_messages.empty();
      for (const auto& m : o.output_messages) {
        EXPECT_EQ(m.role, "assistant");
        for (const auto& [name, args] : m.tool_calls) {
          EXPECT_FALSE(name.empty());
          EXPECT_TRUE(valid_json(args)) << args;
          ++tool_calls;
        }
      }
      for (const auto& m : o.input_messages)
        if (m.role == "tool") {
          EXPECT_FALSE(m.tool_call_id.empty());
        }
      if (!s.finish_reason.empty()) {
        EXPECT_EQ(o.finish_reason.value_or(""), s.finish_reason);
      }
    } else {
      if (s.input) {
        EXPECT_EQ(o.input_value.value_or(""), *s.input);
      }
      if (o.input_value) {
        EXPECT_TRUE(o.input_mime == "text/plain" || o.input_mime == "application/json");
      }
    }
  }
  EXPECT_GT(llm_with_messages, llm * 9 / 10);
  EXPECT_GT(tool_calls, 500u);
}

// ---- GenAI conventions (generic OTLP) ----------------------------------------------------------

TEST(GenAiContract, MessagesFollowTheSchemaAndNamesTheConventions) {
  const auto& spans = corpus_spans();
  const auto pb = wire(spans, Profile::kGeneric);
  std::size_t finish = 0, gens = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    const Attrs a = attrs_of(pb[i].attributes());
    SCOPED_TRACE(s.source_file + ":" + std::to_string(s.source_line) + " " + s.name);
    const std::string op = str(a, "gen_ai.operation.name");
    if (op == "chat") {
      EXPECT_EQ(pb[i].name(), "chat " + (s.model ? *s.model : std::string("unknown")));
    }
    if (op == "execute_tool") {
      EXPECT_EQ(pb[i].name(), "execute_tool " + str(a, "gen_ai.tool.name"));
    }
    if (op == "invoke_agent" && s.kind == SpanKind::kAgent) {
      EXPECT_EQ(pb[i].name(), "invoke_agent " + str(a, "gen_ai.agent.name"));
    }
    for (const char* key : {"gen_ai.input.messages", "gen_ai.output.messages"}) {
      if (!has(a, key)) continue;
      const auto bad =
          genai_schema_problems(str(a, key), std::string(key) == "gen_ai.output.messages", nullptr);
      EXPECT_TRUE(bad.empty()) << key << ": " << bad.front() << " in " << clip(str(a, key), 300);
    }
    if (s.kind == SpanKind::kGeneration) {
      ++gens;
      auto it = a.find("gen_ai.response.finish_reasons");
      if (it != a.end()) {
        ++finish;
        static const std::set<std::string> kSet = {"stop", "length", "content_filter", "tool_call",
                                                   "error"};
        EXPECT_TRUE(kSet.count(it->second.array_value().values(0).string_value()));
      }
      if (!s.stop_reason.empty()) {
        EXPECT_EQ(str(a, "chsync.stop_reason"), s.stop_reason);
      }
    }
    // Tool spans sit beside the chat that called them and end... wherever; their parent is the turn
    // or agent, never a chat span.
    if (is_tool(s)) {
      EXPECT_NE(op, "chat");
    }
  }
  EXPECT_GT(finish, gens / 3) << "finish reasons on too few chat spans";
}

// ---- content policy inside the structure --------------------------------------------------------

TEST(ContentPolicy, TruncationNoContentAndRedactionKeepTheStructure) {
  Bundle b;
  for (const Bundle& c : corpus_bundles())
    if (is_golden_input(c)) b = c;
  ASSERT_FALSE(b.files.empty());
  MapOptions o = options();
  o.max_field_bytes = 100;
  std::size_t truncated = 0;
  for (const Span& s : map_bundle(b, o)) {
    std::size_t bytes = 0;
    for (const auto& m : s.input_messages)
      for (const auto& p : m.parts) {
        bytes += p.content.size();
        truncated += p.truncated;
        if (p.truncated) {
          EXPECT_GT(p.original_bytes, p.content.size());
        }
      }
    EXPECT_LE(bytes, 100u);
    for (Profile p : {Profile::kGeneric, Profile::kLangfuse, Profile::kPhoenix}) {
      const auto one = wire({s}, p);  // kept alive: the loop reads into it
      for (const auto& kv : one[0].attributes()) {
        const std::string& k = kv.key();
        if (k == "gen_ai.input.messages" || k == "gen_ai.output.messages" ||
            (s.kind == SpanKind::kGeneration &&
             (k == "langfuse.observation.input" || k == "langfuse.observation.output"))) {
          EXPECT_TRUE(valid_json(kv.value().string_value()))
              << k << " " << kv.value().string_value();
        }
      }
    }
  }
  EXPECT_GT(truncated, 0u);

  o = options();
  o.no_content = true;
  std::size_t calls = 0;
  for (const Span& s : map_bundle(b, o)) {
    EXPECT_FALSE(s.input || s.output || s.tool_result);
    for (const auto* list : {&s.input_messages, &s.output_messages})
      for (const auto& m : *list)
        for (const auto& p : m.parts) {
          EXPECT_TRUE(p.content.empty());
          EXPECT_TRUE(p.type == MessagePart::Type::kToolCall ||
                      p.type == MessagePart::Type::kToolCallResponse);
          calls += p.type == MessagePart::Type::kToolCall && !p.name.empty();
        }
  }
  EXPECT_GT(calls, 0u) << "--no-content keeps which tools were called";
}

TEST(ContentPolicy, RedactionReachesMessageParts) {
  const std::string dir = ::testing::TempDir() + "/contract_redact";
  fs::create_directories(dir);
  const std::string key = "sk-ant-api03-" + std::string(60, 'A');
  std::ofstream(dir + "/s.jsonl")
      << R"({"type":"user","uuid":"u1","sessionId":"s","timestamp":"2025-01-01T00:00:00.000Z","message":{"role":"user","content":"use )"
      << key << R"("}})"
      << "\n"
      << R"({"type":"assistant","uuid":"a1","parentUuid":"u1","sessionId":"s","timestamp":"2025-01-01T00:00:01.000Z","requestId":"r1","message":{"id":"m1","model":"claude-x","stop_reason":"tool_use","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"echo )"
      << key << R"("}}],"usage":{"input_tokens":1,"output_tokens":1}}})"
      << "\n"
      << R"({"type":"user","uuid":"u2","parentUuid":"a1","sessionId":"s","timestamp":"2025-01-01T00:00:02.000Z","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":")"
      << key << R"("}]}})"
      << "\n"
      << R"({"type":"assistant","uuid":"a2","parentUuid":"u2","sessionId":"s","timestamp":"2025-01-01T00:00:03.000Z","requestId":"r2","message":{"id":"m2","model":"claude-x","stop_reason":"end_turn","content":[{"type":"text","text":"done"}],"usage":{"input_tokens":1,"output_tokens":1}}})"
      << "\n";
  Redactor red(RedactOptions{});
  MapOptions o = options();
  o.redactor = &red;
  Bundle b = discover({dir}, DiscoverOptions{}).bundles.at(0);
  const auto spans = map_bundle(b, o);
  std::size_t parts = 0;
  for (const Span& s : spans)
    for (Profile p : {Profile::kGeneric, Profile::kLangfuse, Profile::kPhoenix}) {
      const auto one = wire({s}, p);  // kept alive: the loop reads into it
      for (const auto& kv : one[0].attributes()) {
        EXPECT_EQ(kv.value().string_value().find(key), std::string::npos) << kv.key();
        parts += kv.value().string_value().find("[REDACTED:") != std::string::npos;
      }
    }
  EXPECT_GT(parts, 3u);
  fs::remove_all(dir);
}

// ---- golden files: one real transcript as each backend displays it ------------------------------

std::string tokens_of(const std::map<std::string, long long>& u) {
  std::string out;
  for (const char* k : {"input", "output", "cache_read_input_tokens", "input_cache_creation_5m",
                        "input_cache_creation_1h", "cache_creation_input_tokens"})
    if (auto it = u.find(k); it != u.end())
      out += std::string(out.empty() ? "" : " ") + k + "=" + std::to_string(it->second);
  return out;
}

std::string first_chat_part(const std::optional<std::string>& json) {
  if (!json) return "-";
  simdjson::dom::parser p;
  simdjson::dom::array arr;
  if (p.parse(*json).get(arr)) return clip(*json, 50);
  for (auto m : arr) {
    std::string_view role, content, id;
    if (m["role"].get(role)) role = "?";
    simdjson::dom::array calls;
    if (!m["tool_calls"].get(calls) && (m["content"].get(content) || content.empty()))
      return std::string(role) +
             " tool_call:" + std::string(calls.at(0)["function"]["name"].get_string().value());
    if (role == "tool" && !m["tool_call_id"].get(id)) return "tool " + std::string(id);
    if (!m["content"].get(content)) return std::string(role) + " " + clip(std::string(content), 50);
  }
  return "[]";
}

// An indented tree of the spans (parents precede children in chsync's order).
template <class Line>
std::string tree(const std::vector<Span>& spans, Line line) {
  std::map<std::string, int> depth;
  std::string out;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    const int d =
        s.has_parent && depth.contains(to_hex(s.parent_id)) ? depth[to_hex(s.parent_id)] + 1 : 0;
    depth[to_hex(s.span_id)] = d;
    out += std::string(static_cast<std::size_t>(2 * d), ' ') + line(i) + "\n";
  }
  return out;
}

void check_golden(const std::string& name, const std::string& text) {
  const std::string path = kGoldenDir + "/" + name;
  if (std::getenv("CHSYNC_UPDATE_GOLDEN")) {
    fs::create_directories(kGoldenDir);
    std::ofstream(path, std::ios::binary) << text;
  }
  EXPECT_EQ(read_all(path), text) << "golden " << path
                                  << " differs (CHSYNC_UPDATE_GOLDEN=1 rewrites it)";
}

std::vector<Span> golden_spans() {
  for (const Bundle& b : corpus_bundles())
    if (is_golden_input(b)) return map_bundle(b, options());
  ADD_FAILURE() << "missing " << kGoldenInput;
  return {};
}

TEST(Golden, LangfuseView) {
  const auto spans = golden_spans();
  const Attrs res = exporter_resource(Profile::kLangfuse, "ci");
  const auto pb = wire(spans, Profile::kLangfuse);
  check_golden("langfuse.txt", tree(spans, [&](std::size_t i) {
                 const LangfuseObservation o = langfuse_ingest(pb[i], res);
                 std::string l = o.type + " " + o.name;
                 if (o.is_root)
                   l = "TRACE " + o.trace_name.value_or("?") +
                       " session=" + o.session_id.value_or("-") +
                       " release=" + o.release.value_or("-") + " env=" + o.environment + " | " + l;
                 if (!o.model.empty()) l += " model=" + o.model;
                 if (!o.usage.empty()) l += " [" + tokens_of(o.usage) + "]";
                 if (o.level != "DEFAULT") l += " level=" + o.level;
                 if (o.type == "GENERATION")
                   l += " in: " + first_chat_part(o.input) + " | out: " + first_chat_part(o.output);
                 else if (o.input) l += " in: " + clip(*o.input, 50);
                 return l;
               }));
}

TEST(Golden, PhoenixView) {
  const auto spans = golden_spans();
  const auto pb = wire(spans, Profile::kPhoenix);
  check_golden("phoenix.txt", tree(spans, [&](std::size_t i) {
                 const OiSpan o = openinference_read(pb[i]);
                 std::string l = o.kind + " " + o.name;
                 if (!o.model.empty()) l += " model=" + o.model;
                 if (o.prompt >= 0)
                   l += " [prompt=" + std::to_string(o.prompt) +
                        " completion=" + std::to_string(o.completion) + "]";
                 if (!o.input_messages.empty()) {
                   const OiMessage& m = o.input_messages.front();
                   l += " in[0]: " + m.role + " " +
                        (m.role == "tool" ? m.tool_call_id : clip(m.content, 40));
                 }
                 if (!o.output_messages.empty()) {
                   const OiMessage& m = o.output_messages.front();
                   l += " out[0]: " + (m.tool_calls.empty()
                                           ? clip(m.content, 40)
                                           : "tool_call:" + m.tool_calls.front().first);
                   if (!m.content_types.empty()) l += " (" + m.content_types.front() + ")";
                 }
                 if (o.input_value && o.kind != "LLM")
                   l += " input.value: " + clip(*o.input_value, 40);
                 return l;
               }));
}

TEST(Golden, GenAiView) {
  const auto spans = golden_spans();
  const auto pb = wire(spans, Profile::kGeneric);
  check_golden("genai.txt", tree(spans, [&](std::size_t i) {
                 const Attrs a = attrs_of(pb[i].attributes());
                 std::string l = pb[i].name();
                 if (has(a, "gen_ai.usage.input_tokens"))
                   l += " [in=" + std::to_string(a.at("gen_ai.usage.input_tokens").int_value()) +
                        " out=" + std::to_string(a.at("gen_ai.usage.output_tokens").int_value()) +
                        "]";
                 if (auto it = a.find("gen_ai.response.finish_reasons"); it != a.end())
                   l += " finish=" + it->second.array_value().values(0).string_value();
                 std::string first;
                 if (has(a, "gen_ai.input.messages")) {
                   genai_schema_problems(str(a, "gen_ai.input.messages"), false, &first);
                   l += " in: " + first;
                 }
                 if (has(a, "gen_ai.output.messages")) {
                   first.clear();
                   genai_schema_problems(str(a, "gen_ai.output.messages"), true, &first);
                   l += " out: " + first;
                 }
                 if (has(a, "gen_ai.tool.call.arguments"))
                   l += " args: " + clip(str(a, "gen_ai.tool.call.arguments"), 40);
                 return l;
               }));
}

TEST(Golden, LangfuseLegacyEvents) {
  const auto spans = golden_spans();
  check_golden("langfuse-legacy.txt", tree(spans, [&](std::size_t i) {
                 std::string l;
                 for (const auto& e : langfuse::legacy_events(
                          spans[i], langfuse::EventOptions{"ci", {}, true}, "T")) {
                   simdjson::dom::parser p;
                   simdjson::dom::element el = p.parse(e).value();
                   std::string_view name;
                   if (el["body"]["name"].get(name)) name = "";
                   if (!l.empty()) l += " + ";
                   l += std::string(el["type"].get_string().value()) + " " + std::string(name);
                 }
                 return l;
               }));
}

}  // namespace
}  // namespace chsync::contract
