// Minimal JSON output helpers shared by the console/file backends and reports.
#pragma once

#include <string>
#include <string_view>

#include "pipeline/json_escape.h"
#include "pipeline/span.h"

namespace chsync {


// Appends the 19-key console JSON object for a span (design Contracts), without a newline.
void append_span_json(std::string& out, const Span& span);

// Appends the metadata list as a JSON object.
void append_metadata_json(std::string& out, const std::vector<Attr>& metadata);

}  // namespace chsync
