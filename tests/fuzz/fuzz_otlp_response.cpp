// libFuzzer: the OTLP response decoders the exporter runs on every backend answer:
// ExportTraceServiceResponse.partial_success (protobuf and JSON) and google.rpc.Status.message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backends/otlp/otlp_proto.h"

using namespace chsync;
using namespace chsync::otlp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(raw), size);
  PartialSuccess p;
  if (decode_partial_success_proto(body, p)) {
    if (p.error_message.size() > size) std::abort();
  }
  PartialSuccess j;
  decode_partial_success_json(body, j);
  std::string m = decode_rpc_status_message(body);
  if (m.size() > size) std::abort();
  return 0;
}
