// Encoder round-trips: bytes from the hand-written encoder decoded by libprotobuf
// (tools/proto/otlp_trace.proto, the sink's independent schema).
#include "backends/otlp/otlp_proto.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "otlp_trace.pb.h"

namespace pbv1 = chsync::otlp::v1;
using chsync::Span;
using chsync::SpanKind;
using chsync::otlp::Profile;
using chsync::otlp::SpanEncoder;

namespace {

Span make_span(SpanKind kind) {
  Span s;
  for (int i = 0; i < 16; ++i) s.trace_id[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(0xa0 + i);
  for (int i = 0; i < 8; ++i) s.span_id[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(0x10 + i);
  s.kind = kind;
  s.start_ms = 1756860758373;
  s.end_ms = 1756860760000;
  s.name = "chat claude-sonnet-4-5";
  s.session_id = "sess-1";
  return s;
}

pbv1::ExportTraceServiceRequest decode(const std::string& body) {
  pbv1::ExportTraceServiceRequest req;
  EXPECT_TRUE(req.ParseFromString(body));
  return req;
}

std::string encode_one(const Span& s, Profile profile = Profile::kGeneric, std::string* slice = nullptr) {
  SpanEncoder enc({profile, true});
  std::string spans;
  enc.append_span(s, spans);
  if (slice) *slice = spans;
  std::string body;
  chsync::otlp::build_request(chsync::otlp::encode_resource({{"service.name", "claude-code"}}),
                              chsync::otlp::encode_scope("chsync", "0.1.0"), spans, body);
  return body;
}

const pbv1::Span& only_span(const pbv1::ExportTraceServiceRequest& r) {
  EXPECT_EQ(r.resource_spans_size(), 1);
  EXPECT_EQ(r.resource_spans(0).scope_spans_size(), 1);
  EXPECT_EQ(r.resource_spans(0).scope_spans(0).spans_size(), 1);
  return r.resource_spans(0).scope_spans(0).spans(0);
}

std::map<std::string, pbv1::AnyValue> attrs_of(const pbv1::Span& s) {
  std::map<std::string, pbv1::AnyValue> m;
  for (const auto& kv : s.attributes()) {
    EXPECT_FALSE(m.count(kv.key())) << "duplicate attribute " << kv.key();
    m[kv.key()] = kv.value();
  }
  return m;
}

}  // namespace

TEST(OtlpVarintTest, SizesAndBytesAtEveryBoundary) {
  using namespace chsync::otlp::pb;
  const std::uint64_t values[] = {0, 1, 127, 128, 16383, 16384, 2097151, 2097152, (1ull << 28) - 1, 1ull << 28,
                                  (1ull << 35), (1ull << 63), ~0ull};
  for (auto v : values) {
    char buf[16];
    char* end = write_varint(buf, v);
    ASSERT_EQ(static_cast<std::size_t>(end - buf), varint_size(v)) << v;
    std::uint64_t back = 0;
    for (int i = 0; i < end - buf; ++i) back |= static_cast<std::uint64_t>(buf[i] & 0x7f) << (7 * i);
    EXPECT_EQ(back, v);
  }
  EXPECT_EQ(varint_size(~0ull), 10u);
}

TEST(OtlpProtoTest, GenerationRoundTripsAllFields) {
  Span s = make_span(SpanKind::kGeneration);
  s.has_parent = true;
  for (int i = 0; i < 8; ++i) s.parent_id[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(0xf0 + i);
  s.model = "claude-sonnet-4-5";
  s.response_id = "msg_01";
  s.stop_reason = "end_turn";
  s.user_id = "alice";
  s.usage.present = true;
  s.usage.input_tokens = 3;
  s.usage.cache_read_input_tokens = 20000;
  s.usage.cache_creation_input_tokens = 1500;
  s.usage.cache_creation_5m = 1000;
  s.usage.cache_creation_1h = 500;
  s.usage.output_tokens = 300;
  s.input = "hello \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";  // é € 😀
  s.output = "";
  s.metadata.push_back(chsync::Attr::integer("big", -5));
  s.metadata.push_back(chsync::Attr::boolean("flag", false));
  s.metadata.push_back(chsync::Attr::real("ratio", 0.0));
  s.metadata.push_back(chsync::Attr::string("empty", ""));
  s.metadata.push_back(chsync::Attr::json("obj", "{\"a\":1}"));

  const auto req = decode(encode_one(s));
  const auto& rs = req.resource_spans(0);
  EXPECT_EQ(rs.resource().attributes(0).key(), "service.name");
  EXPECT_EQ(rs.scope_spans(0).scope().name(), "chsync");
  EXPECT_EQ(rs.scope_spans(0).scope().version(), "0.1.0");
  const auto& p = only_span(req);
  EXPECT_EQ(p.trace_id(), std::string(reinterpret_cast<const char*>(s.trace_id.data()), 16));
  EXPECT_EQ(p.span_id(), std::string(reinterpret_cast<const char*>(s.span_id.data()), 8));
  EXPECT_EQ(p.parent_span_id(), std::string(reinterpret_cast<const char*>(s.parent_id.data()), 8));
  EXPECT_EQ(p.name(), s.name);
  EXPECT_EQ(p.kind(), pbv1::Span::SPAN_KIND_CLIENT);
  EXPECT_EQ(p.start_time_unix_nano(), 1756860758373000000ull);
  EXPECT_EQ(p.end_time_unix_nano(), 1756860760000000000ull);
  EXPECT_EQ(p.flags(), 0x101u);
  EXPECT_FALSE(p.has_status());

  auto a = attrs_of(p);
  EXPECT_EQ(a["session.id"].string_value(), "sess-1");
  EXPECT_EQ(a["gen_ai.conversation.id"].string_value(), "sess-1");
  EXPECT_EQ(a["user.id"].string_value(), "alice");
  EXPECT_EQ(a["langfuse.observation.type"].string_value(), "generation");
  EXPECT_EQ(a["openinference.span.kind"].string_value(), "LLM");
  EXPECT_EQ(a["gen_ai.operation.name"].string_value(), "chat");
  EXPECT_EQ(a["gen_ai.provider.name"].string_value(), "anthropic");
  EXPECT_EQ(a["gen_ai.request.model"].string_value(), "claude-sonnet-4-5");
  EXPECT_EQ(a["gen_ai.response.model"].string_value(), "claude-sonnet-4-5");
  EXPECT_EQ(a["llm.model_name"].string_value(), "claude-sonnet-4-5");
  EXPECT_EQ(a["langfuse.observation.model.name"].string_value(), "claude-sonnet-4-5");
  EXPECT_EQ(a["gen_ai.response.id"].string_value(), "msg_01");
  ASSERT_TRUE(a["gen_ai.response.finish_reasons"].has_array_value());
  ASSERT_EQ(a["gen_ai.response.finish_reasons"].array_value().values_size(), 1);
  EXPECT_EQ(a["gen_ai.response.finish_reasons"].array_value().values(0).string_value(), "end_turn");
  EXPECT_EQ(a["gen_ai.usage.input_tokens"].int_value(), 21503);
  EXPECT_EQ(a["gen_ai.usage.output_tokens"].int_value(), 300);
  EXPECT_EQ(a["gen_ai.usage.cache_read.input_tokens"].int_value(), 20000);
  EXPECT_EQ(a["gen_ai.usage.cache_creation.input_tokens"].int_value(), 1500);
  EXPECT_EQ(a["llm.token_count.prompt"].int_value(), 21503);
  EXPECT_EQ(a["llm.token_count.completion"].int_value(), 300);
  EXPECT_EQ(a["llm.token_count.total"].int_value(), 21803);
  EXPECT_EQ(a["llm.token_count.prompt_details.cache_read"].int_value(), 20000);
  EXPECT_EQ(a["llm.token_count.prompt_details.cache_write"].int_value(), 1500);
  EXPECT_EQ(a["llm.provider"].string_value(), "anthropic");
  EXPECT_EQ(a["llm.system"].string_value(), "anthropic");
  EXPECT_EQ(a["langfuse.observation.usage_details"].string_value(),
            "{\"input\":3,\"output\":300,\"cache_read_input_tokens\":20000,"
            "\"input_cache_creation_5m\":1000,\"input_cache_creation_1h\":500}");
  // generic profile content: wrapped as GenAI messages JSON
  EXPECT_EQ(a["gen_ai.input.messages"].string_value(),
            "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"hello \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}]}]");
  EXPECT_EQ(a["gen_ai.output.messages"].string_value(),
            "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"\"}],\"finish_reason\":\"end_turn\"}]");
  // oneof members present even when zero/empty
  ASSERT_TRUE(a.count("chsync.big"));
  EXPECT_EQ(a["chsync.big"].value_case(), pbv1::AnyValue::kIntValue);
  EXPECT_EQ(a["chsync.big"].int_value(), -5);
  EXPECT_EQ(a["chsync.flag"].value_case(), pbv1::AnyValue::kBoolValue);
  EXPECT_FALSE(a["chsync.flag"].bool_value());
  EXPECT_EQ(a["chsync.ratio"].value_case(), pbv1::AnyValue::kDoubleValue);
  EXPECT_EQ(a["chsync.empty"].value_case(), pbv1::AnyValue::kStringValue);
  EXPECT_EQ(a["chsync.obj"].string_value(), "{\"a\":1}");
  EXPECT_FALSE(a.count("langfuse.observation.metadata.big"));  // generic profile
}

