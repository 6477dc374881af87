// Small JSON/encoding helpers shared by the sink's decoder and state (no dependencies).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chsync::sink {

// Appends `s` as a quoted JSON string. `s` must already be valid UTF-8 (callers validate:
// libprotobuf checks proto3 strings, simdjson checks JSON input); bytes >= 0x80 pass through.
void append_json_string(std::string& out, std::string_view s);

// Appends a double as a JSON number; NaN and infinities become the strings "NaN",
// "Infinity", "-Infinity" (the proto3 JSON spelling) because JSON has no such numbers.
void append_json_double(std::string& out, double v);

// Lowercase hex of `n` bytes.
void append_hex(std::string& out, const std::uint8_t* data, std::size_t n);

// Parses exactly `n` bytes of hex (either case) from `hex` (length must be 2n). False on any error.
[[nodiscard]] bool parse_hex(std::string_view hex, std::uint8_t* out, std::size_t n) noexcept;

[[nodiscard]] std::string base64_encode(std::string_view in);

// True when every byte is zero.
[[nodiscard]] bool all_zero(const std::uint8_t* data, std::size_t n) noexcept;

}  // namespace chsync::sink
