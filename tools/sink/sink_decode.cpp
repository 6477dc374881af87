#include "tools/sink/sink_decode.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <limits>

#include <fmt/format.h>
#include <simdjson.h>
#define ZLIB_CONST  // z_stream::next_in is const: zlib only reads the input
#include <zlib.h>

#include "tools/proto/otlp_trace.pb.h"
#include "tools/sink/sink_json.h"

namespace chsync::sink {
namespace {

namespace pb = chsync::otlp::v1;
using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

constexpr int kMaxKind = 5;        // SpanKind CONSUMER
constexpr int kMaxStatusCode = 2;  // StatusCode ERROR

// Fields shared by both encodings, validated before anything is rendered.
struct SpanHead {
  const std::uint8_t* trace_id = nullptr;
  std::size_t trace_id_size = 0;
  const std::uint8_t* span_id = nullptr;
  std::size_t span_id_size = 0;
  const std::uint8_t* parent = nullptr;
  std::size_t parent_size = 0;
  std::string_view name;
  std::int64_t kind = 0;
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint32_t flags = 0;
  std::string_view trace_state;
};

bool check_head(const SpanHead& h, std::string& err) {
  if (h.trace_id_size != 16) {
    err = fmt::format("trace_id must be 16 bytes (got {})", h.trace_id_size);
    return false;
  }
  if (all_zero(h.trace_id, 16)) {
    err = "trace_id is all zero";
    return false;
  }
  if (h.span_id_size != 8) {
    err = fmt::format("span_id must be 8 bytes (got {})", h.span_id_size);
    return false;
  }
  if (all_zero(h.span_id, 8)) {
    err = "span_id is all zero";
    return false;
  }
  if (h.parent_size != 0 && h.parent_size != 8) {
    err = fmt::format("parent_span_id must be empty or 8 bytes (got {})", h.parent_size);
    return false;
  }
  if (h.parent_size == 8 && all_zero(h.parent, 8)) {
    err = "parent_span_id is all zero (omit it for a root span)";
    return false;
  }
  if (h.name.empty()) {
    err = "name is empty";
    return false;
  }
  if (h.kind < 0 || h.kind > kMaxKind) {
    err = fmt::format("kind {} is not a SpanKind", h.kind);
    return false;
  }
  if (h.start == 0) {
    err = "start_time_unix_nano is 0";
    return false;
  }
  if (h.end < h.start) {
    err = fmt::format("end_time_unix_nano {} < start_time_unix_nano {}", h.end, h.start);
    return false;
  }
  return true;
}

void render_head(const SpanHead& h, DecodedSpan& d) {
  std::memcpy(d.trace_id.data(), h.trace_id, 16);
  std::memcpy(d.span_id.data(), h.span_id, 8);
  d.has_parent = h.parent_size == 8;
  if (d.has_parent) {
    std::memcpy(d.parent_span_id.data(), h.parent, 8);
  }
  std::string& o = d.record;
  o += "{\"trace_id\":\"";
  append_hex(o, h.trace_id, 16);
  o += "\",\"span_id\":\"";
  append_hex(o, h.span_id, 8);
  o += "\",\"parent_span_id\":\"";
  if (d.has_parent) {
    append_hex(o, h.parent, 8);
  }
  o += "\",\"name\":";
  append_json_string(o, h.name);
  fmt::format_to(std::back_inserter(o),
                 ",\"kind\":{},\"start_unix_nano\":\"{}\",\"end_unix_nano\":\"{}\",\"flags\":{}",
                 h.kind, h.start, h.end, h.flags);
  o += ",\"trace_state\":";
  append_json_string(o, h.trace_state);
}

// ---------------------------------------------------------------- protobuf

void pb_any(std::string& o, const pb::AnyValue& v);

void pb_kvs(std::string& o, const google::protobuf::RepeatedPtrField<pb::KeyValue>& kvs) {
  o.push_back('{');
  bool first = true;
  for (const auto& kv : kvs) {
    if (!first) o.push_back(',');
    first = false;
    append_json_string(o, kv.key());
    o.push_back(':');
    if (kv.has_value()) {
      pb_any(o, kv.value());
    } else {
      o += "null";
    }
  }
  o.push_back('}');
}

void pb_any(std::string& o, const pb::AnyValue& v) {
  switch (v.value_case()) {
    case pb::AnyValue::kStringValue: append_json_string(o, v.string_value()); break;
    case pb::AnyValue::kBoolValue: o += v.bool_value() ? "true" : "false"; break;
    case pb::AnyValue::kIntValue: fmt::format_to(std::back_inserter(o), "{}", v.int_value()); break;
    case pb::AnyValue::kDoubleValue: append_json_double(o, v.double_value()); break;
    case pb::AnyValue::kArrayValue: {
      o.push_back('[');
      bool first = true;
      for (const auto& e : v.array_value().values()) {
        if (!first) o.push_back(',');
        first = false;
        pb_any(o, e);
      }
      o.push_back(']');
      break;
    }
    case pb::AnyValue::kKvlistValue: pb_kvs(o, v.kvlist_value().values()); break;
    case pb::AnyValue::kBytesValue: append_json_string(o, base64_encode(v.bytes_value())); break;
    case pb::AnyValue::kStringValueStrindex:
      fmt::format_to(std::back_inserter(o), "{}", v.string_value_strindex());
      break;
    case pb::AnyValue::VALUE_NOT_SET: o += "null"; break;
  }
}

std::string pb_scope(const pb::ScopeSpans& ss) {
  std::string o = "{\"name\":";
  append_json_string(o, ss.scope().name());
  o += ",\"version\":";
  append_json_string(o, ss.scope().version());
  if (ss.scope().attributes_size() > 0) {
    o += ",\"attributes\":";
    pb_kvs(o, ss.scope().attributes());
  }
  o.push_back('}');
  return o;
}

bool pb_span(const pb::Span& s, const std::string& resource, const std::string& scope,
             DecodedSpan& d, std::string& err) {
  SpanHead h;
  h.trace_id = reinterpret_cast<const std::uint8_t*>(s.trace_id().data());
  h.trace_id_size = s.trace_id().size();
  h.span_id = reinterpret_cast<const std::uint8_t*>(s.span_id().data());
  h.span_id_size = s.span_id().size();
  h.parent = reinterpret_cast<const std::uint8_t*>(s.parent_span_id().data());
  h.parent_size = s.parent_span_id().size();
  h.name = s.name();
  h.kind = static_cast<std::int64_t>(s.kind());
  h.start = s.start_time_unix_nano();
  h.end = s.end_time_unix_nano();
  h.flags = s.flags();
  h.trace_state = s.trace_state();
  if (!check_head(h, err)) {
    return false;
  }
  for (const auto& l : s.links()) {
    if (l.trace_id().size() != 16 || l.span_id().size() != 8) {
      err = "link trace_id/span_id must be 16/8 bytes";
      return false;
    }
  }
  if (s.status().code() < 0 || s.status().code() > kMaxStatusCode) {
    err = fmt::format("status.code {} is not a StatusCode", static_cast<int>(s.status().code()));
    return false;
  }
  render_head(h, d);
  std::string& o = d.record;
  o += ",\"attributes\":";
  pb_kvs(o, s.attributes());
  o += ",\"events\":[";
  bool first = true;
  for (const auto& e : s.events()) {
    if (!first) o.push_back(',');
    first = false;
    o += "{\"name\":";
    append_json_string(o, e.name());
    fmt::format_to(std::back_inserter(o),
                   ",\"time_unix_nano\":\"{}\",\"attributes\":", e.time_unix_nano());
    pb_kvs(o, e.attributes());
    o.push_back('}');
  }
  o += "],\"links\":[";
  first = true;
  for (const auto& l : s.links()) {
    if (!first) o.push_back(',');
    first = false;
    o += "{\"trace_id\":\"";
    append_hex(o, reinterpret_cast<const std::uint8_t*>(l.trace_id().data()), 16);
    o += "\",\"span_id\":\"";
    append_hex(o, reinterpret_cast<const std::uint8_t*>(l.span_id().data()), 8);
    o += "\",\"attributes\":";
    pb_kvs(o, l.attributes());
    o.push_back('}');
  }
  fmt::format_to(std::back_inserter(o), "],\"dropped_attributes_count\":{}",
                 s.dropped_attributes_count());
  fmt::format_to(std::back_inserter(o),
                 ",\"status\":{{\"code\":{},\"message\":", static_cast<int>(s.status().code()));
  append_json_string(o, s.status().message());
  o += "},\"resource\":";
  o += resource;
  o += ",\"scope\":";
  o += scope;
  o += ",\"encoding\":\"protobuf\"";
  return true;
}

// ---------------------------------------------------------------- JSON

simdjson::dom::parser& json_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// Looks up `key`; a missing key or an explicit null both count as absent.
bool get_field(object obj, std::string_view key, element& out) {
  if (obj.at_key(key).get(out) != simdjson::SUCCESS) {
    return false;
  }
  return !out.is_null();
}

bool json_u64(element e, std::uint64_t& v) {
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }
  return e.get_uint64().get(v) == simdjson::SUCCESS;
}

bool json_i64(element e, std::int64_t& v) {
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }
  return e.get_int64().get(v) == simdjson::SUCCESS;
}

