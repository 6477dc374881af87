// FlatU64Set: an open-addressing hash set of non-zero 64-bit keys (span IDs), 8 bytes a slot at
// most 80% full: 10-20 bytes per key (13 on average over a growing run), against ~40 for
// std::unordered_set and 16-32 at the earlier 50% limit (issue 19: this set grows with the spans
// of a run). Keys are already uniformly distributed (truncated SHA-256), so the key itself is the
// hash and linear probing stays short (~3 probes for a hit, ~13 for a miss at 80%, all within a
// few cache lines). Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace chsync {

class FlatU64Set {
 public:
  // Returns true when the key was inserted, false when it was already present. Key 0 is
  // reserved as the empty marker: it is kept in a flag of its own.
  bool insert(std::uint64_t key) {
    if (key == 0) {
      const bool fresh = !has_zero_;
      has_zero_ = true;
      return fresh;
    }
    if ((size_ + 1) * 5 > slots_.size() * 4) grow();
    return place(key);
  }
  bool contains(std::uint64_t key) const {
    if (key == 0) return has_zero_;
    if (slots_.empty()) return false;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i] == key) return true;
      if (slots_[i] == 0) return false;
    }
  }
  // Returns true when the key was present. Backward-shift deletion (no tombstones): the entries
  // after it in its probe run move up unless their home slot lies between the gap and them.
  bool erase(std::uint64_t key) {
    if (key == 0) {
      const bool had = has_zero_;
      has_zero_ = false;
      return had;
    }
    if (slots_.empty()) return false;
    const std::size_t mask = slots_.size() - 1;
    std::size_t gap = mix(key) & mask;
    for (;; gap = (gap + 1) & mask) {
      if (slots_[gap] == key) break;
      if (slots_[gap] == 0) return false;
    }
    for (std::size_t j = (gap + 1) & mask; slots_[j] != 0; j = (j + 1) & mask) {
      const std::size_t home = mix(slots_[j]) & mask;
      const bool stays = gap <= j ? (gap < home && home <= j) : (gap < home || home <= j);
      if (stays) continue;
      slots_[gap] = slots_[j];
      gap = j;
    }
    slots_[gap] = 0;
    --size_;
    return true;
  }
  std::size_t size() const noexcept { return size_ + (has_zero_ ? 1 : 0); }

 private:
  static std::size_t mix(std::uint64_t k) { return static_cast<std::size_t>(k ^ (k >> 29)); }
  bool place(std::uint64_t key) {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i] == key) return false;
      if (slots_[i] == 0) {
        slots_[i] = key;
        ++size_;
        return true;
      }
    }
  }
  void grow() {
    std::vector<std::uint64_t> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, 0);
    size_ = 0;
    for (auto k : old)
      if (k != 0) place(k);
  }
  std::vector<std::uint64_t> slots_;
  std::size_t size_ = 0;
  bool has_zero_ = false;
};

}  // namespace chsync
