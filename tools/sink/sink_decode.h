// Decoding and strict validation of request bodies received by chsync-sink.
//
// Input: a complete, already-decompressed body. Output: one DecodedSpan (or LegacyEvent) per
// item, each carrying its record line pre-rendered as JSON. Thread: any; each call uses
// thread-local parsers. Errors: returned as `false` plus a human-readable message naming the
// offending item (e.g. "resourceSpans[0].scopeSpans[0].spans[2]: span_id must be 8 bytes").
// A request with any invalid span is rejected as a whole, like Langfuse and the Collector do.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chsync::sink {

struct DecodedSpan {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> span_id{};
  std::array<std::uint8_t, 8> parent_span_id{};
  bool has_parent = false;
  // Record line without its closing part: the state appends `,"request":N}\n`.
  std::string record;
};

// ExportTraceServiceRequest in binary protobuf, decoded with libprotobuf (independent of
// chsync's hand-written encoder).
[[nodiscard]] bool decode_otlp_protobuf(std::string_view body, std::vector<DecodedSpan>& out,
                                        std::string& error);

// ExportTraceServiceRequest in OTLP/JSON (hex ids, lowerCamelCase keys, int64 as string or
// number, integer enums), parsed with simdjson DOM.
[[nodiscard]] bool decode_otlp_json(std::string_view body, std::vector<DecodedSpan>& out,
                                    std::string& error);

struct LegacyEvent {
  std::string id;  // envelope id ("unknown" when missing)
  std::string type;
  std::string body_id;
  std::string error;   // empty when the event is valid
  std::string record;  // record line without its closing part, valid events only
};

// Langfuse legacy `{"batch":[...]}`. Returns false only for whole-request errors (not JSON,
// `batch` not an array); per-event problems land in LegacyEvent::error.
[[nodiscard]] bool decode_legacy_batch(std::string_view body, std::vector<LegacyEvent>& out,
                                       std::string& error);

// gzip/zlib inflate. Stops and sets `too_large` once the output would exceed `limit` bytes.
[[nodiscard]] bool gunzip(std::string_view in, std::size_t limit, std::string& out, bool& too_large,
                          std::string& error);

}  // namespace chsync::sink
