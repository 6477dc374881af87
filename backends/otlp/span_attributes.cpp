// SpanEncoder::collect_attributes: the attribute list of one span, per backend profile
// (docs/mapping.md "Backend profiles" has one table per profile; otlp_proto.h states the rule).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "backends/otlp/message_json.h"
#include "backends/otlp/otlp_proto.h"

namespace chsync::otlp {

namespace {

bool is_tool_span(const Span& s) { return s.kind == SpanKind::kSpan && s.tool_name.has_value(); }
// A trace root: a turn or session root, or an unlinked subagent (no parent). Langfuse takes trace
// fields (name, session, user, tags, input, output) from these spans only.
bool is_root_span(const Span& s) {
  return s.kind == SpanKind::kTrace || (s.kind == SpanKind::kAgent && !s.has_parent);
}

const std::optional<std::string>& output_of(const Span& s) {
  return (is_tool_span(s) && !s.output && s.tool_result) ? s.tool_result : s.output;
}

const chsync::Attr* find_meta(const Span& s, std::string_view key) {
  for (const chsync::Attr& a : s.metadata)
    if (a.key == key) return &a;
  return nullptr;
}

void json_str(std::string& out, std::string_view v) {
  out += '"';
  append_json_escaped(out, v);
  out += '"';
}

// A flat text as one GenAI message with one text part.
std::string wrap_text(std::string_view role, const std::string& text, std::string_view finish) {
  Message m;
  m.role = std::string(role);
  MessagePart part;
  part.content = text;
  m.parts.push_back(std::move(part));
  std::string j;
  append_genai_messages(j, {m}, finish);
  return j;
}

std::string metadata_json(const Span& s) {
  std::string j = "{";
  for (const Attr& a : s.metadata) {
    if (j.size() > 1) j += ',';
    json_str(j, a.key);
    j += ':';
    switch (a.type) {
      case Attr::Type::kString: json_str(j, a.str); break;
      case Attr::Type::kJson: j += a.str.empty() ? "null" : a.str; break;
      case Attr::Type::kInt: j += std::to_string(a.num); break;
      case Attr::Type::kBool: j += a.flag ? "true" : "false"; break;
      case Attr::Type::kDouble: {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", a.dbl);
        j += std::isfinite(a.dbl) ? buf : "null";
        break;
      }
    }
  }
  j += '}';
  return j;
}

}  // namespace

SpanEncoder::SpanEncoder(EncoderOptions options) : options_(std::move(options)) {
  std::vector<std::string> tags = {"claude-code"};
  for (const auto& t : options_.tags)
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  tags_json_ = "[";  // NOLINT(*-prefer-member-initializer): built by the loop below
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (i) tags_json_ += ',';
    json_str(tags_json_, tags[i]);
  }
  tags_json_ += ']';
}

std::string_view SpanEncoder::keep(std::string s) {
  scratch_.push_back(std::move(s));
  return scratch_.back();
}

