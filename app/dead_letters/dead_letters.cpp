#include "app/dead_letters/dead_letters.h"

#include "stages/state/state_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <simdjson.h>

#include "backends/console/json_writer.h"

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

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool base64_decode(std::string_view in, std::string& out) {
  out.assign(3 * (in.size() / 4) + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return false;
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts padding bytes as output: drop them.
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() > 1 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return true;
}

DeadLetterWriter::DeadLetterWriter(std::string path) : path_(std::move(path)) {}

void DeadLetterWriter::write(const std::string& instance, const Ack& ack,
                             const std::vector<std::uint64_t>& keys) {
  std::string line = "{\"time\":\"";
  line += format_rfc3339_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  line += "\",\"instance\":";
  append_json_string(line, instance);
  line += ",\"endpoint\":";
  append_json_string(line, ack.endpoint);
  line += ",\"content_type\":";
  append_json_string(line, ack.content_type);
  line += ",\"status\":" + std::to_string(ack.http_status) + ",\"reason\":";
  append_json_string(line, ack.reason);
  line += ",\"span_ids\":[";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i) line += ",";
    line += "\"" + to_hex(span_id_from_key(keys[i])) + "\"";
  }
  line += "],\"body_b64\":\"" + base64_encode(ack.body) + "\"}\n";
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
