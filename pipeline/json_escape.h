// JSON string escaping (RFC 8259), shared by every writer of JSON text (console output, OTLP
// JSON and attribute values, Langfuse events, the mapper's tool arguments, reports).
// Control characters are escaped (short forms where JSON has them, \u00XX otherwise); valid
// UTF-8 passes through unchanged (the parser has already repaired invalid sequences).
#pragma once

#include <string>
#include <string_view>

namespace chsync {

// Appends the escaped form of s, without quotes.
void append_json_escaped(std::string& out, std::string_view s);
// Appends s as a JSON string literal, with quotes.
inline void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  append_json_escaped(out, s);
  out.push_back('"');
}

}  // namespace chsync
