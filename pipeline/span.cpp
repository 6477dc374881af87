#include "pipeline/span.h"

#include <charconv>
#include <cstdio>
#include <ctime>

#include "pipeline/json_writer.h"
#include "pipeline/text.h"

namespace chsync {

std::string_view to_string(SpanKind kind) noexcept {
  switch (kind) {
    case SpanKind::kTrace: return "trace";
    case SpanKind::kGeneration: return "generation";
    case SpanKind::kSpan: return "span";
    case SpanKind::kAgent: return "agent";
    case SpanKind::kEvent: return "event";
  }
  return "span";
}

std::uint64_t Span::span_key() const noexcept {
  std::uint64_t k = 0;
  for (auto b : span_id) k = (k << 8) | b;
  return k;
}

SpanId span_id_from_key(std::uint64_t key) noexcept {
  SpanId id{};
  for (int i = 7; i >= 0; --i) {
    id[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(key & 0xff);
    key >>= 8;
  }
  return id;
}

std::string to_hex(const std::uint8_t* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::size_t approx_bytes(const Span& s) noexcept {
  // Heap bytes as allocated (capacity, not size: strings built by appending hold up to twice
  // their length), so the byte-bounded queues admit what memory really holds (issue 19: the
  // result queue's 64 MiB held ~1.5x that in RSS).
  auto str = [](const std::string& x) -> std::size_t {
    return x.capacity() > 15 ? x.capacity() + 1 : 0;  // libstdc++: 15 chars inline
  };
  auto opt = [&](const std::optional<std::string>& o) -> std::size_t { return o ? str(*o) : 0; };
  std::size_t n = sizeof(Span) + str(s.name) + str(s.source_file) + str(s.session_id) +
                  str(s.user_id) + str(s.status_message) + str(s.stop_reason) +
                  str(s.finish_reason) + str(s.trace_name) + str(s.response_id) +
                  str(s.tool_use_id) + str(s.agent_id) + str(s.agent_name);
  n += opt(s.input) + opt(s.output) + opt(s.model) + opt(s.tool_name) + opt(s.tool_result);
  n += s.metadata.capacity() * sizeof(Attr);
  for (const auto& a : s.metadata) n += str(a.key) + str(a.str);
  for (const auto* list : {&s.input_messages, &s.output_messages}) {
    n += list->capacity() * sizeof(Message);
    for (const Message& m : *list) {
      n += str(m.role) + m.parts.capacity() * sizeof(MessagePart);
      for (const MessagePart& p : m.parts) n += str(p.content) + str(p.id) + str(p.name);
    }
  }
  return n;
}

namespace {
bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}
}  // namespace

bool parse_rfc3339_ms(std::string_view s, std::int64_t& epoch_ms) noexcept {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' ||
      !digits(s, 17, 2, se))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
  std::size_t pos = 19;
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int ndig = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (ndig < 3) ms = ms * 10 + (s[pos] - '0');
      ++ndig;
      ++pos;
    }
    if (ndig == 0) return false;
    for (int i = ndig; i < 3; ++i) ms *= 10;
  }
  std::int64_t offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh = 0, om = 0;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, om))
      return false;
    offset_min = (std::int64_t{oh} * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  epoch_ms = ((days * 24 + h) * 60 + mi - offset_min) * 60000LL + se * 1000LL + ms;
  return true;
}

std::string format_rfc3339_ms(std::int64_t epoch_ms) {
  std::int64_t secs = epoch_ms / 1000;
  std::int64_t ms = epoch_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  std::int64_t days = secs / 86400;
  std::int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  // civil_from_days
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ",
                static_cast<long long>(y), m, d, static_cast<long long>(rem / 3600),
                static_cast<long long>((rem / 60) % 60), static_cast<long long>(rem % 60),
                static_cast<long long>(ms));
  return buf;
}

void write_attr_value(JsonWriter& w, const Attr& a) {
  switch (a.type) {
    case Attr::Type::kString: w.value(a.str); break;
    case Attr::Type::kInt: w.value(a.num); break;
    case Attr::Type::kBool: w.value(a.flag); break;
    case Attr::Type::kDouble: w.value(a.dbl); break;
    case Attr::Type::kJson:
      if (a.str.empty()) w.null();
      else w.raw(a.str);
      break;
  }
}

void write_metadata(JsonWriter& w, const std::vector<Attr>& metadata) {
  w.begin_object();
  for (const Attr& a : metadata) {
    w.key(a.key);
    write_attr_value(w, a);
  }
  w.end_object();
}

}  // namespace chsync
