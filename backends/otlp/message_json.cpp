// Message renderings: see message_json.h.
#include "backends/otlp/message_json.h"

#include "pipeline/json_escape.h"

namespace chsync::otlp {

namespace {

void str(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

void truncation(std::string& out, const MessagePart& p) {
  if (!p.truncated) return;
  out += ",\"truncated\":true,\"original_bytes\":";
  out += std::to_string(p.original_bytes);
}

// Tool arguments as JSON: the raw input JSON when whole, else a JSON string of what is left.
void arguments_json(std::string& out, const MessagePart& p) {
  if (!p.truncated && !p.content.empty()) out += p.content;
  else str(out, p.content);
}

void genai_part(std::string& out, const MessagePart& p) {
  using T = MessagePart::Type;
  switch (p.type) {
    case T::kText:
    case T::kReasoning:
      out += p.type == T::kText ? "{\"type\":\"text\",\"content\":" : "{\"type\":\"reasoning\",\"content\":";
      str(out, p.content);
      break;
    case T::kToolCall:
      out += "{\"type\":\"tool_call\",\"id\":";
      str(out, p.id);
      out += ",\"name\":";
      str(out, p.name);
      if (!p.content.empty() || p.truncated) {  // --no-content leaves no arguments at all
        out += ",\"arguments\":";
        arguments_json(out, p);
      }
      break;
    case T::kToolCallResponse:
      out += "{\"type\":\"tool_call_response\",\"id\":";
      str(out, p.id);
      out += ",\"response\":";
      if (p.content.empty() && !p.truncated) out += "null";
      else str(out, p.content);
      if (p.is_error) out += ",\"is_error\":true";
      break;
  }
  truncation(out, p);
  out += '}';
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

void append_genai_messages(std::string& out, const std::vector<Message>& messages, std::string_view finish_reason) {
  out += '[';
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (i) out += ',';
    out += "{\"role\":";
    str(out, m.role);
    out += ",\"parts\":[";
    for (std::size_t k = 0; k < m.parts.size(); ++k) {
      if (k) out += ',';
      genai_part(out, m.parts[k]);
    }
    out += ']';
    if (!finish_reason.empty()) {
      out += ",\"finish_reason\":";
      str(out, finish_reason);
    }
    out += '}';
  }
  out += ']';
}

void append_chat_messages(std::string& out, const std::vector<Message>& messages) {
  out += '[';
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (i) out += ',';
    out += "{\"role\":";
    str(out, m.role);
    bool truncated = false;
    for (const MessagePart& p : m.parts) truncated = truncated || p.truncated;
    if (m.role == "tool" && !m.parts.empty()) {
      const MessagePart& p = m.parts.front();
      out += ",\"tool_call_id\":";
      str(out, p.id);
      if (!p.name.empty()) {
        out += ",\"name\":";
        str(out, p.name);
      }
      out += ",\"content\":";
      str(out, p.content);
      if (p.is_error) out += ",\"is_error\":true";
    } else {
      out += ",\"content\":";
      str(out, joined_text(m, false));
      if (const std::string r = joined_text(m, true); !r.empty()) {
        out += ",\"reasoning\":";
        str(out, r);
      }
      bool first = true;
      for (const MessagePart& p : m.parts) {
        if (p.type != MessagePart::Type::kToolCall) continue;
        out += first ? ",\"tool_calls\":[" : ",";
        first = false;
        out += "{\"id\":";
        str(out, p.id);
        out += ",\"type\":\"function\",\"function\":{\"name\":";
        str(out, p.name);
        out += ",\"arguments\":";
        str(out, p.content.empty() && !p.truncated ? std::string_view("{}") : std::string_view(p.content));
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
