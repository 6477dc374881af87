#include "stages/dedupe/dedupe.h"

#include <algorithm>

namespace chsync {
namespace {
bool contains_sorted(const std::vector<std::uint64_t>& v, std::uint64_t k) {
  return std::binary_search(v.begin(), v.end(), k);
}
}  // namespace

void SpanDedupe::set_delivered(std::vector<std::uint64_t> sorted_keys) {
  delivered_ = std::move(sorted_keys);
}

void SpanDedupe::set_in_flight_records(std::vector<std::uint64_t> sorted_records) {
  in_flight_records_ = std::move(sorted_records);
  in_flight_before_ = in_flight_records_;
  in_flight_before_.erase(std::unique(in_flight_before_.begin(), in_flight_before_.end()),
                          in_flight_before_.end());
}

SpanDedupe::Verdict SpanDedupe::admit(std::uint64_t key,
                                      const std::vector<std::uint64_t>& settled) {
  Verdict v;
  if (contains_sorted(delivered_, key) || contains_sorted(settled, key) ||
      !sent_this_run_.insert(key)) {
    ++deduped_;
    return v;
  }
  v.send = true;
  if (!in_flight_before_.empty() && contains_sorted(in_flight_before_, key))
    v.possible_repeats = sends_before(key);
  return v;
}

bool SpanDedupe::delivered_before(std::uint64_t key) const {
  return contains_sorted(delivered_, key);
}

bool SpanDedupe::in_flight_before(std::uint64_t key) const {
  return !in_flight_before_.empty() && contains_sorted(in_flight_before_, key);
}

std::uint64_t SpanDedupe::sends_before(std::uint64_t key) const {
  auto [a, b] = std::equal_range(in_flight_records_.begin(), in_flight_records_.end(), key);
  return static_cast<std::uint64_t>(b - a);
}

}  // namespace chsync