void SpanEncoder::add_identity(const Span& s) {
  const Profile p = options_.profile;
  const bool root = is_root_span(s);
  std::string_view lf_type = "span", oi_kind = "CHAIN", op;
  switch (s.kind) {
    case SpanKind::kTrace:
    case SpanKind::kAgent:
      lf_type = "agent";
      oi_kind = "AGENT";
      op = "invoke_agent";
      break;
    case SpanKind::kGeneration:
      lf_type = "generation";
      oi_kind = "LLM";
      op = "chat";
      break;
    case SpanKind::kSpan:
      if (is_tool_span(s)) {
        lf_type = "tool";
        oi_kind = "TOOL";
        op = "execute_tool";
      }
      break;
    case SpanKind::kEvent: lf_type = "event"; break;
  }
  // Session and user: Langfuse treats them as trace updates, so only roots carry them there.
  if (p != Profile::kLangfuse || root) {
    if (!s.session_id.empty()) add_str("session.id", s.session_id);
    if (!s.user_id.empty()) add_str("user.id", s.user_id);
  }
  if (p == Profile::kGeneric && !s.session_id.empty())
    add_str("gen_ai.conversation.id", s.session_id);
  if (p != Profile::kPhoenix) add_str("langfuse.observation.type", lf_type);
  if (p != Profile::kLangfuse) add_str("openinference.span.kind", oi_kind);
  if (p == Profile::kGeneric) {
    if (!op.empty()) add_str("gen_ai.operation.name", op);
    add_str("gen_ai.provider.name", "anthropic");
  }
  const std::string_view agent =
      s.kind == SpanKind::kTrace ? std::string_view("claude-code") : s.agent_name;
  if (s.kind == SpanKind::kTrace || s.kind == SpanKind::kAgent) {
    if (p == Profile::kGeneric) {
      if (s.kind == SpanKind::kAgent && !s.agent_id.empty()) add_str("gen_ai.agent.id", s.agent_id);
      if (!agent.empty()) add_str("gen_ai.agent.name", agent);
    }
    if (p == Profile::kPhoenix && !agent.empty()) add_str("agent.name", agent);
  }
  if (!root || p == Profile::kPhoenix) return;
  add_str("langfuse.trace.name",
          s.trace_name.empty() ? std::string_view(s.name) : std::string_view(s.trace_name));
  if (p != Profile::kLangfuse) return;
  add_str("langfuse.trace.tags", tags_json_);
  if (const chsync::Attr* v = find_meta(s, "cc_version"); v != nullptr && !v->str.empty())
    add_str("langfuse.release", v->str);
}

void SpanEncoder::add_usage(const Span& s) {
  const Profile p = options_.profile;
  const Usage& u = s.usage;
  if (!u.present) {
    if (p == Profile::kLangfuse || (s.tokens_in == 0 && s.tokens_out == 0)) return;
    if (p == Profile::kGeneric) {
      add_int("gen_ai.usage.input_tokens", s.tokens_in);
      add_int("gen_ai.usage.output_tokens", s.tokens_out);
    }
    add_int("llm.token_count.prompt", s.tokens_in);
    add_int("llm.token_count.completion", s.tokens_out);
    add_int("llm.token_count.total", s.tokens_in + s.tokens_out);
    return;
  }
  const std::int64_t prompt = u.prompt_total();
  if (p == Profile::kGeneric) {
    add_int("gen_ai.usage.input_tokens", prompt);
    add_int("gen_ai.usage.output_tokens", u.output_tokens);
    add_int("gen_ai.usage.cache_read.input_tokens", u.cache_read_input_tokens);
    add_int("gen_ai.usage.cache_creation.input_tokens", u.cache_creation_input_tokens);
  }
  if (p != Profile::kLangfuse) {
    add_int("llm.token_count.prompt", prompt);
    add_int("llm.token_count.completion", u.output_tokens);
    add_int("llm.token_count.total", prompt + u.output_tokens);
    add_int("llm.token_count.prompt_details.cache_read", u.cache_read_input_tokens);
    add_int("llm.token_count.prompt_details.cache_write", u.cache_creation_input_tokens);
  }
  if (p == Profile::kPhoenix) return;
  // Langfuse: usage_details wins outright over every other usage key; input excludes the cache.
  std::string j = "{\"input\":" + std::to_string(u.input_tokens) +
                  ",\"output\":" + std::to_string(u.output_tokens) +
                  ",\"cache_read_input_tokens\":" + std::to_string(u.cache_read_input_tokens);
  if (u.cache_creation_5m >= 0 || u.cache_creation_1h >= 0) {
    j += ",\"input_cache_creation_5m\":" +
         std::to_string(u.cache_creation_5m < 0 ? 0 : u.cache_creation_5m);
    j += ",\"input_cache_creation_1h\":" +
         std::to_string(u.cache_creation_1h < 0 ? 0 : u.cache_creation_1h);
  } else {
    j += ",\"cache_creation_input_tokens\":" + std::to_string(u.cache_creation_input_tokens);
  }
  j += '}';
  add_str("langfuse.observation.usage_details", keep(std::move(j)));
}

