#include "stages/mapper/entry.h"
#include "stages/mapper/mapper.h"

#include <simdjson.h>

#include <cstring>

#include "pipeline/ids.h"

namespace chsync::mapper {

namespace od = simdjson::ondemand;

namespace {

// Reads the fields of one entry with simdjson's error codes. One failed accessor fails the whole
// line (a half-read entry would map to wrong spans): the first error is kept in `error`, and every
// read after it returns at once with an empty value, so the walk unwinds without exceptions. Bad
// lines are rare, but a damaged archive can hold millions: a throw per line cost 6x the CPU of the
// whole parse (300,000 bad lines, dry run: 0.95 user-s with exceptions, 0.15 without;
// stages_bench BM_ParseBadLines).
class FieldReader {
 public:
  simdjson::error_code error = simdjson::SUCCESS;

  bool failed() const noexcept { return error != simdjson::SUCCESS; }

  void parse_entry(od::object& root, Entry& e);
  std::string hash_fields(od::object& root);
  // Keeps the first error; true while no error has happened.
  bool keep(simdjson::error_code e) noexcept {
    if (e != simdjson::SUCCESS && !failed()) error = e;
    return !failed();
  }

 private:
  // Callers start t as od::json_type{}: 0 names no type (simdjson's start at 1), so a type that
  // could not be read matches none of their branches.
  bool type_of_value(od::value v, od::json_type& t) { return keep(v.type().get(t)); }

  std::string_view get_sv(od::value v) {
    std::string_view s;
    return keep(v.get_string().get(s)) ? s : std::string_view();
  }

  // String fields that may be null in some versions: null (or another scalar type) gives "".
  std::string opt_string(od::value v) {
    od::json_type t{};
    if (!type_of_value(v, t) || t != od::json_type::string) return {};
    return std::string(get_sv(v));
  }

  bool opt_bool(od::value v) {
    od::json_type t{};
    if (!type_of_value(v, t) || t != od::json_type::boolean) return false;
    bool b = false;
    return keep(v.get_bool().get(b)) && b;
  }

  std::int64_t opt_int(od::value v, std::int64_t fallback = 0) {
    od::json_type t{};
    if (!type_of_value(v, t)) return fallback;
    if (t != od::json_type::number) return fallback;
    std::int64_t n = 0;
    if (!v.get_int64().get(n)) return n;  // not an int64: read it as a double below
    double d = 0;
    return keep(v.get_double().get(d)) ? static_cast<std::int64_t>(d) : fallback;
  }