// Optional integer-valued field (enums, counters): absent → 0; must be a JSON integer.
bool json_opt_int(object obj, std::string_view key, std::int64_t& v, std::string& err) {
  element e;
  v = 0;
  if (!get_field(obj, key, e)) {
    return true;
  }
  if (e.get_int64().get(v) != simdjson::SUCCESS) {
    err = fmt::format("{} must be an integer", key);
    return false;
  }
  return true;
}

bool json_opt_string(object obj, std::string_view key, std::string_view& v, std::string& err) {
  element e;
  v = {};
  if (!get_field(obj, key, e)) {
    return true;
  }
  if (e.get_string().get(v) != simdjson::SUCCESS) {
    err = fmt::format("{} must be a string", key);
    return false;
  }
  return true;
}

bool json_opt_array(object obj, std::string_view key, array& v, bool& present, std::string& err) {
  element e;
  present = get_field(obj, key, e);
  if (!present) {
    return true;
  }
  if (e.get_array().get(v) != simdjson::SUCCESS) {
    err = fmt::format("{} must be an array", key);
    return false;
  }
  return true;
}

bool json_kvs(std::string& o, element arr_elem, bool present, std::string& err);

bool json_any(std::string& o, element v, std::string& err) {
  object obj;
  if (v.is_null()) {
    o += "null";
    return true;
  }
  if (v.get_object().get(obj) != simdjson::SUCCESS) {
    err = "AnyValue must be an object";
    return false;
  }
  int found = 0;
  for (const auto kv : obj) {
    const std::string_view k = kv.key;
    const element val = kv.value;
    if (k != "stringValue" && k != "boolValue" && k != "intValue" && k != "doubleValue" &&
        k != "arrayValue" && k != "kvlistValue" && k != "bytesValue") {
      continue;  // receivers ignore unknown fields
    }
    if (++found > 1) {
      err = "AnyValue sets more than one member of its oneof";
      return false;
    }
    if (k == "stringValue") {
      std::string_view s;
      if (val.get_string().get(s) != simdjson::SUCCESS) {
        err = "stringValue must be a string";
        return false;
      }
      append_json_string(o, s);
    } else if (k == "boolValue") {
      bool b = false;
      if (val.get_bool().get(b) != simdjson::SUCCESS) {
        err = "boolValue must be a bool";
        return false;
      }
      o += b ? "true" : "false";
    } else if (k == "intValue") {
      std::int64_t i = 0;
      if (!json_i64(val, i)) {
        err = "intValue must be an int64 (decimal string or number)";
        return false;
      }
      fmt::format_to(std::back_inserter(o), "{}", i);
    } else if (k == "doubleValue") {
      double d = 0;
      std::string_view s;
      if (val.get_double().get(d) == simdjson::SUCCESS) {
        append_json_double(o, d);
      } else if (val.get_string().get(s) == simdjson::SUCCESS &&
                 (s == "NaN" || s == "Infinity" || s == "-Infinity")) {
        append_json_string(o, s);
      } else {
        err = "doubleValue must be a number";
        return false;
      }
    } else if (k == "bytesValue") {
      std::string_view s;
      if (val.get_string().get(s) != simdjson::SUCCESS) {
        err = "bytesValue must be a base64 string";
        return false;
      }
      append_json_string(o, s);
    } else {  // arrayValue / kvlistValue: {"values":[...]}
      object inner;
      if (val.get_object().get(inner) != simdjson::SUCCESS) {
        err = fmt::format("{} must be an object", k);
        return false;
      }
      element values;
      const bool has_values = get_field(inner, "values", values);
      if (k == "kvlistValue") {
        if (!json_kvs(o, values, has_values, err)) return false;
      } else {
        array arr;
        if (has_values && values.get_array().get(arr) != simdjson::SUCCESS) {
          err = "arrayValue.values must be an array";
          return false;
        }
        o.push_back('[');
        if (has_values) {
          bool first = true;
          for (const element item : arr) {
            if (!first) o.push_back(',');
            first = false;
            if (!json_any(o, item, err)) return false;
          }
        }
        o.push_back(']');
      }
    }
  }
  if (found == 0) {
    o += "null";
  }
  return true;
}

