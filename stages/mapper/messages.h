// Messages: the chat content of a generation as typed parts (docs/mapping.md "Messages").
//
// Contract: build the structured input (the user entries since the previous call: prompts, meta
// text, tool results) and output (the response's content blocks) of one generation, map
// Anthropic's stop_reason to the OTel finish reasons, and apply the content policy to the parts
// (--redact, --no-content, truncation within one budget per list). Also the plain-text renderings
// the console prints (the 19-key schema keeps `input`/`output` strings).
// Thread: pure functions. Errors: none (every input gives some output).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/span.h"
#include "stages/mapper/entry.h"

namespace chsync {
class Redactor;
}

namespace chsync::mapper {

// Tool name for a tool_use_id ("" when the call is not in the bundle).
using ToolNameFn = std::function<std::string(const std::string& tool_use_id)>;

// Plain text of a response: blocks joined by a blank line (thinking in <thinking> tags, tool_use
// as "[tool_use NAME ID]\n<input JSON>"). text_only (optional) gets the text blocks alone.
std::string render_output_text(const std::vector<Block>& blocks, std::string* text_only);
// Plain text of a call's input delta (prompts, "[meta]" text, "[tool_result NAME ID]" blocks).
std::string render_input_text(const std::vector<const Entry*>& pending,
                              const ToolNameFn& tool_name);

// One assistant message with a part per block (text, reasoning, tool_call); empty thinking and
// unknown block types (redacted_thinking, ...) give no part. Empty when no block gives a part.
std::vector<Message> output_messages(const std::vector<Block>& blocks);
// A "tool" message per tool_result (one tool_call_response part) and a "user" message per text,
// in entry order.
std::vector<Message> input_messages(const std::vector<const Entry*>& pending,
                                    const ToolNameFn& tool_name);

// Anthropic stop_reason -> OTel finish reason: end_turn/stop_sequence/pause_turn -> stop,
// max_tokens/model_context_window_exceeded -> length, tool_use -> tool_call, refusal ->
// content_filter; an API error -> error. Without a stop_reason, a response whose last block is a
// tool_use stopped for that call (the API ends a response after its tool_use blocks): tool_call,
// with *inferred = true. Otherwise "" (the transcript does not say).
std::string finish_reason(std::string_view stop_reason, const std::vector<Block>& blocks,
                          bool api_error, bool* inferred);

// Content policy on a span's messages, in the order the flat fields get it: no_content keeps only
// the structure (tool_call ids and names, tool_call_response ids; text and reasoning parts are
// dropped); else the redactor (uncounted: the flat fields already counted these secrets); then the
// parts of each list share max_bytes (0: no limit), cut at UTF-8 boundaries, marked truncated.
void apply_message_policy(Span& span, const Redactor* redactor, bool no_content,
                          std::size_t max_bytes);

// The first words of a prompt (at most 8 words and 80 bytes, whitespace collapsed): a label for
// the root, so traces named by --trace-name can still be told apart in a list.
std::string prompt_preview(std::string_view text);

}  // namespace chsync::mapper
