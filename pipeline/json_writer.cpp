#include "pipeline/json_writer.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace chsync {

JsonWriter& JsonWriter::value(double d) {
  if (!std::isfinite(d)) return null();
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return raw(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

JsonWriter& JsonWriter::fixed(double d, int decimals) {
  if (!std::isfinite(d)) return null();
  return raw(fmt::format("{:.{}f}", d, decimals));
}

JsonWriter& JsonWriter::integer(std::int64_t n) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  return raw(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

JsonWriter& JsonWriter::unsigned_integer(std::uint64_t n) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  return raw(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

JsonWriter& JsonWriter::open(char c) {
  separate();
  if (depth_ == 64) throw std::logic_error("JsonWriter: more than 64 levels of nesting");
  out_.push_back(c);
  ++depth_;
  has_items_ &= ~(std::uint64_t{1} << (depth_ - 1));
  return *this;
}

JsonWriter& JsonWriter::close(char c) {
  if (depth_ == 0) throw std::logic_error("JsonWriter: end without begin");
  --depth_;
  out_.push_back(c);
  return *this;
}

}  // namespace chsync
