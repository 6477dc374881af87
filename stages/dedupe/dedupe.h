// Dedupe stage: decides, span by span, whether one backend instance still needs a span.
//
// Consumes: span keys (Span::span_key) in dispatch order, with the shared state's per-bundle
// answer where there is one (lease mode). Produces: a verdict per key: send it (and how many
// earlier sends of unknown outcome it may repeat) or drop it as a duplicate.
// Owns: the instance's delivered keys from the state (sorted, loaded once at start), the keys of
// earlier runs' in-flight records (sorted, one entry per record), and the set of keys handed to
// the exporter in this run (FlatU64Set, ~16 bytes a key).
// Thread: admit() from one thread (the dispatcher). The loaded vectors are read-only once the
// threads start and may be read from any thread (acks, the end-of-run carry-over).
// Stop: no thread, nothing to stop.
#pragma once

#include <cstdint>
#include <vector>

#include "pipeline/flat_u64_set.h"

namespace chsync {

class SpanDedupe {
 public:
  // Keys delivered or dead in the state (sorted).
  void set_delivered(std::vector<std::uint64_t> sorted_keys);
  // One entry per earlier in-flight record holding the key (sorted; duplicates allowed).
  void set_in_flight_records(std::vector<std::uint64_t> sorted_records);

  struct Verdict {
    bool send = false;
    std::uint64_t possible_repeats = 0;  // earlier sends of unknown outcome of this key
  };
  // `settled`: keys the shared state reports delivered or dead now (sorted; may be empty).
  // A key is sent at most once per run; every drop is counted in deduped().
  Verdict admit(std::uint64_t key, const std::vector<std::uint64_t>& settled);

  // The key was handed over but never sent (refused by the fence): a later claim may send it.
  void forget_sent(std::uint64_t key) { sent_this_run_.erase(key); }

  bool delivered_before(std::uint64_t key) const;
  const std::vector<std::uint64_t>& delivered_keys() const noexcept { return delivered_; }
  bool in_flight_before(std::uint64_t key) const;
  // Earlier in-flight records holding the key (each a send of unknown outcome).
  std::uint64_t sends_before(std::uint64_t key) const;
  // Distinct keys of the earlier in-flight records (sorted).
  const std::vector<std::uint64_t>& in_flight_keys() const noexcept { return in_flight_before_; }
  std::uint64_t deduped() const noexcept { return deduped_; }
  std::size_t sent() const noexcept { return sent_this_run_.size(); }

 private:
  std::vector<std::uint64_t> delivered_;
  std::vector<std::uint64_t> in_flight_records_;
  std::vector<std::uint64_t> in_flight_before_;
  FlatU64Set sent_this_run_;
  std::uint64_t deduped_ = 0;
};

}  // namespace chsync
