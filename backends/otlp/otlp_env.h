// OTLP configuration from the standard environment variables (protocols §B.6, design Contracts).
// Pure functions of the values (the CLI reads getenv and passes them in), so they are testable.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pipeline/text.h"

namespace chsync::otlp {

// --endpoint (as is), else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is; an empty path becomes "/"),
// else OTEL_EXPORTER_OTLP_ENDPOINT + "v1/traces" (adding "/" when missing),
// else http://127.0.0.1:4318/v1/traces. Empty strings count as unset.
std::string resolve_endpoint(std::string_view flag, std::string_view traces_env,
                             std::string_view base_env);

// "%41" -> "A". Malformed escapes are kept literally (pipeline/text.h).
using chsync::percent_decode;

// OTEL_EXPORTER_OTLP_HEADERS / OTEL_RESOURCE_ATTRIBUTES: "k1=v1,k2=v2", keys and values trimmed and
// percent-decoded, entries without '=' or with an empty key skipped (counted in *skipped).
std::vector<std::pair<std::string, std::string>> parse_key_values(std::string_view s,
                                                                  std::size_t* skipped = nullptr);
inline std::vector<std::pair<std::string, std::string>> parse_headers(std::string_view s) {
  return parse_key_values(s);
}
// Resource attributes; OTEL_SERVICE_NAME (if non-empty) replaces/sets service.name.
std::vector<std::pair<std::string, std::string>> parse_resource_attributes(
    std::string_view attrs_env, std::string_view service_name_env);

// OTEL_EXPORTER_OTLP_TIMEOUT: integer milliseconds; nullopt when malformed or empty. 0 = no limit.
std::optional<std::chrono::milliseconds> parse_timeout_ms(std::string_view s);
// OTEL_EXPORTER_OTLP_COMPRESSION: "gzip" -> true, "none" -> false, else nullopt.
std::optional<bool> parse_compression_gzip(std::string_view s);

}  // namespace chsync::otlp