// Renders a repeated KeyValue (JSON array of {key, value}) as a JSON object.
bool json_kvs(std::string& o, element arr_elem, bool present, std::string& err) {
  o.push_back('{');
  if (present) {
    array arr;
    if (arr_elem.get_array().get(arr) != simdjson::SUCCESS) {
      err = "attributes/values must be an array";
      return false;
    }
    bool first = true;
    for (const element item : arr) {
      object kv;
      if (item.get_object().get(kv) != simdjson::SUCCESS) {
        err = "KeyValue must be an object";
        return false;
      }
      std::string_view key;
      element kelem;
      if (!get_field(kv, "key", kelem) || kelem.get_string().get(key) != simdjson::SUCCESS) {
        err = "KeyValue.key must be a string";
        return false;
      }
      if (!first) o.push_back(',');
      first = false;
      append_json_string(o, key);
      o.push_back(':');
      element val;
      if (get_field(kv, "value", val)) {
        if (!json_any(o, val, err)) return false;
      } else {
        o += "null";
      }
    }
  }
  o.push_back('}');
  return true;
}

bool json_attrs(std::string& o, object owner, std::string_view key, std::string& err) {
  element e;
  const bool present = get_field(owner, key, e);
  return json_kvs(o, e, present, err);
}

bool json_id(object sp, std::string_view key, std::uint8_t* out, std::size_t n, std::size_t& got,
             bool optional, std::string& err) {
  std::string_view s;
  element e;
  got = 0;
  if (!get_field(sp, key, e)) {
    if (optional) return true;
    err = fmt::format("{} is missing", key);
    return false;
  }
  if (e.get_string().get(s) != simdjson::SUCCESS) {
    err = fmt::format("{} must be a hex string", key);
    return false;
  }
  if (s.empty() && optional) {
    return true;
  }
  if (!parse_hex(s, out, n)) {
    err = fmt::format("{} must be {} hex chars (got \"{}\")", key, 2 * n,
                      s.substr(0, std::min<std::size_t>(s.size(), 40)));
    return false;
  }
  got = n;
  return true;
}

