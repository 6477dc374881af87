// MemoryBudget: --max-memory split into named shares that add up to it exactly.
//
// Every byte-bounded buffer of a sync takes its capacity from here and nowhere else:
//   work_queue       feeder -> map workers (archive members travel with their bytes)
//   result_queue     map workers -> dispatcher (mapped spans)
//   archive_pending  archive members held until the rest of their bundle has been read; a
//                    member larger than a quarter of this share goes to the spool directly
//   reorder          the dispatcher's reorder buffer (console/file output only, else 0)
//   send_queues      one queue per backend instance when there are several (else 0), split evenly
//   delivered_set    each instance's delivered keys loaded from the state (8 bytes a key), a
//                    sixteenth of the cap split evenly; a larger set is looked up per bundle
//   sending          a quarter of the cap kept for the exporters' request bodies in flight
//                    (--max-in-flight x --batch-bytes encoded, plus their gzip: 64 MiB + ~16 MiB
//                    at the defaults). Not a queue: the exporters bound it themselves; reserving
//                    it keeps peak RSS near --max-memory (issue 19: the OTLP run peaked at
//                    318 MB of the 320 allowed while the queues took all 15/16 of the cap).
// The delivered set and sending take their shares first; the queue shares in use get equal
// parts of the rest, the last one the rounding remainder, so the sum is --max-memory to the byte.
// The queue
// shares together never go below kMinQueueBytes (then the cap is exceeded by at most that): each
// must hold a few bundles (the reorder buffer in particular: a smaller one reorders console
// output of scrambled archives), and 4 x 8 MiB was the floor before the budget existed. Queues
// admit one item larger than their share when they are empty, so a large bundle never deadlocks.
// Thread: immutable after construction.
#pragma once

#include <algorithm>
#include <cstdint>

namespace chsync {

class MemoryBudget {
 public:
  static constexpr std::uint64_t kMinQueueBytes = 32u << 20;

  MemoryBudget(std::uint64_t max_memory_bytes, bool reorder_buffer, std::size_t backend_instances)
      : instances_(std::max<std::size_t>(backend_instances, 1)),
        delivered_(max_memory_bytes / 16),
        sending_(max_memory_bytes / 4) {
    const std::uint64_t queues = std::max(max_memory_bytes - delivered_ - sending_, kMinQueueBytes);
    total_ = delivered_ + sending_ + queues;
    const bool send_queues = instances_ > 1;
    const std::uint64_t parts = 3 + (reorder_buffer ? 1 : 0) + (send_queues ? 1 : 0);
    const std::uint64_t part = queues / parts;
    work_ = result_ = pending_ = part;
    reorder_ = reorder_buffer ? part : 0;
    send_ = send_queues ? part : 0;
    // The remainder goes to the last share in use.
    const std::uint64_t rest = queues - part * parts;
    if (send_queues) send_ += rest;
    else if (reorder_buffer) reorder_ += rest;
    else pending_ += rest;
  }

  // --max-memory, or more when the queue shares were raised to kMinQueueBytes.
  std::uint64_t total_bytes() const noexcept { return total_; }
  std::uint64_t work_queue_bytes() const noexcept { return work_; }
  std::uint64_t result_queue_bytes() const noexcept { return result_; }
  std::uint64_t archive_pending_bytes() const noexcept { return pending_; }
  // A member larger than this is spooled as soon as its header is read.
  std::uint64_t archive_member_in_memory_bytes() const noexcept { return pending_ / 4; }
  std::uint64_t reorder_bytes() const noexcept { return reorder_; }
  std::uint64_t send_queues_bytes() const noexcept { return send_; }
  std::uint64_t send_queue_bytes_each() const noexcept { return send_ / instances_; }
  std::uint64_t delivered_set_bytes() const noexcept { return delivered_; }
  std::uint64_t sending_bytes() const noexcept { return sending_; }
  // Keys of one instance's delivered set that may be loaded whole.
  std::uint64_t delivered_keys_each() const noexcept { return delivered_ / instances_ / 8; }

 private:
  std::uint64_t total_ = 0;
  std::size_t instances_;
  std::uint64_t work_ = 0, result_ = 0, pending_ = 0, reorder_ = 0, send_ = 0, delivered_ = 0,
                sending_ = 0;
};

}  // namespace chsync
