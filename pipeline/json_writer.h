// JsonWriter: the one way chsync writes JSON text (reports, status, print-config, dead letters,
// log lines, console and Langfuse legacy output). Escaping is pipeline/json_escape.h; this adds
// the separators, so no caller counts commas, and one number format:
//   integers as decimal; doubles as the shortest text that reads back to the same value
//   (std::to_chars), a non-finite double as null (JSON has no NaN or infinity);
//   fixed(v, n) for rates rounded to n decimals ("%.nf").
// Use: JsonWriter w(out); w.begin_object().field("a", 1).key("b").begin_array()...end_object();
// It appends to the caller's string and checks nothing but nesting depth (at most 64): the
// caller pairs begin/end and puts a key before each value of an object. Not thread-safe.
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pipeline/json_escape.h"

namespace chsync {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }
  JsonWriter& key(std::string_view k) {
    separate();
    append_json_string(out_, k);
    out_.push_back(':');
    after_key_ = true;
    return *this;
  }

  JsonWriter& value(std::string_view s) {
    separate();
    append_json_string(out_, s);
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  // An absent optional is null.
  JsonWriter& value(const std::optional<std::string>& s) { return s ? value(*s) : null(); }
  JsonWriter& value(bool b) { return raw(b ? "true" : "false"); }
  template <std::integral T>
  requires(!std::same_as<T, bool>) JsonWriter& value(T n) {
    if constexpr (std::signed_integral<T>) return integer(static_cast<std::int64_t>(n));
    else return unsigned_integer(static_cast<std::uint64_t>(n));
  }
  JsonWriter& value(double d);
  JsonWriter& fixed(double d, int decimals);
  JsonWriter& null() { return raw("null"); }
  // An already-serialised JSON value, written as it is.
  JsonWriter& raw(std::string_view json) {
    separate();
    out_.append(json);
    return *this;
  }

  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  std::string& out() { return out_; }

 private:
  JsonWriter& integer(std::int64_t n);
  JsonWriter& unsigned_integer(std::uint64_t n);
  JsonWriter& open(char c);
  JsonWriter& close(char c);
  // Before a key or a value: a comma unless it is the first of its container or follows a key.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (depth_ == 0) return;
    const std::uint64_t bit = std::uint64_t{1} << (depth_ - 1);
    if (has_items_ & bit) out_.push_back(',');
    has_items_ |= bit;
  }

  std::string& out_;
  std::uint64_t has_items_ = 0;  // bit d-1: the container at depth d has an item
  unsigned depth_ = 0;
  bool after_key_ = false;
};

}  // namespace chsync