TEST(OtlpProtoTest, UsageWithoutSplitUsesCacheCreationKey) {
  Span s = make_span(SpanKind::kGeneration);
  s.usage.present = true;
  s.usage.input_tokens = 1;
  s.usage.cache_creation_input_tokens = 7;
  auto a = attrs_of(only_span(decode(encode_one(s))));
  EXPECT_EQ(a["langfuse.observation.usage_details"].string_value(),
            "{\"input\":1,\"output\":0,\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":7}");
}

TEST(OtlpProtoTest, ToolSpanErrorStatusAndPhoenixContent) {
  Span s = make_span(SpanKind::kSpan);
  s.name = "execute_tool Bash";
  s.tool_name = "Bash";
  s.tool_use_id = "toolu_1";
  s.input = "{\"command\":\"ls\"}";
  s.input_is_json = true;
  s.output = "No such file";
  s.is_error = true;
  s.status_message = "exit 2";
  const auto req = decode(encode_one(s, Profile::kPhoenix));
  const auto& p = only_span(req);
  EXPECT_EQ(p.kind(), pbv1::Span::SPAN_KIND_INTERNAL);
  EXPECT_TRUE(p.parent_span_id().empty());
  ASSERT_TRUE(p.has_status());
  EXPECT_EQ(p.status().code(), pbv1::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(p.status().message(), "exit 2");
  auto a = attrs_of(p);
  EXPECT_EQ(a["langfuse.observation.type"].string_value(), "tool");
  EXPECT_EQ(a["openinference.span.kind"].string_value(), "TOOL");
  EXPECT_EQ(a["gen_ai.operation.name"].string_value(), "execute_tool");
  EXPECT_EQ(a["gen_ai.tool.name"].string_value(), "Bash");
  EXPECT_EQ(a["gen_ai.tool.call.id"].string_value(), "toolu_1");
  EXPECT_EQ(a["gen_ai.tool.type"].string_value(), "function");
  EXPECT_EQ(a["tool.name"].string_value(), "Bash");
  EXPECT_EQ(a["tool.id"].string_value(), "toolu_1");
  EXPECT_EQ(a["error.type"].string_value(), "tool_error");
  EXPECT_EQ(a["input.value"].string_value(), "{\"command\":\"ls\"}");
  EXPECT_EQ(a["input.mime_type"].string_value(), "application/json");
  EXPECT_EQ(a["output.value"].string_value(), "No such file");
  EXPECT_EQ(a["output.mime_type"].string_value(), "text/plain");
  EXPECT_FALSE(a.count("gen_ai.tool.call.arguments"));
  EXPECT_FALSE(a.count("langfuse.observation.input"));
}

TEST(OtlpProtoTest, RootLangfuseProfileAndMetadata) {
  Span s = make_span(SpanKind::kTrace);
  s.name = "turn 1";
  s.input = "fix the bug";
  s.output = "done";
  s.metadata.push_back(chsync::Attr::string("cwd", "/src"));
  auto a = attrs_of(only_span(decode(encode_one(s, Profile::kLangfuse))));
  EXPECT_EQ(a["langfuse.observation.type"].string_value(), "agent");
  EXPECT_EQ(a["openinference.span.kind"].string_value(), "AGENT");
  EXPECT_EQ(a["gen_ai.operation.name"].string_value(), "invoke_agent");
  EXPECT_EQ(a["gen_ai.agent.name"].string_value(), "claude-code");
  EXPECT_EQ(a["langfuse.trace.name"].string_value(), "turn 1");
  EXPECT_EQ(a["langfuse.observation.input"].string_value(), "fix the bug");
  EXPECT_EQ(a["langfuse.observation.output"].string_value(), "done");
  EXPECT_EQ(a["langfuse.trace.input"].string_value(), "fix the bug");
  EXPECT_EQ(a["langfuse.trace.output"].string_value(), "done");
  EXPECT_EQ(a["chsync.cwd"].string_value(), "/src");
  EXPECT_EQ(a["langfuse.observation.metadata.cwd"].string_value(), "/src");
  EXPECT_FALSE(a.count("gen_ai.input.messages"));
}

TEST(OtlpProtoTest, AgentAndEventSpans) {
  Span ag = make_span(SpanKind::kAgent);
  ag.agent_id = "a1b2";
  ag.agent_name = "Explore";
  auto a = attrs_of(only_span(decode(encode_one(ag))));
  EXPECT_EQ(a["langfuse.observation.type"].string_value(), "agent");
  EXPECT_EQ(a["gen_ai.agent.id"].string_value(), "a1b2");
  EXPECT_EQ(a["gen_ai.agent.name"].string_value(), "Explore");

  Span ev = make_span(SpanKind::kEvent);
  ev.end_ms = ev.start_ms + 5000;
  const auto req = decode(encode_one(ev));
  const auto& p = only_span(req);
  EXPECT_EQ(p.start_time_unix_nano(), p.end_time_unix_nano());
  EXPECT_EQ(attrs_of(p)["langfuse.observation.type"].string_value(), "event");
}

TEST(OtlpProtoTest, LargeStringsAndMultiByteLengths) {
  for (std::size_t n : {0u, 1u, 127u, 128u, 16383u, 16384u, 16u * 1024 + 5, 2u * 1024 * 1024 + 3, 3u * 1024 * 1024}) {
    Span s = make_span(SpanKind::kSpan);
    s.tool_name = "Read";
    std::string text;
    text.reserve(n);
    while (text.size() < n) text += (text.size() % 7 == 0 && text.size() + 2 <= n) ? "\xC3\xA9" : "x";
    text.resize(n, 'y');
    s.output = text;
    s.name = std::string(n % 300, 'n');
    std::string slice;
    const auto req = decode(encode_one(s, Profile::kLangfuse, &slice));
    const auto& p = only_span(req);
    EXPECT_EQ(attrs_of(p)["langfuse.observation.output"].string_value(), text) << n;
    EXPECT_EQ(p.name(), s.name);
    // The slice re-serialised by libprotobuf is byte-identical (field order = number order).
    pbv1::ScopeSpans ss;
    ASSERT_TRUE(ss.ParseFromString(slice));
    EXPECT_EQ(ss.SerializeAsString(), slice) << n;
  }
}

TEST(OtlpProtoTest, BatchOfManySpansAndHalves) {
  SpanEncoder enc;
  std::string blob;
  std::vector<std::size_t> ends;
  for (int i = 0; i < 300; ++i) {
    Span s = make_span(i % 2 ? SpanKind::kGeneration : SpanKind::kSpan);
    s.span_id[7] = static_cast<std::uint8_t>(i);
    s.input = std::string(static_cast<std::size_t>(i * 37), 'q');
    enc.append_span(s, blob);
    ends.push_back(blob.size());
  }
  const auto res = chsync::otlp::encode_resource({{"service.name", "x"}, {"host.name", ""}});
  const auto scope = chsync::otlp::encode_scope("chsync", "");
  std::string body;
  chsync::otlp::build_request(res, scope, blob, body);
  auto req = decode(body);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 300);
  EXPECT_EQ(req.resource_spans(0).resource().attributes(1).value().value_case(), pbv1::AnyValue::kStringValue);
  std::string_view all(blob);
  chsync::otlp::build_request(res, scope, all.substr(ends[149], ends[299] - ends[149]), body);
  req = decode(body);
  ASSERT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 150);
  EXPECT_EQ(static_cast<std::uint8_t>(req.resource_spans(0).scope_spans(0).spans(0).span_id()[7]), 150);
  chsync::otlp::build_request(res, scope, {}, body);
  EXPECT_TRUE(body.empty());
}

