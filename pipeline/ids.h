// Deterministic trace and span IDs (design.md, "IDs"):
//   trace = sha256("cc:turn:" + sessionId + ":" + prompt uuid)[0:16]
//   span  = sha256("cc:" + kind + ":" + key)[0:8]
//   session trace (--trace-per-session) = sha256("cc:session:" + sessionId)[0:16]
// An all-zero result (invalid in OTLP) is replaced by the next bytes of the digest.
//
// Thread-safety: each thread uses its own IdHasher (it keeps a fetched EVP_MD and a context,
// because OpenSSL 3's implicit fetch per init halves throughput and does not scale).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>

#include "pipeline/span.h"

namespace chsync {

class IdHasher {
 public:
  IdHasher();
  ~IdHasher();
  IdHasher(const IdHasher&) = delete;
  IdHasher& operator=(const IdHasher&) = delete;

  TraceId turn_trace(std::string_view session_id, std::string_view prompt_uuid);
  TraceId session_trace(std::string_view session_id);
  // kind: "turn", "generation", "tool", "agent", "event".
  SpanId span(std::string_view kind, std::string_view key);
  // Full SHA-256 of the concatenated parts.
  std::array<std::uint8_t, 32> sha256(std::initializer_list<std::string_view> parts);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Hex SHA-256 of a buffer (for truncation metadata). Uses a thread-local IdHasher.
std::string sha256_hex(std::string_view data);

}  // namespace chsync
