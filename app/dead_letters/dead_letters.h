// Dead-letter file: requests a backend rejected for good, kept next to the state so that
// `chsync replay-dead-letters` can send them again. One JSON object per line:
//   {"time","instance","endpoint","content_type","status","reason","span_ids":[hex...],
//    "body_b64"}   (body uncompressed, as encoded for that backend)
// Thread-safety: write() may be called from any thread (serialised by a mutex; each record is
// one write(2) with O_APPEND, so concurrent writers never interleave records).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "backends/exporter.h"

namespace chsync {

std::string dead_letter_path(const std::string& state_path);

struct DeadLetter {
  std::string time, instance, endpoint, content_type, reason;
  int status = 0;
  std::vector<std::uint64_t> span_keys;
  std::string body;
};

class DeadLetterWriter {
 public:
  explicit DeadLetterWriter(std::string path);
  void write(const std::string& instance, const Ack& ack, const std::vector<std::uint64_t>& keys);
  // A record read back (replay keeps what is still dead), stamped with the time of this write.
  void write(const DeadLetter& d);
  std::uint64_t written() const { return written_; }

 private:
  void append(const std::string& line);

  std::string path_;
  std::mutex mu_;
  std::uint64_t written_ = 0;
};

// Reads every record; malformed lines are skipped and counted in `bad`.
std::vector<DeadLetter> read_dead_letters(const std::string& path, std::uint64_t& bad);

}  // namespace chsync
