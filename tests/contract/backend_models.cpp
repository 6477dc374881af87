// Backend models: see backend_models.h. Each rule cites where it is documented.
#include "tests/contract/backend_models.h"

#include <simdjson.h>

#include <algorithm>
#include <set>

namespace chsync::contract {

Attrs attrs_of(const google::protobuf::RepeatedPtrField<pbv1::KeyValue>& kvs) {
  Attrs m;
  for (const auto& kv : kvs) m[kv.key()] = kv.value();
  return m;
}

std::string str(const Attrs& a, const std::string& key) {
  auto it = a.find(key);
  return it != a.end() && it->second.value_case() == pbv1::AnyValue::kStringValue
             ? it->second.string_value()
             : "";
}

bool has(const Attrs& a, const std::string& key) { return a.contains(key); }

std::string hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::string clip(const std::string& s, std::size_t n) {
  std::string out;
  for (char c : s) {
    if (out.size() >= n) break;
    out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80)
    out.pop_back();  // no cut UTF-8
  if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0xC0) out.pop_back();
  return "\"" + out + (s.size() > n ? "…\"" : "\"");
}

namespace {

std::optional<std::string> first_of(const Attrs& a, const Attrs& res,
                                    std::initializer_list<const char*> keys, bool resource_too) {
  for (const char* k : keys)
    if (has(a, k)) return str(a, k);
  if (resource_too)
    for (const char* k : keys)
      if (has(res, k)) return str(res, k);
  return std::nullopt;
}

// ObservationTypeMapper: (1) langfuse.observation.type, (2) openinference.span.kind, (3)
// gen_ai.operation.name, (4) model keys -> GENERATION, tool keys -> TOOL, else SPAN.
std::string observation_type(const Attrs& a) {
  std::string t = str(a, "langfuse.observation.type");
  if (!t.empty()) {
    std::transform(t.begin(), t.end(), t.begin(), ::toupper);
    return t;
  }
  std::string oi = str(a, "openinference.span.kind");
  if (oi == "LLM") return "GENERATION";
  if (!oi.empty()) return oi;
  const std::string op = str(a, "gen_ai.operation.name");
  if (op == "chat" || op == "text_completion" || op == "generate_content") return "GENERATION";
  if (op == "invoke_agent" || op == "create_agent") return "AGENT";
  if (op == "execute_tool") return "TOOL";
  if (has(a, "gen_ai.request.model") || has(a, "gen_ai.response.model")) return "GENERATION";
  if (has(a, "gen_ai.tool.name") || has(a, "gen_ai.tool.call.id")) return "TOOL";
  return "SPAN";
}

// Usage: langfuse.observation.usage_details (JSON) wins outright; otherwise gen_ai.usage.* and
// llm.token_count.* are normalised (input = prompt - cache read - cache creation).
std::map<std::string, long long> usage_of(const Attrs& a) {
  std::map<std::string, long long> u;
  const std::string ud = str(a, "langfuse.observation.usage_details");
  if (!ud.empty()) {
    simdjson::dom::parser p;
    simdjson::dom::object o;
    if (!p.parse(ud).get(o))
      for (auto [k, v] : o) {
        std::int64_t n = 0;
        if (!v.get(n)) u[std::string(k)] = n;
      }
    return u;
  }
  auto num = [&](const char* k) -> long long {
    auto it = a.find(k);
    return it == a.end() ? -1 : it->second.int_value();
  };
  long long in = num("gen_ai.usage.input_tokens");
  if (in < 0) in = num("llm.token_count.prompt");
  long long out = num("gen_ai.usage.output_tokens");
  if (out < 0) out = num("llm.token_count.completion");
  long long cr = num("gen_ai.usage.cache_read.input_tokens");
  if (cr < 0) cr = num("llm.token_count.prompt_details.cache_read");
  long long cw = num("gen_ai.usage.cache_creation.input_tokens");
  if (cw < 0) cw = num("llm.token_count.prompt_details.cache_write");
  if (in < 0 && out < 0) return u;
  u["input"] = std::max(0LL, in) - std::max(0LL, cr) - std::max(0LL, cw);
  u["output"] = std::max(0LL, out);
  if (cr >= 0) u["input_cached_tokens"] = cr;
  if (cw >= 0) u["input_cache_creation"] = cw;
  return u;
}

// Tool calls Langfuse extracts from an output: an array of messages with tool_calls (OpenAI
// {function:{name,arguments}} or flat {name,arguments}), or Anthropic tool_use content parts.
void extract_tool_calls(const std::string& output, LangfuseObservation& o) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  if (p.parse(output).get(root)) return;
  auto from_message = [&](simdjson::dom::element m) {
    simdjson::dom::array calls;
    if (!m["tool_calls"].get(calls))
      for (auto c : calls) {
        std::string_view name, id;
        if (c["function"]["name"].get(name) && c["name"].get(name)) continue;
        if (c["id"].get(id)) id = "";
        o.tool_call_names.emplace_back(name);
        o.tool_call_ids.emplace_back(id);
      }
    simdjson::dom::array content;
    if (!m["content"].get(content))
      for (auto part : content) {
        std::string_view type, name, id;
        if (part["type"].get(type) || type != "tool_use" || part["name"].get(name)) continue;
        if (part["id"].get(id)) id = "";
        o.tool_call_names.emplace_back(name);
        o.tool_call_ids.emplace_back(id);
      }
  };
  simdjson::dom::array arr;
  if (!root.get(arr)) {
    for (auto m : arr) from_message(m);
  } else {
    from_message(root);
  }
}

}  // namespace

