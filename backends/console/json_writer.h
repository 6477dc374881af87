// Minimal JSON output helpers shared by the console/file backends and reports.
#pragma once

#include <string>
#include <string_view>

#include "pipeline/span.h"

namespace chsync {

// Appends s as a JSON string literal (quotes included). Control characters are escaped; valid
// UTF-8 passes through unchanged (inputs were validated/repaired by the parser).
void append_json_string(std::string& out, std::string_view s);

// Appends the 19-key console JSON object for a span (design Contracts), without a newline.
void append_span_json(std::string& out, const Span& span);

// Appends the metadata list as a JSON object.
void append_metadata_json(std::string& out, const std::vector<Attr>& metadata);

}  // namespace chsync
