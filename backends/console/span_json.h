// The console/file backend's JSON line for a span: the 19-key object of the design Contracts,
// written with pipeline/json_writer.h (the one JSON writer).
#pragma once

#include <string>

#include "pipeline/span.h"

namespace chsync {

// Appends the 19-key console JSON object for a span (design Contracts), without a newline.
void append_span_json(std::string& out, const Span& span);

}  // namespace chsync
