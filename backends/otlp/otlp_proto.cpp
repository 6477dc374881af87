#include "backends/otlp/otlp_proto.h"

#include <cstring>
#include <limits>
#include <string>

namespace chsync::otlp {

using pb::varint_size;
using pb::write_varint;

std::string_view to_string(Profile p) noexcept {
  switch (p) {
    case Profile::kGeneric: return "generic";
    case Profile::kLangfuse: return "langfuse";
    case Profile::kPhoenix: return "phoenix";
  }
  return "generic";
}

namespace {

constexpr char kTagKvKey = 0x0A, kTagKvValue = 0x12;
constexpr char kTagAnyString = 0x0A, kTagAnyBool = 0x10, kTagAnyInt = 0x18, kTagAnyDouble = 0x21,
               kTagAnyArray = 0x2A;

inline char* put_tag_len(char* p, char tag, std::size_t n) {
  *p++ = tag;
  return write_varint(p, n);
}
inline char* put_bytes(char* p, const void* data, std::size_t n) {
  if (n) std::memcpy(p, data, n);
  return p + n;
}
inline char* put_fixed64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) *p++ = static_cast<char>((v >> (8 * i)) & 0xff);
  return p;
}
inline char* put_fixed32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) *p++ = static_cast<char>((v >> (8 * i)) & 0xff);
  return p;
}

}  // namespace

void size_attr(SpanEncoder::Attr& a) {
  using T = SpanEncoder::Attr::Type;
  switch (a.type) {
    case T::kString: a.any_size = pb::len_field_size(a.str.size()); break;
    case T::kInt: a.any_size = 1 + varint_size(static_cast<std::uint64_t>(a.num)); break;
    case T::kBool: a.any_size = 2; break;
    case T::kDouble: a.any_size = 9; break;
    case T::kStringArray1: {
      const std::size_t inner = pb::len_field_size(a.str.size());  // AnyValue{string}
      const std::size_t array = pb::len_field_size(inner);         // ArrayValue{values}
      a.any_size = pb::len_field_size(array);                      // AnyValue{array_value}
      break;
    }
  }
  a.kv_size = pb::len_field_size(a.key.size()) + pb::len_field_size(a.any_size);
}

namespace {

char* write_attr(char* p, const SpanEncoder::Attr& a) {
  using T = SpanEncoder::Attr::Type;
  p = put_tag_len(p, kTagKvKey, a.key.size());
  p = put_bytes(p, a.key.data(), a.key.size());
  p = put_tag_len(p, kTagKvValue, a.any_size);
  switch (a.type) {
    case T::kString:
      p = put_tag_len(p, kTagAnyString, a.str.size());
      p = put_bytes(p, a.str.data(), a.str.size());
      break;
    case T::kInt:
      *p++ = kTagAnyInt;
      p = write_varint(p, static_cast<std::uint64_t>(a.num));
      break;
    case T::kBool:
      *p++ = kTagAnyBool;
      *p++ = a.flag ? 1 : 0;
      break;
    case T::kDouble: {
      *p++ = kTagAnyDouble;
      std::uint64_t bits = 0;
      std::memcpy(&bits, &a.dbl, 8);
      p = put_fixed64(p, bits);
      break;
    }
    case T::kStringArray1: {
      const std::size_t inner = pb::len_field_size(a.str.size());
      p = put_tag_len(p, kTagAnyArray, pb::len_field_size(inner));
      p = put_tag_len(p, 0x0A, inner);  // ArrayValue.values
      p = put_tag_len(p, kTagAnyString, a.str.size());
      p = put_bytes(p, a.str.data(), a.str.size());
      break;
    }
  }
  return p;
}

std::uint64_t ms_to_ns(std::int64_t ms) {
  return ms <= 0 ? 0 : static_cast<std::uint64_t>(ms) * 1000000ull;
}

}  // namespace

