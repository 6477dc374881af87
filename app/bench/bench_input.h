// The input of `chsync bench` (bench.h): the transcripts mapped once and encoded once as OTLP
// span slices (SpanEncoder::append_span) in one blob, with the position of each slice's trace,
// span and parent id, so that a pass over the input can send them again under new ids without
// encoding anything (Resalter). Bounded by --max-memory: the spans past it are left out and
// SpanStore::truncated says so. Archives are read member by member through ArchiveReader; a
// bundle is mapped once all its members are in memory. Unreadable inputs are logged (the
// options' logger) and skipped. Thread: the loader runs on the caller's thread; a Resalter is
// used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "app/bench/bench.h"
#include "backends/otlp/otlp_proto.h"
#include "pipeline/ids.h"

namespace chsync::bench {

struct SpanStore {
  std::string blob;                 // concatenated SpanEncoder::append_span slices
  std::vector<std::uint64_t> ends;  // end offset of each slice
  struct IdPos {
    std::uint64_t trace = 0, span = 0, parent = 0;  // absolute offsets in blob; 0: absent
  };
  std::vector<IdPos> ids;
  struct Batch {
    std::size_t first = 0, last = 0;  // span indexes [first, last)
  };
  std::vector<Batch> batches;
  bool truncated = false;

  std::uint64_t begin_of(std::size_t i) const { return i == 0 ? 0 : ends[i - 1]; }
};

// Maps and encodes `inputs` into `store` (up to o.max_memory_bytes of encoded spans).
void load_input(const BenchOptions& o, const std::vector<std::string>& inputs, SpanStore& store);

// Cuts the store into requests of at most `batch_spans` spans and about `batch_bytes` bytes.
void cut_batches(SpanStore& s, std::size_t batch_spans, std::uint64_t batch_bytes);

// The OTLP profile of the run (--profile, else the backend's); throws ConfigError.
otlp::Profile profile_of(const BenchOptions& o);

// Replaces ids by sha256(salt || id)[0:n] in a copy of a batch's slices. Keeps the last trace
// id it replaced (the spans of a turn share theirs). One per sending thread.
class Resalter {
 public:
  void apply(const SpanStore& s, const SpanStore::Batch& b, const std::string& salt,
             std::string& out);

 private:
  void patch(std::string& out, std::uint64_t off, std::size_t n, const std::string& salt);
  IdHasher hasher_;
  std::string last_trace_old_, last_trace_new_;
};

// The salt of pass `loop` over the input: the run's salt, then "<salt>/<loop>".
std::string salt_for(const std::string& salt, std::uint64_t loop);

}  // namespace chsync::bench