LangfuseObservation langfuse_ingest(const pbv1::Span& span, const Attrs& res) {
  const Attrs a = attrs_of(span.attributes());
  LangfuseObservation o;
  o.id = hex(span.span_id());
  o.trace_id = hex(span.trace_id());
  o.parent_id = hex(span.parent_span_id());
  o.is_root = span.parent_span_id().empty();  // (or langfuse.internal.as_root, never sent)
  o.type = observation_type(a);
  // Name: gen_ai.tool.name first, then the span name.
  o.name = has(a, "gen_ai.tool.name") ? str(a, "gen_ai.tool.name") : span.name();
  if (auto m = first_of(a, res,
                        {"langfuse.observation.model.name", "gen_ai.response.model",
                         "gen_ai.request.model", "llm.response.model", "llm.model_name", "model"},
                        false))
    o.model = *m;
  o.usage = usage_of(a);
  // Environment: span, then resource; default "default".
  o.environment =
      first_of(a, res,
               {"langfuse.environment", "deployment.environment.name", "deployment.environment"},
               true)
          .value_or("default");
  // version = langfuse.version ?? resource service.version; release = langfuse.release
  // (span/resource).
  if (has(a, "langfuse.version")) o.version = str(a, "langfuse.version");
  else if (has(res, "service.version")) o.version = str(res, "service.version");
  o.release = first_of(a, res, {"langfuse.release"}, true);
  o.session_id = first_of(a, res, {"langfuse.session.id", "session.id"}, false);
  if (!o.session_id && o.is_root && has(a, "gen_ai.conversation.id"))
    o.session_id = str(a, "gen_ai.conversation.id");
  o.user_id = first_of(a, res, {"langfuse.user.id", "user.id"}, false);
  if (has(a, "langfuse.trace.name")) o.trace_name = str(a, "langfuse.trace.name");
  else if (o.is_root)
    o.trace_name = span.name();  // the root span's name, when no trace name is set
  // Tags: a string array, a JSON array string, or a comma-separated string.
  if (auto it = a.find("langfuse.trace.tags"); it != a.end()) {
    if (it->second.has_array_value()) {
      for (const auto& v : it->second.array_value().values()) o.tags.push_back(v.string_value());
    } else {
      simdjson::dom::parser p;
      simdjson::dom::array arr;
      if (!p.parse(it->second.string_value()).get(arr)) {
        for (auto v : arr) {
          std::string_view t;
          if (!v.get(t)) o.tags.emplace_back(t);
        }
      } else {
        o.tags.push_back(it->second.string_value());
      }
    }
  }
  // Input/output: langfuse.observation.* first, then input.value/output.value, then the GenAI
  // messages, then the GenAI tool call keys.
  o.input = first_of(a, res,
                     {"langfuse.observation.input", "input.value", "gen_ai.input.messages",
                      "gen_ai.tool.call.arguments"},
                     false);
  o.output = first_of(a, res,
                      {"langfuse.observation.output", "output.value", "gen_ai.output.messages",
                       "gen_ai.tool.call.result"},
                      false);
  o.trace_input = first_of(a, res, {"langfuse.trace.input"}, false);
  o.trace_output = first_of(a, res, {"langfuse.trace.output"}, false);
  if (o.is_root && !o.trace_input) o.trace_input = o.input;
  if (o.is_root && !o.trace_output) o.trace_output = o.output;
  // Level: langfuse.observation.level, else status code 2 -> ERROR, else DEFAULT.
  o.level = has(a, "langfuse.observation.level") ? str(a, "langfuse.observation.level")
            : span.status().code() == pbv1::Status::STATUS_CODE_ERROR ? "ERROR"
                                                                      : "DEFAULT";
  static const std::set<std::string> kTraceKeys = {"langfuse.trace.name",
                                                   "langfuse.trace.input",
                                                   "langfuse.trace.output",
                                                   "langfuse.trace.metadata",
                                                   "langfuse.trace.tags",
                                                   "langfuse.trace.public",
                                                   "user.id",
                                                   "session.id",
                                                   "langfuse.user.id",
                                                   "langfuse.session.id"};
  static const std::set<std::string> kMapped = {"langfuse.observation.type",
                                                "openinference.span.kind",
                                                "gen_ai.operation.name",
                                                "langfuse.observation.model.name",
                                                "gen_ai.response.model",
                                                "gen_ai.request.model",
                                                "llm.model_name",
                                                "langfuse.observation.usage_details",
                                                "langfuse.environment",
                                                "langfuse.release",
                                                "langfuse.version",
                                                "langfuse.trace.name",
                                                "langfuse.trace.tags",
                                                "langfuse.trace.input",
                                                "langfuse.trace.output",
                                                "langfuse.observation.input",
                                                "langfuse.observation.output",
                                                "input.value",
                                                "output.value",
                                                "gen_ai.input.messages",
                                                "gen_ai.output.messages",
                                                "gen_ai.tool.call.arguments",
                                                "gen_ai.tool.call.result",
                                                "session.id",
                                                "user.id",
                                                "gen_ai.conversation.id",
                                                "gen_ai.tool.name",
                                                "langfuse.observation.level"};
  o.trace_update = o.is_root;
  for (const auto& [k, v] : a) {
    if (kTraceKeys.contains(k) || k.rfind("langfuse.trace.metadata.", 0) == 0)
      o.trace_update = true;
    std::string text = v.value_case() == pbv1::AnyValue::kStringValue ? v.string_value()
                       : v.value_case() == pbv1::AnyValue::kIntValue ? std::to_string(v.int_value())
                       : v.value_case() == pbv1::AnyValue::kBoolValue
                           ? (v.bool_value() ? "true" : "false")
                           : "";
    for (const char* pre : {"langfuse.observation.metadata.", "langfuse.trace.metadata."})
      if (k.rfind(pre, 0) == 0) o.metadata[k.substr(std::string(pre).size())] = text;
    if (!kMapped.contains(k) && k.rfind("langfuse.", 0) != 0) o.unmapped.push_back(k);
  }
  if (o.output) extract_tool_calls(*o.output, o);
  return o;
}