std::size_t SpanEncoder::append_span(const Span& s, std::string& out) {
  const auto& attrs = collect_attributes(s);
  const std::uint64_t start_ns = ms_to_ns(s.start_ms);
  const std::uint64_t end_ns =
      s.kind == SpanKind::kEvent ? start_ns : ms_to_ns(std::max(s.end_ms, s.start_ms));
  const std::uint64_t kind = s.kind == SpanKind::kGeneration ? 3 : 1;  // CLIENT : INTERNAL

  std::size_t status_size = 0;
  if (s.is_error) {
    status_size = 2;  // code = 2
    if (!s.status_message.empty()) status_size += pb::len_field_size(s.status_message.size());
  }
  std::size_t n = 18 + 10;  // trace_id, span_id
  if (s.has_parent) n += 10;
  if (!s.name.empty()) n += pb::len_field_size(s.name.size());
  n += 2 + 9 + 9;  // kind, start, end
  for (const auto& a : attrs) n += pb::len_field_size(a.kv_size);
  if (s.is_error) n += pb::len_field_size(status_size);
  if (options_.emit_flags) n += 2 + 4;

  const std::size_t total = pb::len_field_size(n);
  const std::size_t old = out.size();
  out.resize(old + total);
  char* p = out.data() + old;
  p = put_tag_len(p, 0x12, n);  // ScopeSpans.spans
  p = put_tag_len(p, 0x0A, 16);
  p = put_bytes(p, s.trace_id.data(), 16);
  p = put_tag_len(p, 0x12, 8);
  p = put_bytes(p, s.span_id.data(), 8);
  if (s.has_parent) {
    p = put_tag_len(p, 0x22, 8);
    p = put_bytes(p, s.parent_id.data(), 8);
  }
  if (!s.name.empty()) {
    p = put_tag_len(p, 0x2A, s.name.size());
    p = put_bytes(p, s.name.data(), s.name.size());
  }
  *p++ = 0x30;
  p = write_varint(p, kind);
  *p++ = 0x39;
  p = put_fixed64(p, start_ns);
  *p++ = 0x41;
  p = put_fixed64(p, end_ns);
  for (const auto& a : attrs) {
    p = put_tag_len(p, 0x4A, a.kv_size);
    p = write_attr(p, a);
  }
  if (s.is_error) {
    p = put_tag_len(p, 0x7A, status_size);
    if (!s.status_message.empty()) {
      p = put_tag_len(p, 0x12, s.status_message.size());
      p = put_bytes(p, s.status_message.data(), s.status_message.size());
    }
    *p++ = 0x18;
    *p++ = 2;
  }
  if (options_.emit_flags) {
    *p++ = static_cast<char>(0x85);
    *p++ = 0x01;
    p = put_fixed32(p, 0x101);
  }
  (void)p;  // p == out.data() + old + total by construction (checked in tests by decoding)
  return total;
}

std::string encode_resource(const StringPairs& attributes) {
  std::vector<SpanEncoder::Attr> attrs;
  attrs.reserve(attributes.size());
  std::size_t n = 0;
  for (const auto& [k, v] : attributes) {
    SpanEncoder::Attr a = SpanEncoder::make_attr(k, SpanEncoder::Attr::Type::kString, v);
    size_attr(a);
    n += pb::len_field_size(a.kv_size);
    attrs.push_back(a);
  }
  std::string out(n, '\0');
  char* p = out.data();
  for (const auto& a : attrs) {
    p = put_tag_len(p, 0x0A, a.kv_size);
    p = write_attr(p, a);
  }
  return out;
}

std::string encode_scope(std::string_view name, std::string_view version) {
  std::size_t n = 0;
  if (!name.empty()) n += pb::len_field_size(name.size());
  if (!version.empty()) n += pb::len_field_size(version.size());
  std::string out(n, '\0');
  char* p = out.data();
  if (!name.empty()) {
    p = put_tag_len(p, 0x0A, name.size());
    p = put_bytes(p, name.data(), name.size());
  }
  if (!version.empty()) {
    p = put_tag_len(p, 0x12, version.size());
    p = put_bytes(p, version.data(), version.size());
  }
  return out;
}

void build_request(std::string_view resource, std::string_view scope, std::string_view spans,
                   std::string& out) {
  out.clear();
  if (spans.empty()) return;
  const std::size_t ss = pb::len_field_size(scope.size()) + spans.size();
  const std::size_t rs = pb::len_field_size(resource.size()) + pb::len_field_size(ss);
  out.resize(pb::len_field_size(rs));
  char* p = out.data();
  p = put_tag_len(p, 0x0A, rs);
  p = put_tag_len(p, 0x0A, resource.size());
  p = put_bytes(p, resource.data(), resource.size());
  p = put_tag_len(p, 0x12, ss);
  p = put_tag_len(p, 0x0A, scope.size());
  p = put_bytes(p, scope.data(), scope.size());
  put_bytes(p, spans.data(), spans.size());
}