TEST(OtlpProtoTest, DecodesPartialSuccessAndRpcStatus) {
  pbv1::ExportTraceServiceResponse resp;
  resp.mutable_partial_success()->set_rejected_spans(300);
  resp.mutable_partial_success()->set_error_message("too old");
  chsync::otlp::PartialSuccess ps;
  ASSERT_TRUE(chsync::otlp::decode_partial_success_proto(resp.SerializeAsString(), ps));
  EXPECT_TRUE(ps.present);
  EXPECT_EQ(ps.rejected_spans, 300);
  EXPECT_EQ(ps.error_message, "too old");
  ASSERT_TRUE(chsync::otlp::decode_partial_success_proto("", ps));
  EXPECT_FALSE(ps.present);
  EXPECT_FALSE(chsync::otlp::decode_partial_success_proto("\x0a\x05\x08", ps));

  EXPECT_TRUE(chsync::otlp::decode_partial_success_json(
      R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"bad \"x\""}})", ps));
  EXPECT_EQ(ps.rejected_spans, 2);
  EXPECT_EQ(ps.error_message, "bad \"x\"");
  EXPECT_FALSE(chsync::otlp::decode_partial_success_json("{}", ps));

  pbv1::RpcStatus st;
  st.set_code(3);
  st.set_message("invalid span");
  EXPECT_EQ(chsync::otlp::decode_rpc_status_message(st.SerializeAsString()), "invalid span");
}

TEST(OtlpProtoTest, JsonEscaping) {
  std::string out;
  chsync::otlp::append_json_escaped(out, std::string("a\"b\\c\n\x01\xC3\xA9", 9));
  EXPECT_EQ(out, "a\\\"b\\\\c\\n\\u0001\xC3\xA9");
}
