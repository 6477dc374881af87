// Message renderings: see message_json.h.
#include "backends/otlp/message_json.h"

#include "pipeline/json_escape.h"

namespace chsync::otlp {

namespace {

void truncation(std::string& out, const MessagePart& p) {
  if (!p.truncated) return;
  out += ",\"truncated\":true,\"original_bytes\":";
  out += std::to_string(p.original_bytes);
}

// Tool arguments as JSON: the raw input JSON when whole, else a JSON string of what is left.
void arguments_json(std::string& out, const MessagePart& p) {
  if (!p.truncated && !p.content.empty()) out += p.content;
  else append_json_string(out, p.content);
}

void genai_part(std::string& out, const MessagePart& p) {
  using T = MessagePart::Type;
  switch (p.type) {
    case T::kText:
    case T::kReasoning:
      out += p.type == T::kText ? "{\"type\":\"text\",\"content\":"
                                : "{\"type\":\"reasoning\",\"content\":";
      append_json_string(out, p.content);
      break;
    case T::kToolCall:
      out += "{\"type\":\"tool_call\",\"id\":";
      append_json_string(out, p.id);
      out += ",\"name\":";
      append_json_string(out, p.name);
      if (!p.content.empty() || p.truncated) {  // --no-content leaves no arguments at all
        out += ",\"arguments\":";
        arguments_json(out, p);
      }
      break;
    case T::kToolCallResponse:
      out += "{\"type\":\"tool_call_response\",\"id\":";
      append_json_string(out, p.id);
      out += ",\"response\":";
      if (p.content.empty() && !p.truncated) out += "null";
      else append_json_string(out, p.content);
      if (p.is_error) out += ",\"is_error\":true";
      break;
  }
  truncation(out, p);
  out += '}';
}

// Opens the i-th object of a message array: [,]{"role":"...".
void begin_message(std::string& out, std::size_t i, const Message& m) {
  if (i) out += ',';
  out += "{\"role\":";
  append_json_string(out, m.role);
}

}  // namespace

std::string joined_text(const Message& m, bool reasoning) {
  const auto want = reasoning ? MessagePart::Type::kReasoning : MessagePart::Type::kText;
  std::string out;
  for (const MessagePart& p : m.parts) {
    if (p.type != want) continue;
    if (!out.empty()) out += "\n\n";
    out += p.content;
  }
  return out;
}

void append_genai_messages(std::string& out, const std::vector<Message>& messages,
                           std::string_view finish_reason) {
  out += '[';
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    begin_message(out, i, m);
    out += ",\"parts\":[";
    for (std::size_t k = 0; k < m.parts.size(); ++k) {
      if (k) out += ',';
      genai_part(out, m.parts[k]);
    }
    out += ']';
    if (!finish_reason.empty()) {
      out += ",\"finish_reason\":";
      append_json_string(out, finish_reason);
    }
    out += '}';
  }
  out += ']';
}

void append_chat_messages(std::string& out, const std::vector<Message>& messages) {
  out += '[';
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    begin_message(out, i, m);
    bool truncated = false;
    for (const MessagePart& p : m.parts) truncated = truncated || p.truncated;
    if (m.role == "tool" && !m.parts.empty()) {
      const MessagePart& p = m.parts.front();
      out += ",\"tool_call_id\":";
      append_json_string(out, p.id);
      if (!p.name.empty()) {
        out += ",\"name\":";
        append_json_string(out, p.name);
      }
      out += ",\"content\":";
      append_json_string(out, p.content);
      if (p.is_error) out += ",\"is_error\":true";
    } else {
      out += ",\"content\":";
      append_json_string(out, joined_text(m, false));
      if (const std::string r = joined_text(m, true); !r.empty()) {
        out += ",\"reasoning\":";
        append_json_string(out, r);
      }
      bool first = true;
      for (const MessagePart& p : m.parts) {
        if (p.type != MessagePart::Type::kToolCall) continue;
        out += first ? ",\"tool_calls\":[" : ",";
        first = false;
        out += "{\"id\":";
        append_json_string(out, p.id);
        out += ",\"type\":\"function\",\"function\":{\"name\":";
        append_json_string(out, p.name);
        out += ",\"arguments\":";
        append_json_string(out, p.content.empty() && !p.truncated ? std::string_view("{}")
                                                                  : std::string_view(p.content));
        out += "}}";
      }
      if (!first) out += ']';
    }
    if (truncated) out += ",\"truncated\":true";
    out += '}';
  }
  out += ']';
}

}  // namespace chsync::otlp
