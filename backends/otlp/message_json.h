// Message renderings of a span's typed message parts (pipeline/span.h Message), one per target.
//
// Contract:
// * append_genai_messages(): the JSON of `gen_ai.input.messages` / `gen_ai.output.messages` (OTel
//   GenAI conventions): [{role, parts:[{type:text|reasoning, content} | {type:tool_call, id, name,
//   arguments} | {type:tool_call_response, id, response}], finish_reason?}]. Arguments are embedded
//   as JSON (the transcript's tool input); a truncated part carries "truncated":true and
//   "original_bytes", and truncated arguments become a JSON string (cut JSON is not JSON).
// * append_chat_messages(): the same messages as chat messages in the form Langfuse renders and
//   mines for tool calls: {role:user, content} / {role:tool, tool_call_id, name, content} /
//   {role:assistant, content, reasoning?, tool_calls:[{id, type:function, function:{name,
//   arguments(string)}}]}; a message with a truncated part carries "truncated":true.
// Output is always valid JSON (strings escaped, arguments embedded only when they are untruncated
// JSON text). Thread: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pipeline/span.h"

namespace chsync::otlp {

void append_genai_messages(std::string& out, const std::vector<Message>& messages,
                           std::string_view finish_reason);
void append_chat_messages(std::string& out, const std::vector<Message>& messages);

// Text parts (kText) of a message joined by a blank line; reasoning likewise when reasoning=true.
std::string joined_text(const Message& m, bool reasoning);

}  // namespace chsync::otlp