OiSpan openinference_read(const pbv1::Span& span) {
  const Attrs a = attrs_of(span.attributes());
  OiSpan o;
  o.kind = str(a, "openinference.span.kind");
  o.name = span.name();
  o.model = str(a, "llm.model_name");
  auto num = [&](const char* k) {
    auto it = a.find(k);
    return it == a.end() ? -1LL : static_cast<long long>(it->second.int_value());
  };
  o.prompt = num("llm.token_count.prompt");
  o.completion = num("llm.token_count.completion");
  o.total = num("llm.token_count.total");
  o.cache_read = num("llm.token_count.prompt_details.cache_read");
  o.cache_write = num("llm.token_count.prompt_details.cache_write");
  auto opt = [&](const char* k) -> std::optional<std::string> {
    if (!has(a, k)) return std::nullopt;
    return str(a, k);
  };
  o.input_value = opt("input.value");
  o.output_value = opt("output.value");
  o.input_mime = opt("input.mime_type");
  o.output_mime = opt("output.mime_type");
  o.metadata = opt("metadata");
  o.session_id = opt("session.id");
  o.agent_name = opt("agent.name");
  o.finish_reason = opt("llm.finish_reason");
  // Lists are flattened with zero-based, contiguous indices: <prefix>.<i>.message.<field>.
  auto read = [&](const std::string& prefix, std::vector<OiMessage>& out) {
    for (std::size_t i = 0;; ++i) {
      const std::string base = prefix + "." + std::to_string(i) + ".message.";
      const bool any = std::any_of(a.begin(), a.end(),
                                   [&](const auto& kv) { return kv.first.rfind(base, 0) == 0; });
      if (!any) break;
      OiMessage m;
      m.role = str(a, base + "role");
      if (m.role.empty()) o.problems.push_back(base + "role missing");
      m.content = str(a, base + "content");
      m.tool_call_id = str(a, base + "tool_call_id");
      for (std::size_t j = 0;
           has(a, base + "contents." + std::to_string(j) + ".message_content.type"); ++j)
        m.content_types.push_back(
            str(a, base + "contents." + std::to_string(j) + ".message_content.type"));
      for (std::size_t k = 0;; ++k) {
        const std::string c = base + "tool_calls." + std::to_string(k) + ".tool_call.";
        if (!has(a, c + "function.name")) break;
        m.tool_calls.emplace_back(str(a, c + "function.name"), str(a, c + "function.arguments"));
        m.tool_call_ids.push_back(str(a, c + "id"));
      }
      out.push_back(std::move(m));
    }
    for (const auto& [k, v] : a)  // an index past a gap would never be read
      if (k.rfind(prefix + ".", 0) == 0) {
        const std::size_t idx = std::stoul(k.substr(prefix.size() + 1));
        if (idx >= out.size()) o.problems.push_back("gap before " + k);
      }
  };
  read("llm.input_messages", o.input_messages);
  read("llm.output_messages", o.output_messages);
  return o;
}