  std::string raw_json(od::value v);
  bool get_object(od::value v, od::object& o);
  template <class F>
  void for_each_object_in(od::value v, F&& fn);
  template <class F>
  void for_each_field(od::object& o, F&& fn);
  void parse_usage(od::value v, Usage& u);
  std::string result_text(od::value v);
  void parse_tool_input(od::value v, Block& b);
  void parse_content(od::value v, Entry& e);
  void parse_content_block(od::object& bo, Entry& e);
  void parse_message(od::value v, Entry& e);
  void parse_tool_use_result(od::value v, Entry& e);
  void parse_compact_metadata(od::value v, Entry& e);
  void parse_progress_data(od::value v, Entry& e);
};

std::string_view rtrim(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Raw JSON text of any value (objects and arrays are consumed).
std::string FieldReader::raw_json(od::value v) {
  od::json_type t{};
  if (!type_of_value(v, t)) return {};
  std::string_view sv;
  if (t == od::json_type::object) {
    od::object o;
    if (!keep(v.get_object().get(o)) || !keep(o.raw_json().get(sv))) return {};
  } else if (t == od::json_type::array) {
    od::array a;
    if (!keep(v.get_array().get(a)) || !keep(a.raw_json().get(sv))) return {};
  } else {
    sv = v.raw_json_token();
  }
  return std::string(rtrim(sv));
}

// The object of v; false when v is not an object (then the field reads as absent).
bool FieldReader::get_object(od::value v, od::object& o) {
  od::json_type t{};
  if (!type_of_value(v, t) || t != od::json_type::object) return false;
  return keep(v.get_object().get(o));
}

// fn(object) for every element of the array v that is an object (other elements are skipped).
template <class F>
void FieldReader::for_each_object_in(od::value v, F&& fn) {
  od::array arr;
  if (!keep(v.get_array().get(arr))) return;
  for (auto br : arr) {
    if (!keep(br.error())) return;
    const od::value b = br.value_unsafe();
    od::object o;
    if (get_object(b, o)) fn(o);
    if (failed()) return;
  }
}

// fn(key, value) for every field of o, in file order; stops at the first error.
template <class F>
void FieldReader::for_each_field(od::object& o, F&& fn) {
  for (auto fr : o) {
    od::field f;
    if (!keep(std::move(fr).get(f))) return;
    std::string_view k;
    if (!keep(f.unescaped_key().get(k))) return;
    fn(k, f.value());
    if (failed()) return;
  }
}

void FieldReader::parse_usage(od::value v, Usage& u) {
  od::object o;
  if (!get_object(v, o)) return;
  u.present = true;
  for_each_field(o, [&](std::string_view k, od::value val) {
    if (k == "input_tokens") u.input_tokens = opt_int(val);
    else if (k == "cache_read_input_tokens") u.cache_read_input_tokens = opt_int(val);
    else if (k == "cache_creation_input_tokens") u.cache_creation_input_tokens = opt_int(val);
    else if (k == "output_tokens") u.output_tokens = opt_int(val);
    else if (k == "cache_creation") {
      od::object co;
      if (!get_object(val, co)) return;
      for_each_field(co, [&](std::string_view ck, od::value cv) {
        if (ck == "ephemeral_5m_input_tokens") u.cache_creation_5m = opt_int(cv, -1);
        else if (ck == "ephemeral_1h_input_tokens") u.cache_creation_1h = opt_int(cv, -1);
      });
    }
  });
}

// Text of a tool_result content value: a string, or its blocks joined by "\n".
std::string FieldReader::result_text(od::value v) {
  od::json_type t{};
  if (!type_of_value(v, t)) return {};
  if (t == od::json_type::string) return std::string(get_sv(v));
  if (t != od::json_type::array) return t == od::json_type::null ? std::string() : raw_json(v);
  std::string out;
  for_each_object_in(v, [&](od::object& bo) {
    std::string type, text, tool_name;
    for_each_field(bo, [&](std::string_view k, od::value fv) {
      if (k == "type") type = opt_string(fv);
      else if (k == "text") text = opt_string(fv);
      else if (k == "tool_name") tool_name = opt_string(fv);
    });
    if (!out.empty()) out += '\n';
    if (type == "text") out += text;
    else if (type == "image") out += "[image]";
    else if (type == "tool_reference") out += "[tool_reference " + tool_name + "]";
    else out += "[" + type + "]";
  });
  return out;
}

void FieldReader::parse_tool_input(od::value v, Block& b) {
  od::json_type t{};
  if (!type_of_value(v, t)) return;
  if (t != od::json_type::object) {
    b.input_json = raw_json(v);
    return;
  }
  od::object o;
  std::string_view raw;
  if (!keep(v.get_object().get(o)) || !keep(o.raw_json().get(raw))) return;
  b.input_json = std::string(rtrim(raw));
  if (!keep(o.reset().error())) return;
  for_each_field(o, [&](std::string_view k, od::value fv) {
    if (k == "prompt") b.task_prompt = opt_string(fv);
    else if (k == "subagent_type") b.subagent_type = opt_string(fv);
  });
}

void FieldReader::parse_content(od::value v, Entry& e) {
  od::json_type t{};
  if (!type_of_value(v, t)) return;
  if (t == od::json_type::string) {
    e.content_is_string = true;
    e.text = std::string(get_sv(v));
    return;
  }
  if (t != od::json_type::array) return;
  for_each_object_in(v, [&](od::object& bo) { parse_content_block(bo, e); });
}

void FieldReader::parse_content_block(od::object& bo, Entry& e) {
  Block b;
  ToolResult r;
  std::string type;
  bool has_input = false;
  for_each_field(bo, [&](std::string_view k, od::value fv) {
    if (k == "type") type = opt_string(fv);
    else if (k == "text" || k == "thinking") b.text = opt_string(fv);
    else if (k == "id") b.tool_id = opt_string(fv);
    else if (k == "name") b.tool_name = opt_string(fv);
    else if (k == "input") {
      parse_tool_input(fv, b);
      has_input = true;
    } else if (k == "tool_use_id") r.tool_use_id = opt_string(fv);
    else if (k == "content") r.content = result_text(fv);
    else if (k == "is_error") r.is_error = opt_bool(fv);
  });
  if (failed()) return;
  if (type == "tool_result") {
    e.results.push_back(std::move(r));
    return;
  }
  if (type == "image") {
    e.has_image = true;
    if (!e.text.empty()) e.text += '\n';
    e.text += "[image]";
    return;
  }
  if (e.type == EntryType::kUser) {
    if (type == "text") {
      if (!e.text.empty()) e.text += '\n';
      e.text += b.text;
    }
    return;
  }
  if (type == "text") b.type = Block::Type::kText;
  else if (type == "thinking") b.type = Block::Type::kThinking;
  else if (type == "tool_use") b.type = Block::Type::kToolUse;
  else b.type_name = type;
  if (b.type == Block::Type::kToolUse && !has_input) b.input_json = "{}";
  e.blocks.push_back(std::move(b));
}

void FieldReader::parse_message(od::value v, Entry& e) {
  od::object o;
  if (!get_object(v, o)) return;
  for_each_field(o, [&](std::string_view k, od::value fv) {
    if (k == "content") parse_content(fv, e);
    else if (k == "id") e.message_id = opt_string(fv);
    else if (k == "model") e.model = opt_string(fv);
    else if (k == "stop_reason") e.stop_reason = opt_string(fv);
    else if (k == "usage") parse_usage(fv, e.usage);
  });
}

void FieldReader::parse_tool_use_result(od::value v, Entry& e) {
  od::json_type t{};
  if (!type_of_value(v, t)) return;
  if (t == od::json_type::string) {
    e.tur_error = std::string(get_sv(v));
    return;
  }
  od::object o;
  if (!get_object(v, o)) return;
  for_each_field(o, [&](std::string_view k, od::value fv) {
    if (k == "agentId") e.tur_agent_id = opt_string(fv);
    else if (k == "agentType") e.tur_agent_type = opt_string(fv);
    else if (k == "totalTokens") e.tur_total_tokens = opt_int(fv, -1);
    else if (k == "totalDurationMs") e.tur_total_duration_ms = opt_int(fv, -1);
    else if (k == "totalToolUseCount") e.tur_total_tool_use_count = opt_int(fv, -1);
    else if (k == "usage") e.tur_usage_json = raw_json(fv);
  });
}

void FieldReader::parse_compact_metadata(od::value v, Entry& e) {
  od::object o;
  if (!get_object(v, o)) return;
  for_each_field(o, [&](std::string_view k, od::value fv) {
    if (k == "trigger") e.compact_trigger = opt_string(fv);
    else if (k == "preTokens") e.compact_pre_tokens = opt_int(fv, -1);
  });
}

void FieldReader::parse_progress_data(od::value v, Entry& e) {
  od::object o;
  if (!get_object(v, o)) return;
  std::string type, agent;
  for_each_field(o, [&](std::string_view k, od::value fv) {
    // data.message is an exact copy of a subagent entry: never read (double-count hazard).
    if (k == "type") type = opt_string(fv);
    else if (k == "agentId") agent = opt_string(fv);
  });
  if (type == "agent_progress") e.progress_agent_id = std::move(agent);
}

EntryType type_of(std::string_view t) {
  if (t == "user") return EntryType::kUser;
  if (t == "assistant") return EntryType::kAssistant;
  if (t == "system") return EntryType::kSystem;
  if (t == "summary") return EntryType::kSummary;
  if (t == "progress") return EntryType::kProgress;
  return EntryType::kOther;
}

// The object's fields are visited once, in file order; "type" may come after "message" (assistant
// entries put message first), so content is parsed into the entry before the type is known and the
// user/assistant split of content blocks is fixed up afterwards.
void FieldReader::parse_entry(od::object& root, Entry& e) {
  // First pass: find "type" (cheap scan) so content parsing knows the role.
  for (auto fr : root) {
    od::field f;
    if (!keep(std::move(fr).get(f))) return;
    std::string_view k;
    if (!keep(f.unescaped_key().get(k))) return;
    if (k == "type") {
      e.type = type_of(opt_string(f.value()));
      break;
    }
  }
  if (!keep(root.reset().error())) return;
  for_each_field(root, [&](std::string_view k, od::value v) {
    if (k == "uuid") e.uuid = opt_string(v);
    else if (k == "parentUuid") e.parent_uuid = opt_string(v);
    else if (k == "sessionId") e.session_id = opt_string(v);
    else if (k == "timestamp") {
      std::string ts = opt_string(v);
      e.has_ts = !ts.empty() && parse_rfc3339_ms(ts, e.ts_ms);
    } else if (k == "agentId") e.agent_id = opt_string(v);
    else if (k == "cwd") e.cwd = opt_string(v);
    else if (k == "gitBranch") e.git_branch = opt_string(v);
    else if (k == "version") e.version = opt_string(v);
    else if (k == "isSidechain") e.is_sidechain = opt_bool(v);
    else if (k == "isMeta") e.is_meta = opt_bool(v);
    else if (k == "isCompactSummary") e.is_compact_summary = opt_bool(v);
    else if (k == "isApiErrorMessage") e.is_api_error = opt_bool(v);
    else if (k == "requestId") e.request_id = opt_string(v);
    else if (e.type == EntryType::kUser || e.type == EntryType::kAssistant) {
      if (k == "message") parse_message(v, e);
      else if (k == "toolUseResult") parse_tool_use_result(v, e);
    } else if (e.type == EntryType::kSystem) {
      if (k == "subtype") e.subtype = opt_string(v);
      else if (k == "level") e.level = opt_string(v);
      else if (k == "content") e.content = opt_string(v);
      else if (k == "compactMetadata") parse_compact_metadata(v, e);
      else if (k == "durationMs") e.duration_ms = opt_int(v, -1);
    } else if (e.type == EntryType::kSummary) {
      if (k == "summary") e.summary = opt_string(v);
      else if (k == "leafUuid") e.leaf_uuid = opt_string(v);
    } else if (e.type == EntryType::kProgress) {
      if (k == "data") parse_progress_data(v, e);
      else if (k == "parentToolUseID") e.parent_tool_use_id = opt_string(v);
    }
  });
}

// The seed's GenerateMessageHash over the fields of one object: type, sessionId, timestamp, uuid
// (unescaped strings) and the raw bytes of "message" (Go json.RawMessage keeps them verbatim).
std::string FieldReader::hash_fields(od::object& root) {
  std::string type, session, ts, uuid, message;
  for_each_field(root, [&](std::string_view k, od::value v) {
    if (k == "type") type = opt_string(v);
    else if (k == "sessionId") session = opt_string(v);
    else if (k == "timestamp") ts = opt_string(v);
    else if (k == "uuid") uuid = opt_string(v);
    else if (k == "message") message = raw_json(v);
  });
  if (failed()) return {};
  thread_local IdHasher hasher;
  auto d = hasher.sha256({type, session, ts, uuid, message});
  return to_hex(d.data(), 16);
}

}  // namespace

namespace {
// The simdjson parser is per thread, not per EntryParser: a BundleMapper (and its EntryParser) is
// made per bundle, and a fresh parser re-allocated its buffers (~5x the longest line) for every
// bundle; the allocator then returned them to the OS (madvise + TLB shootdowns). Measured in
// BENCHMARKS.md (issue 9). No parser state outlives a parse() call (Entry owns its bytes).
// A parser grown for one huge line (capacity above kKeepParserBytes) is released after it, so
// the resident size stays flat across archives.
constexpr std::size_t kKeepParserBytes = 1u << 20;
// NOLINTNEXTLINE(*-avoid-non-const-global-variables): one parser per thread (style rule 5)
thread_local std::unique_ptr<od::parser> t_parser;
od::parser& thread_parser() {
  if (!t_parser) t_parser = std::make_unique<od::parser>();
  return *t_parser;
}
void trim_thread_parser() {
  if (t_parser && t_parser->capacity() > kKeepParserBytes) t_parser.reset();
}

}  // namespace

struct EntryParser::Impl {
  std::string repaired;  // private padded copy of a line with invalid UTF-8
};

EntryParser::EntryParser() : impl_(std::make_unique<Impl>()) {}
EntryParser::~EntryParser() = default;

ParseStatus EntryParser::parse(const char* data, std::size_t size, std::size_t capacity,
                               bool with_hash, Entry& out, bool& utf8_repaired,
                               std::string& error) {
  utf8_repaired = false;
  if (!simdjson::validate_utf8(data, size)) {
    std::string fixed;
    repair_utf8(std::string_view(data, size), fixed);
    impl_->repaired = std::move(fixed);
    size = impl_->repaired.size();
    impl_->repaired.append(simdjson::SIMDJSON_PADDING, '\0');
    data = impl_->repaired.data();
    capacity = impl_->repaired.size();
    utf8_repaired = true;
  }
  struct Trim {
    Trim() = default;
    ~Trim() { trim_thread_parser(); }
    Trim(const Trim&) = delete;
    Trim& operator=(const Trim&) = delete;
  } trim;
  FieldReader reader;
  const auto bad_json = [&] {
    error = simdjson::error_message(reader.error);
    return ParseStatus::kBadJson;
  };
  od::document doc;
  if (!reader.keep(thread_parser().iterate(data, size, capacity).get(doc))) return bad_json();
  od::json_type t{};
  if (!reader.keep(doc.type().get(t))) return bad_json();
  if (t != od::json_type::object) {
    error = "not a JSON object";
    return ParseStatus::kBadSchema;
  }
  od::object root;
  if (!reader.keep(doc.get_object().get(root))) return bad_json();
  reader.parse_entry(root, out);
  if (reader.failed()) return bad_json();
  if (with_hash) {
    // A fresh iteration: re-reading strings of the same document could overrun simdjson's
    // string buffer, which is sized for one unescape of each string.
    od::document doc2;
    od::object root2;
    if (!reader.keep(thread_parser().iterate(data, size, capacity).get(doc2)) ||
        !reader.keep(doc2.get_object().get(root2)))
      return bad_json();
    out.message_hash = reader.hash_fields(root2);
    if (reader.failed()) return bad_json();
  }
  return out.type == EntryType::kOther ? ParseStatus::kSkipped : ParseStatus::kOk;
}

namespace {

// Well-formed UTF-8 (the Unicode Standard, table 3-7 "Well-Formed UTF-8 Byte Sequences"): the
// range of a sequence's first byte, its length, and the range its second byte must be in (every
// later byte is 80..BF). A first byte in no row (80..C1, F5..FF) starts no sequence.
struct Utf8Lead {
  unsigned char first_lo, first_hi;
  std::size_t len;
  unsigned char second_lo, second_hi;
};
constexpr Utf8Lead kUtf8Leads[] = {
    {0xC2, 0xDF, 2, 0x80, 0xBF}, {0xE0, 0xE0, 3, 0xA0, 0xBF}, {0xE1, 0xEC, 3, 0x80, 0xBF},
    {0xED, 0xED, 3, 0x80, 0x9F}, {0xEE, 0xEF, 3, 0x80, 0xBF}, {0xF0, 0xF0, 4, 0x90, 0xBF},
    {0xF1, 0xF3, 4, 0x80, 0xBF}, {0xF4, 0xF4, 4, 0x80, 0x8F},
};

}  // namespace

bool repair_utf8(std::string_view in, std::string& out) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  out.clear();
  out.reserve(in.size() + 8);
  bool changed = false;
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    for (const Utf8Lead& row : kUtf8Leads)
      if (c >= row.first_lo && c <= row.first_hi) {
        len = row.len;
        lo = row.second_lo;
        hi = row.second_hi;
        break;
      }
    std::size_t good = 0;  // bytes of a valid prefix of the sequence
    if (len > 0) {
      good = 1;
      for (std::size_t k = 1; k < len && i + k < n; ++k) {
        const unsigned char cc = s[i + k];
        const unsigned char l = k == 1 ? lo : 0x80;
        const unsigned char h = k == 1 ? hi : 0xBF;
        if (cc < l || cc > h) break;
        ++good;
      }
    }
    if (len > 0 && good == len) {
      out.append(in.data() + i, len);
      i += len;
    } else {
      out += kReplacement;  // one U+FFFD per maximal invalid subpart
      i += good > 0 ? good : 1;
      changed = true;
    }
  }
  return changed;
}

