// Small text helpers shared by the command line, the HTTP client and the backends: list and
// whitespace handling, percent-decoding, and civil dates. Pure functions, no allocation beyond
// the returned strings; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chsync {

// Spaces and tabs (std::isspace) removed from both ends.
std::string_view trim(std::string_view s) noexcept;

// "a, b,,c" -> {"a", "b", "c"}: comma-separated items, spaces dropped anywhere, empty items
// skipped. lowercase: ASCII letters folded (host names, NO_PROXY).
std::vector<std::string> split_list(std::string_view s, bool lowercase = false);

// Value of one hexadecimal digit, -1 when c is not one.
int hex_digit_value(char c) noexcept;

// RFC 3986 percent-decoding: "%41" -> "A"; a '%' not followed by two hex digits stays as is.
std::string percent_decode(std::string_view s);

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept;

// The text of an errno value, as std::strerror gives it but from any thread: strerror may share
// one buffer between threads (glibc documents it MT-Unsafe), and readers, the spool and the
// console backend report I/O errors from worker threads.
std::string errno_text(int err);

// The longest prefix of s of at most max_bytes bytes that does not split a UTF-8 sequence.
std::size_t utf8_cut(std::string_view s, std::size_t max_bytes) noexcept;

}  // namespace chsync