bool json_span(object sp, const std::string& resource, const std::string& scope, DecodedSpan& d,
               std::string& err) {
  std::array<std::uint8_t, 16> tid{};
  std::array<std::uint8_t, 8> sid{};
  std::array<std::uint8_t, 8> pid{};
  SpanHead h;
  if (!json_id(sp, "traceId", tid.data(), 16, h.trace_id_size, false, err) ||
      !json_id(sp, "spanId", sid.data(), 8, h.span_id_size, false, err) ||
      !json_id(sp, "parentSpanId", pid.data(), 8, h.parent_size, true, err)) {
    return false;
  }
  h.trace_id = tid.data();
  h.span_id = sid.data();
  h.parent = pid.data();
  if (!json_opt_string(sp, "name", h.name, err) || !json_opt_int(sp, "kind", h.kind, err) ||
      !json_opt_string(sp, "traceState", h.trace_state, err)) {
    return false;
  }
  element e;
  if (get_field(sp, "startTimeUnixNano", e) && !json_u64(e, h.start)) {
    err = "startTimeUnixNano must be a uint64 (decimal string or number)";
    return false;
  }
  if (get_field(sp, "endTimeUnixNano", e) && !json_u64(e, h.end)) {
    err = "endTimeUnixNano must be a uint64 (decimal string or number)";
    return false;
  }
  std::int64_t flags = 0;
  if (!json_opt_int(sp, "flags", flags, err)) return false;
  if (flags < 0 || flags > std::numeric_limits<std::uint32_t>::max()) {
    err = "flags must be a uint32";
    return false;
  }
  h.flags = static_cast<std::uint32_t>(flags);
  if (!check_head(h, err)) {
    return false;
  }
  render_head(h, d);
  std::string& o = d.record;
  o += ",\"attributes\":";
  if (!json_attrs(o, sp, "attributes", err)) return false;

  o += ",\"events\":[";
  array arr;
  bool present = false;
  if (!json_opt_array(sp, "events", arr, present, err)) return false;
  if (present) {
    bool first = true;
    for (const element ev : arr) {
      object evo;
      if (ev.get_object().get(evo) != simdjson::SUCCESS) {
        err = "event must be an object";
        return false;
      }
      std::string_view name;
      std::uint64_t t = 0;
      if (!json_opt_string(evo, "name", name, err)) return false;
      if (get_field(evo, "timeUnixNano", e) && !json_u64(e, t)) {
        err = "event timeUnixNano must be a uint64";
        return false;
      }
      if (!first) o.push_back(',');
      first = false;
      o += "{\"name\":";
      append_json_string(o, name);
      fmt::format_to(std::back_inserter(o), ",\"time_unix_nano\":\"{}\",\"attributes\":", t);
      if (!json_attrs(o, evo, "attributes", err)) return false;
      o.push_back('}');
    }
  }
  o += "],\"links\":[";
  if (!json_opt_array(sp, "links", arr, present, err)) return false;
  if (present) {
    bool first = true;
    for (const element ln : arr) {
      object lo;
      if (ln.get_object().get(lo) != simdjson::SUCCESS) {
        err = "link must be an object";
        return false;
      }
      std::array<std::uint8_t, 16> ltid{};
      std::array<std::uint8_t, 8> lsid{};
      std::size_t got = 0;
      if (!json_id(lo, "traceId", ltid.data(), 16, got, false, err) ||
          !json_id(lo, "spanId", lsid.data(), 8, got, false, err)) {
        return false;
      }
      if (!first) o.push_back(',');
      first = false;
      o += "{\"trace_id\":\"";
      append_hex(o, ltid.data(), 16);
      o += "\",\"span_id\":\"";
      append_hex(o, lsid.data(), 8);
      o += "\",\"attributes\":";
      if (!json_attrs(o, lo, "attributes", err)) return false;
      o.push_back('}');
    }
  }
  std::int64_t dropped = 0;
  if (!json_opt_int(sp, "droppedAttributesCount", dropped, err)) return false;
  fmt::format_to(std::back_inserter(o), "],\"dropped_attributes_count\":{}", dropped);
  std::int64_t code = 0;
  std::string_view message;
  if (get_field(sp, "status", e)) {
    object st;
    if (e.get_object().get(st) != simdjson::SUCCESS) {
      err = "status must be an object";
      return false;
    }
    if (!json_opt_int(st, "code", code, err) || !json_opt_string(st, "message", message, err)) {
      return false;
    }
    if (code < 0 || code > kMaxStatusCode) {
      err = fmt::format("status.code {} is not a StatusCode", code);
      return false;
    }
  }
  fmt::format_to(std::back_inserter(o), ",\"status\":{{\"code\":{},\"message\":", code);
  append_json_string(o, message);
  o += "},\"resource\":";
  o += resource;
  o += ",\"scope\":";
  o += scope;
  o += ",\"encoding\":\"json\"";
  return true;
}

