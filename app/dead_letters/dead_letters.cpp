#include "app/dead_letters/dead_letters.h"

#include "stages/state/state_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <simdjson.h>
#include <filesystem>
#include <fstream>

#include "pipeline/base64.h"
#include "pipeline/clock.h"
#include "pipeline/json_writer.h"

namespace chsync {

std::string dead_letter_path(const std::string& state_path) {
  // A shared PostgreSQL state: dead letters stay on the host that wrote them.
  if (is_pg_url(state_path))
    return (std::filesystem::path(default_state_path()).parent_path() /
            "postgres.dead-letters.jsonl")
        .string();
  std::filesystem::path p(state_path);
  return (p.parent_path() / (p.stem().string() + ".dead-letters.jsonl")).string();
}

namespace {
// One record (the header's format), stamped now.
std::string record_line(std::string_view instance, std::string_view endpoint,
                        std::string_view content_type, int status, std::string_view reason,
                        const std::vector<std::uint64_t>& keys, std::string_view body) {
  std::string line;
  JsonWriter w(line);
  w.begin_object()
      .field("time", format_rfc3339_ms(wall_clock_ms()))
      .field("instance", instance)
      .field("endpoint", endpoint)
      .field("content_type", content_type)
      .field("status", status)
      .field("reason", reason)
      .key("span_ids")
      .begin_array();
  for (const std::uint64_t k : keys) w.value(to_hex(span_id_from_key(k)));
  w.end_array().field("body_b64", base64_encode(body)).end_object();
  line += '\n';
  return line;
}
}  // namespace

DeadLetterWriter::DeadLetterWriter(std::string path) : path_(std::move(path)) {}

void DeadLetterWriter::write(const std::string& instance, const Ack& ack,
                             const std::vector<std::uint64_t>& keys) {
  append(record_line(instance, ack.endpoint, ack.content_type, ack.http_status, ack.reason, keys,
                     ack.body));
}

void DeadLetterWriter::write(const DeadLetter& d) {
  append(
      record_line(d.instance, d.endpoint, d.content_type, d.status, d.reason, d.span_keys, d.body));
}

void DeadLetterWriter::write_raw(std::string_view line) {
  std::string l(line);
  l += '\n';
  append(l);
}

void DeadLetterWriter::append(const std::string& line) {
  std::lock_guard lock(mu_);
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    ok_ = false;
    return;
  }
  std::size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 || off < line.size()) ok_ = false;
  ++written_;
}

namespace {
bool is_hex16(std::string_view h) {
  return h.size() == 16 && h.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
}

// An optional string field: absent is fine, another type is not.
bool optional_string(simdjson::dom::element doc, const char* key, std::string& out,
                     std::string& reason) {
  simdjson::dom::element e;
  if (doc[key].get(e)) return true;
  std::string_view sv;
  if (e.get(sv)) {
    reason = fmt::format("\"{}\" is not a string", key);
    return false;
  }
  out = sv;
  return true;
}

// Fills d from one parsed line; false with kind and reason when it is not a record.
bool to_record(simdjson::dom::element doc, DeadLetter& d, std::string& kind, std::string& reason) {
  kind = "schema";
  if (!doc.is_object()) {
    reason = "not a JSON object";
    return false;
  }
  for (const char* key : {"instance", "endpoint", "span_ids", "body_b64"}) {
    if (doc[key].error()) {
      reason = fmt::format("no \"{}\"", key);
      return false;
    }
  }
  if (!optional_string(doc, "time", d.time, reason) ||
      !optional_string(doc, "instance", d.instance, reason) ||
      !optional_string(doc, "endpoint", d.endpoint, reason) ||
      !optional_string(doc, "content_type", d.content_type, reason) ||
      !optional_string(doc, "reason", d.reason, reason))
    return false;
  if (d.instance.empty()) {
    reason = "\"instance\" is empty";
    return false;
  }
  simdjson::dom::element status;
  if (!doc["status"].get(status)) {
    std::int64_t n = 0;
    if (status.get(n) || n < 0 || n > 999) {
      reason = "\"status\" is not an HTTP status";
      return false;
    }
    d.status = static_cast<int>(n);
  }
  simdjson::dom::array ids;
  if (doc["span_ids"].get(ids)) {
    reason = "\"span_ids\" is not an array";
    return false;
  }
  std::size_t i = 0;
  for (auto id : ids) {
    std::string_view h;
    if (id.get(h) || !is_hex16(h)) {
      kind = "span_id";
      reason = fmt::format("span_ids[{}] is not a string of 16 hex digits", i);
      return false;
    }
    d.span_keys.push_back(std::stoull(std::string(h), nullptr, 16));
    ++i;
  }
  std::string_view body;
  if (doc["body_b64"].get(body)) {
    reason = "\"body_b64\" is not a string";
    return false;
  }
  if (!base64_decode(body, d.body)) {
    kind = "base64";
    reason = "\"body_b64\" is not base64";
    return false;
  }
  return true;
}
}  // namespace

DeadLetterFile read_dead_letter_file(const std::string& path) {
  DeadLetterFile f;
  std::ifstream in(path);
  std::string line;
  std::uint64_t number = 0;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    // getline stops at the end of the file without a newline: every record is written with
    // one (in a single write), so such a line was cut short (disk full, a crash, a copy).
    const bool cut = in.eof();
    DeadLetter d;
    BadDeadLetterLine b;
    simdjson::dom::element doc;
    if (auto err = parser.parse(line).get(doc)) {
      std::string_view why = simdjson::error_message(err);
      if (!why.empty() && why.back() == '.') why.remove_suffix(1);
      b.kind = cut ? "truncated" : "not_json";
      b.reason = cut ? fmt::format("truncated (no newline at the end of the file): {}", why)
                     : fmt::format("not JSON: {}", why);
    } else if (to_record(doc, d, b.kind, b.reason)) {
      f.order.push_back({number, false, f.letters.size()});
      f.letters.push_back(std::move(d));
      continue;
    }
    b.line = number;
    b.text = std::move(line);
    f.order.push_back({number, true, f.bad.size()});
    f.bad.push_back(std::move(b));
  }
  return f;
}

}  // namespace chsync
