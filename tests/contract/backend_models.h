// What each backend makes of an OTLP span, modelled from the backends' documented ingestion rules
// (not from chsync's code): Langfuse's OTel ingestion (protocols.md §A.9, OtelIngestionProcessor /
// ObservationTypeMapper / tool-call extraction in langfuse/langfuse), OpenInference's semantic
// conventions as Phoenix reads them (Arize-ai/openinference spec/semantic_conventions.md), and the
// OTel GenAI message JSON schema (semantic-conventions docs/gen-ai).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#if __has_include("tools/proto/otlp_trace.pb.h")
#include "tools/proto/otlp_trace.pb.h"
#else
#include "otlp_trace.pb.h"
#endif

namespace chsync::contract {

namespace pbv1 = chsync::otlp::v1;
using Attrs = std::map<std::string, pbv1::AnyValue>;

Attrs attrs_of(const google::protobuf::RepeatedPtrField<pbv1::KeyValue>& kvs);
std::string str(const Attrs& a, const std::string& key);  // "" when absent or not a string
bool has(const Attrs& a, const std::string& key);
std::string hex(const std::string& bytes);

// The observation (and trace update) Langfuse stores for one span.
struct LangfuseObservation {
  std::string id, trace_id, parent_id;
  std::string type;  // SPAN, GENERATION, EVENT, AGENT, TOOL, CHAIN, ...
  std::string name;
  std::string model;
  std::map<std::string, long long> usage;  // usage details after Langfuse's normalisation
  std::string environment;
  std::optional<std::string> version, release;
  std::optional<std::string> session_id, user_id, trace_name;
  std::vector<std::string> tags;
  std::optional<std::string> input,
      output;  // the raw strings Langfuse stores (JSON when parseable)
  std::optional<std::string> trace_input, trace_output;
  std::string level;                            // DEFAULT, ERROR
  std::map<std::string, std::string> metadata;  // flattened observation/trace metadata keys
  std::vector<std::string>
      unmapped;  // attributes not mapped to a field (metadata.attributes in older versions)
  bool is_root = false;
  bool trace_update = false;  // the span updates its trace (root, or carries a trace-level key)
  std::vector<std::string> tool_call_names;  // extracted from the output (tool_call_names column)
  std::vector<std::string> tool_call_ids;
};
LangfuseObservation langfuse_ingest(const pbv1::Span& span, const Attrs& resource);

// The OpenInference view of one span (what Phoenix shows).
struct OiMessage {
  std::string role, content, tool_call_id;
  std::vector<std::string> content_types;  // message.contents.N.message_content.type
  std::vector<std::pair<std::string, std::string>> tool_calls;  // function name, arguments
  std::vector<std::string> tool_call_ids;
};
struct OiSpan {
  std::string kind;  // openinference.span.kind
  std::string name, model;
  long long prompt = -1, completion = -1, total = -1, cache_read = -1, cache_write = -1;
  std::vector<OiMessage> input_messages, output_messages;
  std::optional<std::string> input_value, output_value, input_mime, output_mime;
  std::optional<std::string> metadata, session_id, agent_name, finish_reason;
  std::vector<std::string> problems;  // violations of the flattening rules (gaps in indices, ...)
};
OiSpan openinference_read(const pbv1::Span& span);

// GenAI message JSON (gen_ai.input.messages / gen_ai.output.messages) against the schema: returns
// the problems found (empty: valid). first_part gets a short rendering of the first part.
std::vector<std::string> genai_schema_problems(const std::string& json, bool output,
                                               std::string* first_part);

// A short one-line rendering (quotes, at most n bytes) for golden files.
std::string clip(const std::string& s, std::size_t n = 60);

}  // namespace chsync::contract