bool json_scope(object ss, std::string& out, std::string& err) {
  out = "{\"name\":";
  std::string_view name;
  std::string_view version;
  element e;
  object sc;
  bool has_attrs = false;
  if (get_field(ss, "scope", e)) {
    if (e.get_object().get(sc) != simdjson::SUCCESS) {
      err = "scope must be an object";
      return false;
    }
    if (!json_opt_string(sc, "name", name, err) || !json_opt_string(sc, "version", version, err)) {
      return false;
    }
    element a;
    has_attrs = get_field(sc, "attributes", a);
  }
  append_json_string(out, name);
  out += ",\"version\":";
  append_json_string(out, version);
  if (has_attrs) {
    out += ",\"attributes\":";
    if (!json_attrs(out, sc, "attributes", err)) return false;
  }
  out.push_back('}');
  return true;
}

}  // namespace

bool decode_otlp_protobuf(std::string_view body, std::vector<DecodedSpan>& out,
                          std::string& error) {
  google::protobuf::Arena arena;
  auto* req = google::protobuf::Arena::CreateMessage<pb::ExportTraceServiceRequest>(&arena);
  if (body.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !req->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    error =
        "failed to parse ExportTraceServiceRequest protobuf (bad wire format or invalid "
        "UTF-8 in a string field)";
    return false;
  }
  std::string resource;
  for (int r = 0; r < req->resource_spans_size(); ++r) {
    const auto& rs = req->resource_spans(r);
    resource.clear();
    pb_kvs(resource, rs.resource().attributes());
    for (int s = 0; s < rs.scope_spans_size(); ++s) {
      const auto& ss = rs.scope_spans(s);
      const std::string scope = pb_scope(ss);
      for (int i = 0; i < ss.spans_size(); ++i) {
        DecodedSpan d;
        std::string err;
        if (!pb_span(ss.spans(i), resource, scope, d, err)) {
          error = fmt::format("resourceSpans[{}].scopeSpans[{}].spans[{}]: {}", r, s, i, err);
          return false;
        }
        out.push_back(std::move(d));
      }
    }
  }
  return true;
}

