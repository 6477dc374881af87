#include "app/dead_letters/dead_letters.h"

#include "stages/state/state_store.h"

#include <fcntl.h>
#include <unistd.h>

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

void DeadLetterWriter::append(const std::string& line) {
  std::lock_guard lock(mu_);
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  std::size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  ++written_;
}

std::vector<DeadLetter> read_dead_letters(const std::string& path, std::uint64_t& bad) {
  std::vector<DeadLetter> out;
  bad = 0;
  std::ifstream in(path);
  std::string line;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::element doc;
    if (parser.parse(line).get(doc)) {
      ++bad;
      continue;
    }
    DeadLetter d;
    std::string_view sv;
    std::int64_t n = 0;
    if (!doc["time"].get(sv)) d.time = sv;
    if (!doc["instance"].get(sv)) d.instance = sv;
    if (!doc["endpoint"].get(sv)) d.endpoint = sv;
    if (!doc["content_type"].get(sv)) d.content_type = sv;
    if (!doc["reason"].get(sv)) d.reason = sv;
    if (!doc["status"].get(n)) d.status = static_cast<int>(n);
    simdjson::dom::array ids;
    if (!doc["span_ids"].get(ids)) {
      for (auto id : ids) {
        std::string_view h;
        if (id.get(h) || h.size() != 16) continue;
        d.span_keys.push_back(std::stoull(std::string(h), nullptr, 16));
      }
    }
    if (doc["body_b64"].get(sv) || !base64_decode(sv, d.body)) {
      ++bad;
      continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace chsync