void SpanEncoder::add_generation(const Span& s) {
  const Profile p = options_.profile;
  if (s.model) {
    if (p == Profile::kGeneric) {
      add_str("gen_ai.request.model", *s.model);
      add_str("gen_ai.response.model", *s.model);
    }
    if (p != Profile::kLangfuse) add_str("llm.model_name", *s.model);
    if (p != Profile::kPhoenix) add_str("langfuse.observation.model.name", *s.model);
  }
  if (p != Profile::kLangfuse) {
    add_str("llm.provider", "anthropic");
    add_str("llm.system", "anthropic");
    if (!s.finish_reason.empty()) add_str("llm.finish_reason", s.finish_reason);
  }
  if (p == Profile::kGeneric) {
    if (!s.response_id.empty()) add_str("gen_ai.response.id", s.response_id);
    if (!s.finish_reason.empty())
      attrs_.push_back(
          make("gen_ai.response.finish_reasons", Attr::Type::kStringArray1, s.finish_reason));
  }
  add_usage(s);
  if (s.is_streaming && p == Profile::kGeneric) add_bool("chsync.is_streaming", true);
}

void SpanEncoder::add_tool(const Span& s) {
  const Profile p = options_.profile;
  // Langfuse names a tool observation by gen_ai.tool.name (the bare tool name, e.g. "Bash").
  if (p != Profile::kPhoenix) {
    add_str("gen_ai.tool.name", *s.tool_name);
    if (!s.tool_use_id.empty()) add_str("gen_ai.tool.call.id", s.tool_use_id);
  }
  if (p != Profile::kLangfuse) {
    add_str("tool.name", *s.tool_name);
    if (!s.tool_use_id.empty()) add_str("tool.id", s.tool_use_id);
  }
  if (p == Profile::kGeneric) add_str("gen_ai.tool.type", "function");
}

void SpanEncoder::add_content_generic(const Span& s) {
  const auto& output = output_of(s);
  if (is_tool_span(s)) {
    if (s.input) add_str("gen_ai.tool.call.arguments", *s.input);
    if (output) add_str("gen_ai.tool.call.result", *output);
    return;
  }
  const bool gen = s.kind == SpanKind::kGeneration;
  if (gen && !s.input_messages.empty()) {
    std::string j;
    append_genai_messages(j, s.input_messages, {});
    add_str("gen_ai.input.messages", keep(std::move(j)));
  } else if (s.input) {
    add_str("gen_ai.input.messages", keep(wrap_text("user", *s.input, {})));
  }
  if (gen && !s.output_messages.empty()) {
    std::string j;
    append_genai_messages(j, s.output_messages, s.finish_reason);
    add_str("gen_ai.output.messages", keep(std::move(j)));
  } else if (output) {
    add_str("gen_ai.output.messages",
            keep(wrap_text("assistant", *output, gen ? s.finish_reason : "")));
  }
}

void SpanEncoder::add_content_langfuse(const Span& s) {
  const auto& output = output_of(s);
  const bool gen = s.kind == SpanKind::kGeneration;
  if (gen && !s.input_messages.empty()) {
    std::string j;
    append_chat_messages(j, s.input_messages);
    add_str("langfuse.observation.input", keep(std::move(j)));
  } else if (s.input) {
    add_str("langfuse.observation.input", *s.input);
  }
  if (gen && !s.output_messages.empty()) {
    std::string j;
    append_chat_messages(j, s.output_messages);
    add_str("langfuse.observation.output", keep(std::move(j)));
  } else if (output) {
    add_str("langfuse.observation.output", *output);
  }
  // No langfuse.trace.input/output on roots: Langfuse copies a trace's input and output from its
  // root observation, so they would only send the prompt and the answer a second time.
}