bool decode_otlp_json(std::string_view body, std::vector<DecodedSpan>& out, std::string& error) {
  element root;
  if (auto ec = json_parser().parse(body.data(), body.size()).get(root)) {
    error = fmt::format("invalid JSON: {}", simdjson::error_message(ec));
    return false;
  }
  object req;
  if (root.get_object().get(req) != simdjson::SUCCESS) {
    error = "ExportTraceServiceRequest must be a JSON object";
    return false;
  }
  array rss;
  bool present = false;
  if (!json_opt_array(req, "resourceSpans", rss, present, error) || !present) {
    return present || error.empty();
  }
  std::string resource;
  std::string scope;
  std::size_t r = 0;
  for (const element rs_elem : rss) {
    object rs;
    std::string err;
    if (rs_elem.get_object().get(rs) != simdjson::SUCCESS) {
      error = fmt::format("resourceSpans[{}] must be an object", r);
      return false;
    }
    resource.clear();
    element res_elem;
    object res;
    if (get_field(rs, "resource", res_elem)) {
      if (res_elem.get_object().get(res) != simdjson::SUCCESS) {
        error = fmt::format("resourceSpans[{}].resource must be an object", r);
        return false;
      }
      if (!json_attrs(resource, res, "attributes", err)) {
        error = fmt::format("resourceSpans[{}].resource: {}", r, err);
        return false;
      }
    } else {
      resource = "{}";
    }
    array sss;
    if (!json_opt_array(rs, "scopeSpans", sss, present, err)) {
      error = fmt::format("resourceSpans[{}]: {}", r, err);
      return false;
    }
    std::size_t s = 0;
    if (present) {
      for (const element ss_elem : sss) {
        object ss;
        if (ss_elem.get_object().get(ss) != simdjson::SUCCESS) {
          error = fmt::format("resourceSpans[{}].scopeSpans[{}] must be an object", r, s);
          return false;
        }
        if (!json_scope(ss, scope, err)) {
          error = fmt::format("resourceSpans[{}].scopeSpans[{}]: {}", r, s, err);
          return false;
        }
        array spans;
        if (!json_opt_array(ss, "spans", spans, present, err)) {
          error = fmt::format("resourceSpans[{}].scopeSpans[{}]: {}", r, s, err);
          return false;
        }
        std::size_t i = 0;
        if (present) {
          for (const element sp_elem : spans) {
            object sp;
            DecodedSpan d;
            if (sp_elem.get_object().get(sp) != simdjson::SUCCESS) {
              err = "span must be an object";
            } else if (json_span(sp, resource, scope, d, err)) {
              out.push_back(std::move(d));
              ++i;
              continue;
            }
            error = fmt::format("resourceSpans[{}].scopeSpans[{}].spans[{}]: {}", r, s, i, err);
            return false;
          }
        }
        ++s;
      }
    }
    ++r;
  }
  return true;
}