std::string_view ltrim(std::string_view s) noexcept {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\n' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  return s;
}

bool is_command_output(std::string_view text) noexcept {
  text = ltrim(text);
  return starts_with(text, "<local-command-stdout>") ||
         starts_with(text, "<local-command-stderr>") || starts_with(text, "<bash-stdout>") ||
         starts_with(text, "<bash-stderr>") || starts_with(text, "<local-command-caveat>");
}

bool is_prompt(const Entry& e) noexcept {
  if (e.type != EntryType::kUser || e.is_meta || e.is_compact_summary || e.is_sidechain)
    return false;
  if (!e.results.empty() || e.uuid.empty()) return false;
  if (e.text.empty() && !e.has_image) return false;
  const std::string_view t = ltrim(e.text);
  if (starts_with(t, "[Request interrupted by user")) return false;
  return !is_command_output(t);
}

}  // namespace chsync::mapper

namespace chsync {

// Declared in mapper.h (the seed hash is part of the mapper contract); it only needs the parser.
bool seed_message_hash(std::string_view line, std::string& out_hex) {
  const simdjson::padded_string padded(line);
  mapper::EntryParser parser;
  mapper::Entry e;
  bool repaired = false;
  std::string err;
  const mapper::ParseStatus st =
      parser.parse(padded.data(), line.size(), padded.size() + simdjson::SIMDJSON_PADDING, true, e,
                   repaired, err);
  if (st == mapper::ParseStatus::kBadJson || st == mapper::ParseStatus::kBadSchema) return false;
  if (e.message_hash.empty()) return false;
  out_hex = e.message_hash;
  return true;
}

}  // namespace chsync
