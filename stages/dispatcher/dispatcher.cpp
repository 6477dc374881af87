#include "stages/dispatcher/dispatcher.h"

#include <map>
#include <numeric>
#include <string_view>

namespace chsync {

Dispatcher::Dispatcher(Wiring wiring) : w_(std::move(wiring)) {}

Dispatcher::~Dispatcher() {
  for (auto& q : send_queues_) q->close();
}

void Dispatcher::start(StageRunner& runner) {
  start_senders(runner);
  threads_.spawn(runner, "dispatcher", [this] { run(); });
}

void Dispatcher::start_senders(StageRunner& runner) {
  if (w_.routes.size() < 2) return;
  sender_stopped_.assign(w_.routes.size(), -1);
  const std::uint64_t per_queue = w_.budget->send_queue_bytes_each();
  for (std::size_t ii = 0; ii < w_.routes.size(); ++ii)
    send_queues_.push_back(std::make_unique<BoundedQueue<SendItem>>(per_queue));
  for (std::size_t ii = 0; ii < w_.routes.size(); ++ii)
    threads_.spawn(runner, "sender-" + w_.routes[ii].name, [this, ii] { run_sender(ii); });
}

void Dispatcher::run_sender(std::size_t ii) {
  const Route& route = w_.routes[ii];
  while (auto item = send_queues_[ii]->pop()) {
    if (item->flush) {
      route.exporter->flush();
      route.ledger->finalize_ready();
      continue;
    }
    send_to(route, item->bundle, std::move(item->spans), item->encoded, item->repeats);
  }
  // Input is exhausted for this backend: its partial batch goes out and its requests drain now,
  // without waiting for the slower backends' senders, and never past the run's one deadline
  // (after a stop it is fixed already: a sender that returns late gets only what is left of it).
  sender_stopped_[ii] = route.exporter->stop(time_left(w_.drain->from_now())) ? 1 : 0;
}

// Sends one bundle's spans to one instance, then records finished bundles. Runs on the
// dispatcher thread (one backend) or on the instance's sender thread (several backends).
void Dispatcher::send_to(const Route& route, std::size_t bundle, std::vector<Span>&& out,
                         const std::vector<std::string_view>& encoded, std::uint64_t repeats) {
  // After a signal (or a fatal error) nothing new goes out: only in-flight requests drain.
  if (!out.empty() && !exporter_fatal_.load() && !stopping()) {
    route.ledger->add_repeats(repeats);
    const bool ok = encoded.empty() ? route.exporter->send(std::move(out))
                                    : route.exporter->send_encoded(std::move(out), encoded);
    if (!ok) {
      exporter_fatal_ = true;
      w_.request_stop();
    }
  } else if (!out.empty()) {
    route.ledger->mark_failed(bundle);
  }
  route.ledger->finalize_ready();
}

// Bookkeeping of a mapped bundle: totals, the outcomes the ledgers will write, progress.
void Dispatcher::record(BundleResult& r) {
  const std::size_t bi = r.bundle_index;
  // Every count of MapStats (a new one must be added here to reach the report).
  static constexpr std::uint64_t MapStats::*kCounts[] = {
      &MapStats::lines,           &MapStats::bad_lines_json,
      &MapStats::bad_lines_utf8,  &MapStats::bad_lines_schema,
      &MapStats::turns,           &MapStats::turns_held,
      &MapStats::spans,           &MapStats::generations,
      &MapStats::tool_spans,      &MapStats::agents,
      &MapStats::agents_unlinked, &MapStats::events};
  for (auto m : kCounts) totals_.*m += r.stats.*m;
  w_.outcomes->held_turns[bi] = r.stats.turns_held;
  if (w_.lease) w_.lease->bundle_dispatched();
  w_.outcomes->files[bi] = std::move(r.files);
  files_done_.fetch_add((*w_.bundles)[bi].files.size(), std::memory_order_relaxed);
  disk_bytes_done_.fetch_add((*w_.bundles)[bi].total_bytes(), std::memory_order_relaxed);
}

void Dispatcher::dispatch(BundleResult& r) {
  record(r);
  const std::size_t bi = r.bundle_index;
  static const BundleCheck kNoCheck;
  for (std::size_t ii = 0; ii < w_.routes.size(); ++ii) {
    const Route& route = w_.routes[ii];
    if (!(*route.needs)[bi]) continue;
    std::vector<Span> out;
    out.reserve(r.spans.size());
    const BundleCheck& chk = ii < r.checks.size() ? r.checks[ii] : kNoCheck;
    // Lease mode: spans refused by the fence were never sent; a later claim of their unit
    // sends them.
    if (w_.lease)
      for (auto k : route.ledger->take_unsent()) route.dedupe->forget_sent(k);
    // Sends of unknown outcome by another run, now this run's: each a possible repeat.
    std::uint64_t repeats = chk.adopted.size();
    if (chk.adopted_request != 0) route.ledger->adopt_request(bi, chk.adopted_request);
    const std::shared_ptr<const EncodedSpans> enc = ii < r.encoded.size() ? r.encoded[ii] : nullptr;
    std::vector<std::string_view> encoded;
    if (enc) encoded.reserve(r.spans.size());
    for (std::size_t k = 0; k < r.spans.size(); ++k) {
      Span& s = r.spans[k];
      const SpanDedupe::Verdict v = route.dedupe->admit(s.span_key(), chk.settled);
      if (!v.send) continue;
      repeats += v.possible_repeats;
      if (enc) encoded.push_back(enc->span(k));
      if (ii + 1 == w_.routes.size()) out.push_back(std::move(s));
      else out.push_back(s);
    }
    route.ledger->dispatched(bi, out.size());
    if (!send_queues_.empty()) {
      std::uint64_t bytes =
          std::accumulate(out.begin(), out.end(), std::uint64_t{64},
                          [](std::uint64_t n, const Span& sp) { return n + approx_bytes(sp); });
      for (auto e : encoded) bytes += e.size() + sizeof(std::string_view);
      SendItem item{
          bi, std::move(out), repeats, false, encoded.empty() ? nullptr : enc, std::move(encoded)};
      if (send_queues_[ii]->push(std::move(item), bytes)) continue;
      out.clear();  // closed: cannot happen while the dispatcher runs; account as not sent
      encoded.clear();
    }
    send_to(route, bi, std::move(out), encoded, repeats);
  }
}

// Lease mode: while the feeder waits for claims, partial batches go out and finished bundles are
// recorded, so that units complete (and the feeder may claim more) without more input.
void Dispatcher::idle_flush() {
  if (send_queues_.empty()) {
    for (const auto& route : w_.routes) {
      route.exporter->flush();
      route.ledger->finalize_ready();
    }
    return;
  }
  for (auto& q : send_queues_) {
    SendItem f;
    f.flush = true;
    q->try_push(f, 64);
  }
}

void Dispatcher::run() {
  if (w_.ordered && !w_.lease) {
    run_ordered();
  } else {
    for (;;) {
      bool timed_out = false;
      auto r = w_.lease ? w_.results->pop_for(std::chrono::milliseconds(50), timed_out)
                        : w_.results->pop();
      if (!r) {
        if (!timed_out) break;
        if (w_.lease->feeder_idle()) idle_flush();
        continue;
      }
      dispatch(*r);
    }
  }
  for (auto& q : send_queues_) q->close();  // senders drain what is queued, then exit
}

void Dispatcher::run_ordered() {
  const auto& any_need = *w_.any_need;
  std::map<std::size_t, BundleResult> reorder;  // bundle seq -> result
  std::map<std::size_t, std::uint64_t> reorder_size;
  std::uint64_t reorder_bytes = 0;
  const std::uint64_t reorder_cap = w_.budget->reorder_bytes();
  std::size_t next = 0;
  auto advance = [&] {
    while (next < any_need.size() && !any_need[next]) ++next;
  };
  advance();
  while (auto r = w_.results->pop()) {
    const std::uint64_t sz = result_bytes(*r);
    reorder_bytes += sz;
    reorder_size[r->bundle_index] = sz;
    reorder.emplace(r->bundle_index, std::move(*r));
    while (!reorder.empty() && (reorder.begin()->first <= next || reorder_bytes > reorder_cap)) {
      const std::size_t k = reorder.begin()->first;
      dispatch(reorder.begin()->second);
      reorder.erase(reorder.begin());
      reorder_bytes -= reorder_size[k];
      reorder_size.erase(k);
      if (k >= next) {
        next = k + 1;
        advance();
      }
    }
  }
  for (auto& [k, r] : reorder) dispatch(r);  // after a stop: whatever arrived
}

bool Dispatcher::stop(Deadline deadline) noexcept {
  stop_ = true;
  // The exporters are stopped only once nothing sends to them any more.
  if (!threads_.wait_until(deadline)) return false;
  bool drained = true;
  for (std::size_t ii = 0; ii < w_.routes.size(); ++ii) {
    const bool ok = ii < sender_stopped_.size() && sender_stopped_[ii] >= 0
                        ? sender_stopped_[ii] == 1
                        : w_.routes[ii].exporter->stop(time_left(deadline));
    drained = ok && drained;
  }
  // A ledger is final once its exporter has given every span an outcome.
  for (const auto& route : w_.routes) route.ledger->stop(deadline);  // records what finished
  return drained;
}

MapStats Dispatcher::totals() const { return totals_; }

}  // namespace chsync