namespace {

struct Reader {
  const std::uint8_t* p;
  const std::uint8_t* end;
  bool varint(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end) return false;
      const std::uint8_t b = *p++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // Reads a field; for LEN fields sets data; for others skips the value into v.
  bool field(std::uint32_t& num, std::uint32_t& wire, std::uint64_t& v, std::string_view& data) {
    std::uint64_t tag = 0;
    if (!varint(tag)) return false;
    num = static_cast<std::uint32_t>(tag >> 3);
    wire = static_cast<std::uint32_t>(tag & 7);
    switch (wire) {
      case 0: return varint(v);
      case 1:
        if (end - p < 8) return false;
        p += 8;
        return true;
      case 5:
        if (end - p < 4) return false;
        p += 4;
        return true;
      case 2: {
        std::uint64_t len = 0;
        if (!varint(len) || static_cast<std::uint64_t>(end - p) < len) return false;
        data = std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
        p += len;
        return true;
      }
      default: return false;
    }
  }
};

Reader reader_of(std::string_view s) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(s.data());
  return Reader{b, b + s.size()};
}

// fn(number, wire type, varint value, LEN bytes) for every field of a message, in order; false
// when the message is malformed or fn returns false.
template <class F>
bool for_each_field(std::string_view message, F&& fn) {
  Reader r = reader_of(message);
  while (r.p != r.end) {
    std::uint32_t num = 0, wire = 0;
    std::uint64_t v = 0;
    std::string_view data;
    if (!r.field(num, wire, v, data) || !fn(num, wire, v, data)) return false;
  }
  return true;
}

}  // namespace

bool decode_partial_success_proto(std::string_view body, PartialSuccess& out) {
  out = {};
  // ExportTraceServiceResponse { partial_success = 1 { rejected_spans = 1; error_message = 2 } }
  return for_each_field(
      body, [&](std::uint32_t num, std::uint32_t wire, std::uint64_t, std::string_view data) {
        if (num != 1 || wire != 2) return true;
        out.present = true;
        return for_each_field(
            data, [&](std::uint32_t n, std::uint32_t w, std::uint64_t v, std::string_view d) {
              if (n == 1 && w == 0) out.rejected_spans = static_cast<std::int64_t>(v);
              if (n == 2 && w == 2) out.error_message = std::string(d);
              return true;
            });
      });
}

bool decode_partial_success_json(std::string_view body, PartialSuccess& out) {
  out = {};
  auto find_value = [&](std::string_view key) -> std::string_view {
    const auto k = body.find(key);
    if (k == std::string_view::npos) return {};
    auto colon = body.find(':', k + key.size());
    if (colon == std::string_view::npos) return {};
    return body.substr(colon + 1);
  };
  if (auto v = find_value("\"rejectedSpans\""); !v.empty()) {
    std::size_t i = 0;
    while (i < v.size() && (v[i] == ' ' || v[i] == '"')) ++i;
    std::int64_t n = 0;
    // Saturates: a backend sending more digits than int64 holds must not overflow
    // (fuzz_otlp_response).
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
      const int d = v[i++] - '0';
      n = n > (kMax - d) / 10 ? kMax : n * 10 + d;
    }
    out.present = true;
    out.rejected_spans = n;
  }
  if (auto v = find_value("\"errorMessage\""); !v.empty()) {
    const auto q = v.find('"');
    if (q != std::string_view::npos) {
      std::string msg;
      for (std::size_t i = q + 1; i < v.size() && v[i] != '"'; ++i) {
        if (v[i] == '\\' && i + 1 < v.size()) ++i;
        msg += v[i];
      }
      out.present = true;
      out.error_message = std::move(msg);
    }
  }
  return out.present;
}

std::string decode_rpc_status_message(std::string_view body) {
  // google.rpc.Status { message = 2 }
  std::string msg;
  const bool ok = for_each_field(
      body, [&](std::uint32_t num, std::uint32_t wire, std::uint64_t, std::string_view data) {
        if (num == 2 && wire == 2) msg = std::string(data);
        return true;
      });
  return ok ? msg : std::string();
}

}  // namespace chsync::otlp