std::vector<std::string> genai_schema_problems(const std::string& json, bool output,
                                               std::string* first_part) {
  std::vector<std::string> bad;
  simdjson::dom::parser p;
  simdjson::dom::array msgs;
  if (p.parse(json).get(msgs)) return {"not a JSON array"};
  static const std::set<std::string_view> kRoles = {"system", "user", "assistant", "tool"};
  static const std::set<std::string_view> kFinish = {"stop", "length", "content_filter",
                                                     "tool_call", "error"};
  bool first = true;
  for (auto m : msgs) {
    std::string_view role, finish;
    if (m["role"].get(role) || !kRoles.contains(role)) bad.emplace_back("bad role");
    simdjson::dom::array parts;
    if (m["parts"].get(parts)) {
      bad.emplace_back("parts missing");
      continue;
    }
    if (!m["finish_reason"].get(finish)) {
      if (!output) bad.emplace_back("finish_reason on an input message");
      if (!kFinish.contains(finish))
        bad.emplace_back("finish_reason not in the OTel set: " + std::string(finish));
    }
    for (auto part : parts) {
      std::string_view type, s;
      if (part["type"].get(type)) {
        bad.emplace_back("part without type");
        continue;
      }
      std::string shown;
      if (type == "text" || type == "reasoning") {
        if (part["content"].get(s)) bad.emplace_back(std::string(type) + " without content");
        shown = std::string(type) + ":" + clip(std::string(s), 50);
      } else if (type == "tool_call") {
        if (part["name"].get(s)) bad.emplace_back("tool_call without name");
        shown = "tool_call:" + std::string(s);
      } else if (type == "tool_call_response") {
        simdjson::dom::element r;
        if (part["response"].get(r)) bad.emplace_back("tool_call_response without response");
        std::string_view id;
        if (part["id"].get(id)) id = "";
        shown = "tool_call_response:" + std::string(id);
      } else {
        bad.push_back("unexpected part type " + std::string(type));
      }
      if (first && first_part) *first_part = std::string(role) + " " + shown;
      first = false;
    }
  }
  return bad;
}

}  // namespace chsync::contract
