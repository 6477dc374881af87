// Messages: see messages.h and docs/mapping.md "Messages".
#include "stages/mapper/messages.h"

#include "stages/redact/redact.h"

namespace chsync::mapper {

std::string render_output_text(const std::vector<Block>& blocks, std::string* text_only) {
  std::string out;
  for (const Block& b : blocks) {
    std::string part;
    switch (b.type) {
      case Block::Type::kText:
        part = b.text;
        if (text_only) {
          if (!text_only->empty()) *text_only += "\n\n";
          *text_only += b.text;
        }
        break;
      case Block::Type::kThinking:
        if (b.text.empty()) continue;  // Opus 4.7 writes only a signature, never exported
        part = "<thinking>\n" + b.text + "\n</thinking>";
        break;
      case Block::Type::kToolUse:
        part = "[tool_use " + b.tool_name + " " + b.tool_id + "]\n" + b.input_json;
        break;
      case Block::Type::kOther: part = "[" + b.type_name + "]"; break;
    }
    if (!out.empty()) out += "\n\n";
    out += part;
  }
  return out;
}

std::string render_input_text(const std::vector<const Entry*>& pending,
                              const ToolNameFn& tool_name) {
  std::string out;
  auto add = [&](const std::string& part) {
    if (!out.empty()) out += "\n\n";
    out += part;
  };
  for (const Entry* e : pending) {
    for (const auto& r : e->results) {
      std::string head = "[tool_result ";
      const std::string name = tool_name(r.tool_use_id);
      if (!name.empty()) head += name + " ";
      head += r.tool_use_id;
      head += r.is_error ? " error]\n" : "]\n";
      add(head + r.content);
    }
    if (!e->text.empty() || e->has_image) add(e->is_meta ? "[meta]\n" + e->text : e->text);
  }
  return out;
}

std::vector<Message> output_messages(const std::vector<Block>& blocks) {
  Message m;
  m.role = "assistant";
  for (const Block& b : blocks) {
    MessagePart p;
    switch (b.type) {
      case Block::Type::kText:
        p.type = MessagePart::Type::kText;
        p.content = b.text;
        break;
      case Block::Type::kThinking:
        if (b.text.empty()) continue;
        p.type = MessagePart::Type::kReasoning;
        p.content = b.text;
        break;
      case Block::Type::kToolUse:
        p.type = MessagePart::Type::kToolCall;
        p.id = b.tool_id;
        p.name = b.tool_name;
        p.content = b.input_json.empty() ? std::string("{}") : b.input_json;
        break;
      case Block::Type::kOther: continue;
    }
    m.parts.push_back(std::move(p));
  }
  std::vector<Message> out;
  if (!m.parts.empty()) out.push_back(std::move(m));
  return out;
}

std::vector<Message> input_messages(const std::vector<const Entry*>& pending,
                                    const ToolNameFn& tool_name) {
  std::vector<Message> out;
  for (const Entry* e : pending) {
    for (const auto& r : e->results) {
      Message m;
      m.role = "tool";
      MessagePart p;
      p.type = MessagePart::Type::kToolCallResponse;
      p.id = r.tool_use_id;
      p.name = tool_name(r.tool_use_id);
      p.content = r.content;
      p.is_error = r.is_error;
      m.parts.push_back(std::move(p));
      out.push_back(std::move(m));
    }
    if (e->text.empty() && !e->has_image) continue;
    Message m;
    m.role = "user";
    MessagePart p;
    p.content = e->is_meta ? "[meta]\n" + e->text : e->text;
    m.parts.push_back(std::move(p));
    out.push_back(std::move(m));
  }
  return out;
}

std::string finish_reason(std::string_view stop, const std::vector<Block>& blocks, bool api_error,
                          bool* inferred) {
  if (inferred) *inferred = false;
  if (api_error) return "error";
  if (stop == "end_turn" || stop == "stop_sequence" || stop == "pause_turn") return "stop";
  if (stop == "max_tokens" || stop == "model_context_window_exceeded") return "length";
  if (stop == "tool_use") return "tool_call";
  if (stop == "refusal") return "content_filter";
  if (!stop.empty()) return "";  // a value this mapping does not know: only the raw one is kept
  if (!blocks.empty() && blocks.back().type == Block::Type::kToolUse) {
    if (inferred) *inferred = true;
    return "tool_call";
  }
  return "";
}

namespace {

void strip_content(std::vector<Message>& list) {
  for (Message& m : list) {
    std::erase_if(m.parts, [](const MessagePart& p) {
      return p.type == MessagePart::Type::kText || p.type == MessagePart::Type::kReasoning;
    });
    for (MessagePart& p : m.parts) p.content.clear();
  }
  std::erase_if(list, [](const Message& m) { return m.parts.empty(); });
}

void truncate_list(std::vector<Message>& list, std::size_t max_bytes) {
  std::size_t left = max_bytes;
  for (Message& m : list)
    for (MessagePart& p : m.parts) {
      if (p.content.size() <= left) {
        left -= p.content.size();
        continue;
      }
      p.truncated = true;
      p.original_bytes = p.content.size();
      p.content.resize(utf8_cut(p.content, left));
      left -= p.content.size();
    }
}

}  // namespace

void apply_message_policy(Span& span, const Redactor* redactor, bool no_content,
                          std::size_t max_bytes) {
  for (auto* list : {&span.input_messages, &span.output_messages}) {
    if (no_content) {
      strip_content(*list);
      continue;
    }
    if (redactor != nullptr)
      for (Message& m : *list)
        for (MessagePart& p : m.parts) redactor->redact_uncounted(p.content);
    if (max_bytes != 0) truncate_list(*list, max_bytes);
  }
}

std::string prompt_preview(std::string_view text) {
  constexpr std::size_t kMaxWords = 8, kMaxBytes = 80;
  std::string out;
  std::size_t words = 0, i = 0;
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (i < text.size() && words < kMaxWords) {
    while (i < text.size() && space(text[i])) ++i;
    std::size_t j = i;
    while (j < text.size() && !space(text[j])) ++j;
    if (j == i) break;
    std::string next = out.empty() ? std::string() : std::string(" ");
    next.append(text.substr(i, j - i));
    if (out.size() + next.size() > kMaxBytes) {
      out += next.substr(0, utf8_cut(next, kMaxBytes - out.size()));
      break;
    }
    out += next;
    ++words;
    i = j;
  }
  return out;
}

}  // namespace chsync::mapper
