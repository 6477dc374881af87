// What travels between the sync stages: the feeder hands a map worker a WorkItem (one bundle,
// with the bytes of its archive members), a map worker hands the dispatcher a BundleResult (the
// bundle's spans, per-file read outcomes and counts, and the spans encoded ahead for the exporters
// that allow it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/exporter.h"
#include "pipeline/span.h"
#include "stages/mapper/mapper.h"
#include "stages/state/state_store.h"

namespace chsync {

// A bundle ready for mapping; archive members carry their bytes (read by the feeder).
struct WorkItem {
  std::size_t bundle_index = 0;
  std::vector<std::string> member_data;           // parallel to bundle.files for archive members
  std::vector<std::string> member_spool;          // non-empty: that member was spooled to this file
  std::vector<std::uint64_t> member_spool_bytes;  // booked in the SpoolDir for that file
  std::vector<std::string> member_error;  // non-empty: the member was left out (over --max-spool)
};

struct FileOutcome {
  std::uint64_t lines = 0;
  std::uint64_t end_offset = 0;
  std::uint64_t bad = 0;
  std::uint64_t bytes = 0;      // decompressed bytes read
  bool truncated_tail = false;  // unparseable last line without '\n'
  std::string error;            // unreadable / corrupt stream
};

struct BundleResult {
  std::size_t bundle_index = 0;
  std::vector<Span> spans;
  MapStats stats;
  std::vector<FileOutcome> files;
  std::uint64_t bytes = 0;
  std::vector<BundleCheck> checks;  // lease mode: per instance, the shared state's view
  // Per instance (route order): the spans encoded ahead for its exporter, or null.
  std::vector<std::shared_ptr<const EncodedSpans>> encoded;
};

// Bytes a result is charged in the result queue and the reorder buffer.
inline std::uint64_t result_bytes(const BundleResult& r) {
  std::uint64_t sz = 64;
  for (const auto& s : r.spans) sz += approx_bytes(s);
  for (const auto& e : r.encoded)
    if (e) sz += e->blob.capacity() + e->ends.capacity() * sizeof(std::size_t);
  return sz;
}

}  // namespace chsync