namespace {

constexpr std::string_view kLegacyTypes[] = {
    "trace-create",       "span-create",        "span-update",      "generation-create",
    "generation-update",  "event-create",       "score-create",     "sdk-log",
    "observation-create", "observation-update", "agent-create",     "tool-create",
    "chain-create",       "retriever-create",   "evaluator-create", "embedding-create",
    "guardrail-create"};
constexpr std::size_t kMaxLegacyIdChars = 800;

// ISO-8601 with an explicit offset, e.g. 2025-05-22T00:00:00.000Z or ...+02:00 (loose check).
bool looks_like_iso_with_offset(std::string_view ts) {
  if (ts.size() < 20 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T') {
    return false;
  }
  if (ts.back() == 'Z') {
    return true;
  }
  const std::size_t n = ts.size();
  return n >= 6 && (ts[n - 6] == '+' || ts[n - 6] == '-') && ts[n - 3] == ':';
}

void legacy_event(element ev, LegacyEvent& out) {
  object o;
  if (ev.get_object().get(o) != simdjson::SUCCESS) {
    out.id = "unknown";
    out.error = "event must be an object";
    return;
  }
  std::string_view id;
  std::string_view type;
  std::string_view ts;
  element e;
  if (!get_field(o, "id", e) || e.get_string().get(id) != simdjson::SUCCESS || id.empty()) {
    out.id = "unknown";
    out.error = "id must be a non-empty string";
    return;
  }
  out.id = std::string(id);
  if (id.size() > kMaxLegacyIdChars || id.find('\r') != std::string_view::npos) {
    out.error = "id must be 1-800 chars without \\r";
    return;
  }
  if (!get_field(o, "type", e) || e.get_string().get(type) != simdjson::SUCCESS) {
    out.error = "type must be a string";
    return;
  }
  out.type = std::string(type);
  if (std::find(std::begin(kLegacyTypes), std::end(kLegacyTypes), type) == std::end(kLegacyTypes)) {
    out.error = fmt::format("unsupported event type \"{}\"", type);
    return;
  }
  if (!get_field(o, "timestamp", e) || e.get_string().get(ts) != simdjson::SUCCESS ||
      !looks_like_iso_with_offset(ts)) {
    out.error = "timestamp must be an ISO-8601 datetime with offset";
    return;
  }
  object body;
  element body_elem;
  if (!get_field(o, "body", body_elem) || body_elem.get_object().get(body) != simdjson::SUCCESS) {
    out.error = "body must be an object";
    return;
  }
  std::string_view body_id;
  std::string_view trace_id;
  std::string_view parent;
  std::string_view name;
  if (type != "sdk-log") {
    if (!get_field(body, "id", e) || e.get_string().get(body_id) != simdjson::SUCCESS ||
        body_id.empty()) {
      out.error = "body.id must be a non-empty string";
      return;
    }
  }
  if (type == "score-create" &&
      (!get_field(body, "name", e) || e.get_string().get(name) != simdjson::SUCCESS)) {
    out.error = "score body.name is required";
    return;
  }
  std::string err;
  if (!json_opt_string(body, "traceId", trace_id, err) ||
      !json_opt_string(body, "parentObservationId", parent, err) ||
      !json_opt_string(body, "name", name, err)) {
    out.error = "body." + err;
    return;
  }
  if (type == "trace-create") {
    trace_id = body_id;
  }
  out.body_id = std::string(body_id);
  std::string& r = out.record;
  r = "{\"event_id\":";
  append_json_string(r, id);
  r += ",\"type\":";
  append_json_string(r, type);
  r += ",\"body_id\":";
  append_json_string(r, body_id);
  r += ",\"trace_id\":";
  append_json_string(r, trace_id);
  r += ",\"parent_observation_id\":";
  append_json_string(r, parent);
  r += ",\"name\":";
  append_json_string(r, name);
  r += ",\"timestamp\":";
  append_json_string(r, ts);
  r += ",\"body\":";
  r += simdjson::minify(body_elem);
  r += ",\"encoding\":\"langfuse-legacy\"";
}

}  // namespace

