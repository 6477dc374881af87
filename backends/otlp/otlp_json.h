// OTLP/JSON encoder (protocols §B.2): lowercase hex ids, integer enums, int64 as decimal strings,
// lowerCamelCase keys. Same attribute set as the protobuf encoder
// (SpanEncoder::collect_attributes). Each span is appended as "," + object, so any contiguous run
// of slices can be framed by build_json_request() (which drops the leading comma), exactly like the
// protobuf slices.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "backends/otlp/otlp_proto.h"

namespace chsync::otlp {

class JsonSpanEncoder {
 public:
  explicit JsonSpanEncoder(EncoderOptions options = {}) : attrs_(std::move(options)) {}
  std::size_t append_span(const Span& span, std::string& out);

 private:
  SpanEncoder attrs_;
};

std::string json_resource(const StringPairs& attributes);  // {"attributes":[...]}
std::string json_scope(std::string_view name,
                       std::string_view version);  // {"name":..,"version":..}
void build_json_request(std::string_view resource, std::string_view scope, std::string_view spans,
                        std::string& out);

}  // namespace chsync::otlp