void SpanEncoder::add_oi_messages(std::string_view prefix, const std::vector<Message>& messages) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    const std::string base = std::string(prefix) + "." + std::to_string(i) + ".message.";
    add_str(keep(base + "role"), m.role);
    if (m.role == "tool" && !m.parts.empty()) {
      add_str(keep(base + "tool_call_id"), m.parts.front().id);
      add_str(keep(base + "content"), m.parts.front().content);
      continue;
    }
    const std::string reasoning = joined_text(m, true);
    if (reasoning.empty()) {
      if (std::string text = joined_text(m, false); !text.empty())
        add_str(keep(base + "content"), keep(std::move(text)));
    } else {  // typed contents, so the reasoning stays apart from the answer
      std::size_t j = 0;
      for (const MessagePart& p : m.parts) {
        if (p.type != MessagePart::Type::kText && p.type != MessagePart::Type::kReasoning) continue;
        const std::string c = base + "contents." + std::to_string(j++) + ".message_content.";
        add_str(keep(c + "type"), p.type == MessagePart::Type::kText ? "text" : "reasoning");
        add_str(keep(c + "text"), p.content);
      }
    }
    std::size_t k = 0;
    for (const MessagePart& p : m.parts) {
      if (p.type != MessagePart::Type::kToolCall) continue;
      const std::string c = base + "tool_calls." + std::to_string(k++) + ".tool_call.";
      add_str(keep(c + "id"), p.id);
      add_str(keep(c + "function.name"), p.name);
      add_str(keep(c + "function.arguments"),
              p.content.empty() ? std::string_view("{}") : std::string_view(p.content));
    }
  }
}

void SpanEncoder::add_content_phoenix(const Span& s) {
  const auto& output = output_of(s);
  const bool gen = s.kind == SpanKind::kGeneration;
  if (gen && !s.input_messages.empty()) {
    add_oi_messages("llm.input_messages", s.input_messages);
  } else if (s.input) {
    add_str("input.value", *s.input);
    add_str("input.mime_type", s.input_is_json ? "application/json" : "text/plain");
  }
  if (gen && !s.output_messages.empty()) {
    add_oi_messages("llm.output_messages", s.output_messages);
  } else if (output) {
    add_str("output.value", *output);
    add_str("output.mime_type", s.output_is_json ? "application/json" : "text/plain");
  }
}

void SpanEncoder::add_metadata(const Span& s) {
  const Profile p = options_.profile;
  if (p == Profile::kPhoenix) {
    if (!s.metadata.empty()) add_str("metadata", keep(metadata_json(s)));
    return;
  }
  // langfuse: once, under the key Langfuse maps to metadata (roots: the trace's metadata).
  const std::string prefix = p == Profile::kGeneric ? "chsync."
                             : is_root_span(s)      ? "langfuse.trace.metadata."
                                                    : "langfuse.observation.metadata.";
  for (const auto& m : s.metadata) {
    const std::string_view key = keep(prefix + m.key);
    switch (m.type) {
      case chsync::Attr::Type::kString:
      case chsync::Attr::Type::kJson: add_str(key, m.str); break;
      case chsync::Attr::Type::kInt: add_int(key, m.num); break;
      case chsync::Attr::Type::kBool: add_bool(key, m.flag); break;
      case chsync::Attr::Type::kDouble: add_double(key, m.dbl); break;
    }
  }
  if (p == Profile::kLangfuse && !s.finish_reason.empty())
    add_str(keep(prefix + "finish_reason"), s.finish_reason);
}

const std::vector<SpanEncoder::Attr>& SpanEncoder::collect_attributes(const Span& s) {
  attrs_.clear();
  scratch_.clear();
  add_identity(s);
  if (s.kind == SpanKind::kGeneration) add_generation(s);
  if (is_tool_span(s)) add_tool(s);
  if (s.is_error && options_.profile == Profile::kGeneric)
    add_str("error.type", is_tool_span(s) ? "tool_error" : "error");
  switch (options_.profile) {
    case Profile::kGeneric: add_content_generic(s); break;
    case Profile::kLangfuse: add_content_langfuse(s); break;
    case Profile::kPhoenix: add_content_phoenix(s); break;
  }
  add_metadata(s);
  for (auto& a : attrs_) size_attr(a);
  return attrs_;
}

}  // namespace chsync::otlp