bool decode_legacy_batch(std::string_view body, std::vector<LegacyEvent>& out, std::string& error) {
  element root;
  if (auto ec = json_parser().parse(body.data(), body.size()).get(root)) {
    error = fmt::format("invalid JSON: {}", simdjson::error_message(ec));
    return false;
  }
  object req;
  array batch;
  element b;
  if (root.get_object().get(req) != simdjson::SUCCESS || !get_field(req, "batch", b) ||
      b.get_array().get(batch) != simdjson::SUCCESS) {
    error = "batch must be an array";
    return false;
  }
  for (const element ev : batch) {
    LegacyEvent le;
    legacy_event(ev, le);
    out.push_back(std::move(le));
  }
  return true;
}

bool gunzip(std::string_view in, std::size_t limit, std::string& out, bool& too_large,
            std::string& error) {
  too_large = false;
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) {  // 15 + 32: accept gzip and zlib headers
    error = "inflateInit2 failed";
    return false;
  }
  zs.next_in = reinterpret_cast<const Bytef*>(in.data());  // const with ZLIB_CONST (above)
  zs.avail_in = static_cast<uInt>(in.size());
  out.clear();
  constexpr std::size_t kChunk = std::size_t{256} * 1024;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    const std::size_t old = out.size();
    if (old > limit) {
      too_large = true;
      inflateEnd(&zs);
      error = fmt::format("decompressed body exceeds {} bytes", limit);
      return false;
    }
    const std::size_t grow = std::max(kChunk, std::min(old, std::size_t{16} << 20));
    out.resize(old + grow);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = static_cast<uInt>(grow);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + (grow - zs.avail_out));
    if (rc == Z_STREAM_END) {
      break;
    }
    if (rc != Z_OK || (zs.avail_in == 0 && zs.avail_out != 0)) {
      inflateEnd(&zs);
      error =
          rc == Z_OK ? "truncated gzip body" : fmt::format("gzip error: {}", zs.msg ? zs.msg : "?");
      return false;
    }
  }
  inflateEnd(&zs);
  if (out.size() > limit) {
    too_large = true;
    error = fmt::format("decompressed body exceeds {} bytes", limit);
    return false;
  }
  return true;
}

}  // namespace chsync::sink
