#include "stages/delivery/delivery_ledger.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <tuple>
#include <utility>

#include "pipeline/clock.h"

namespace chsync {

void StateFailure::fail(std::string message) {
  std::lock_guard lock(mu_);
  if (!failed_.exchange(true)) message_ = std::move(message);
}

void StateFailure::fail(const char* prefix, const std::exception& e) {
  const auto* se = dynamic_cast<const StateError*>(&e);
  if (se && se->code() == StateError::Code::kUnavailable) unreachable_ = true;
  fail(std::string(prefix) + e.what());
}

std::string StateFailure::message() const {
  std::lock_guard lock(mu_);
  return message_;
}

DeliveryLedger::DeliveryLedger(Wiring wiring) : w_(std::move(wiring)) {}

void DeliveryLedger::count_recovered_at_start(const std::vector<std::uint64_t>& settled) {
  std::lock_guard lock(mu_);
  for (auto k : w_.dedupe->in_flight_keys()) {
    if (std::binary_search(settled.begin(), settled.end(), k)) {
      counts_.repeated += w_.dedupe->sends_before(k);
      recovered_.insert(k);
    }
  }
}

void DeliveryLedger::attach(Exporter& exporter, bool synchronous) {
  if (w_.state && !w_.dry_run && !synchronous)
    exporter.set_before_send(
        [this](const std::vector<SpanRef>& refs) { return before_send(refs); });
  exporter.set_ack_fn([this](Ack&& ack) { on_ack(std::move(ack)); });
}

bool DeliveryLedger::before_send(const std::vector<SpanRef>& refs) {
  std::vector<std::uint64_t> keys;
  keys.reserve(refs.size());
  for (const auto& r : refs) keys.push_back(r.span_key);
  std::uint64_t req = 0;
  try {
    // Lease mode: the record is the fence: written only while this run still holds every unit
    // of the request under the token it was claimed with.
    req = w_.fences ? w_.state->begin_fenced_request(w_.instance, keys, w_.fences(refs))
                    : w_.state->begin_request(w_.instance, keys);
  } catch (const std::exception& e) {
    // The state cannot record the send (disk full, database gone): the run stops, and the
    // exporter keeps this request from leaving, since a send without its record could repeat
    // uncounted.
    w_.failure->fail("state: ", e);
    throw;
  }
  std::lock_guard lock(mu_);
  if (req == 0) {
    // A unit changed hands (this run outlived its lease): the request does not leave; its spans
    // come back failed, are counted as fenced, and are the new holder's.
    fenced_.insert(keys.begin(), keys.end());
    return false;
  }
  for (auto k : keys) request_of_[k] = req;
  reqs_[req].left = keys.size();
  return true;
}

std::vector<std::uint64_t> DeliveryLedger::take_unsent() {
  std::lock_guard lock(mu_);
  return std::exchange(unsent_, {});
}

void DeliveryLedger::on_ack(Ack&& ack) noexcept {
  // Acks arrive on exporter threads: a state write that fails here (disk full, I/O error) must
  // not escape the thread. It stops the run; what was not recorded is sent again by the next run
  // (and counted as repeats through the in-flight records).
  try {
    std::vector<std::uint64_t> keys;
    keys.reserve(ack.spans.size());
    for (const auto& r : ack.spans) keys.push_back(r.span_key);
    const bool delivered = ack.outcome == Ack::Outcome::kDelivered;
    const bool dead = ack.outcome == Ack::Outcome::kDead;
    if (dead && w_.dead_letter) w_.dead_letter(ack, keys);
    std::map<std::uint64_t, std::vector<std::uint64_t>> by_request;
    std::lock_guard lock(mu_);
    std::uint64_t sent = 0;
    for (const auto& r : ack.spans) {
      auto& p = pending_[r.bundle_seq];
      if (!fenced_.empty() && fenced_.erase(r.span_key)) {
        // Never sent (refused by the fence): no record to finish, not a failure.
        ++counts_.fenced;
        unsent_.push_back(r.span_key);
        p.fenced = true;
      } else {
        auto it = request_of_.find(r.span_key);
        std::uint64_t req = 0;
        if (it != request_of_.end()) {
          req = it->second;
          request_of_.erase(it);
        }
        by_request[req].push_back(r.span_key);
        ++sent;
      }
      if ((delivered || dead) && w_.dedupe->in_flight_before(r.span_key))
        recovered_.insert(r.span_key);
      if (p.outstanding > 0) --p.outstanding;
      if (!delivered && !dead) p.failed = true;
      if (delivered) ++p.delivered;
      if (p.outstanding == 0 && p.dispatched) ready_.push_back(r.bundle_seq);
    }
    if (delivered) counts_.delivered += sent;
    else if (dead) counts_.dead += sent;
    else if (sent > 0) {
      counts_.failed += sent;
      if (!ack.reason.empty()) counts_.last_failure = ack.reason;
    }
    if (!w_.state || w_.dry_run) return;
    for (auto& [req, ks] : by_request) record_outcome_locked(ack, req, ks, delivered, dead);
  } catch (const std::exception& e) {
    w_.failure->fail("state: ", e);
  }
}

void DeliveryLedger::record_outcome_locked(const Ack& ack, std::uint64_t req,
                                           const std::vector<std::uint64_t>& ks, bool delivered,
                                           bool dead) {
  StateStore& st = *w_.state;
  if (req == 0) {  // synchronous exporters: no in-flight record
    if (delivered || dead) st.finish_request(w_.instance, 0, ks, delivered, dead);
    return;
  }
  ReqInfo info;
  if (auto rit = reqs_.find(req); rit != reqs_.end()) {
    info = std::move(rit->second);
    reqs_.erase(rit);
  }
  info.left = info.left > ks.size() ? info.left - ks.size() : 0;
  if (!delivered && !dead && ack.http_status != 0 && info.left == 0 && info.uncertain.empty()) {
    // The backend answered no (401/403/404, or a final 429/5xx): not delivered.
    st.finish_request(w_.instance, req, ks, false, false);
    return;
  }
  if (!delivered && !dead) {
    // Transport error, timeout or stopped: the request may have reached the backend, so its
    // record stays and the next run counts these spans as possible repeats.
    info.uncertain.insert(info.uncertain.end(), ks.begin(), ks.end());
    if (info.left > 0) reqs_.emplace(req, std::move(info));
    return;
  }
  if (info.left == 0 && info.uncertain.empty()) {
    st.finish_request(w_.instance, req, ks, delivered, dead);
    return;
  }
  // Part of a request (413 halves, or after a failed part): finishing it removes the whole
  // record, so the rest is recorded again first (committed before the removal).
  std::vector<std::uint64_t> outstanding;
  if (info.left > 0)
    for (const auto& [k, q] : request_of_)
      if (q == req) outstanding.push_back(k);
  std::vector<std::uint64_t> rest = info.uncertain;
  rest.insert(rest.end(), outstanding.begin(), outstanding.end());
  const std::uint64_t nreq = st.begin_request(w_.instance, rest);
  st.finish_request(w_.instance, req, ks, delivered, dead);
  for (auto k : outstanding) request_of_[k] = nreq;
  if (info.left > 0) reqs_.emplace(nreq, std::move(info));
}

void DeliveryLedger::dispatched(std::uint64_t bundle, std::uint64_t spans) {
  std::lock_guard lock(mu_);
  auto& p = pending_[bundle];
  p.outstanding += spans;
  p.dispatched = true;
  if (p.outstanding == 0) ready_.push_back(bundle);
}

void DeliveryLedger::mark_failed(std::uint64_t bundle) {
  std::lock_guard lock(mu_);
  pending_[bundle].failed = true;
}

void DeliveryLedger::adopt_request(std::uint64_t bundle, std::uint64_t request) {
  std::lock_guard lock(mu_);
  adopted_request_[bundle] = request;
}

void DeliveryLedger::add_repeats(std::uint64_t n) {
  std::lock_guard lock(mu_);
  counts_.repeated += n;
}

void DeliveryLedger::file_rows_locked(std::uint64_t seq, const Pending& p,
                                      std::vector<FileState>& rows) const {
  const Bundle& b = (*w_.bundles)[seq];
  const auto& fos = w_.outcomes->files[seq];
  for (std::size_t i = 0; i < b.files.size(); ++i) {
    const FileRef& f = b.files[i];
    if (f.kind == SourceKind::kStdin) continue;
    FileState fs;
    fs.instance = w_.instance;
    fs.key = f.key;
    fs.size = f.size;
    fs.mtime_ms = f.mtime_ms;
    fs.committed_offset = i < fos.size() ? fos[i].end_offset : 0;
    fs.lines = i < fos.size() ? fos[i].lines : 0;
    fs.errors = i < fos.size() ? fos[i].bad : 0;
    const bool tail_pending = i < fos.size() && fos[i].truncated_tail && f.settles;
    const bool read_error = i < fos.size() && !fos[i].error.empty();
    // An archive member cut short by damage (fewer bytes than its header says) stays incomplete,
    // so a repaired archive is read again even if size and mtime match.
    const bool member_short =
        f.kind == SourceKind::kArchiveMember && i < fos.size() && fos[i].bytes < f.size;
    fs.complete =
        w_.outcomes->held_turns[seq] == 0 && !tail_pending && !read_error && !member_short;
    fs.last_sync_ms = wall_clock_ms();
    fs.spans = i == 0 ? p.delivered : 0;
    fs.project = b.project;
    rows.push_back(std::move(fs));
  }
}

bool DeliveryLedger::stop(Deadline /*deadline*/) noexcept {
  finalize_ready();
  std::lock_guard lock(mu_);
  return std::none_of(pending_.begin(), pending_.end(),
                      [](const auto& entry) { return entry.second.outstanding > 0; });
}

void DeliveryLedger::finalize_ready() noexcept {
  // The bookkeeping runs in a dry run too (so `pending` does not grow); only rows are skipped.
  const bool write_rows = w_.state && !w_.dry_run;
  std::vector<FileState> rows;
  std::vector<std::tuple<std::uint64_t, bool, bool>> outcomes_of;  // (bundle, failed, fenced)
  std::vector<std::uint64_t> adopted_done;  // adopted in-flight records now settled
  try {
    std::lock_guard lock(mu_);
    std::vector<std::uint64_t> ready;
    ready.swap(ready_);
    std::sort(ready.begin(), ready.end());
    ready.erase(std::unique(ready.begin(), ready.end()), ready.end());
    std::vector<std::uint64_t> done;
    for (auto seq : ready) {
      auto pit = pending_.find(seq);
      if (pit == pending_.end()) continue;
      const Pending& p = pit->second;
      if (!p.dispatched || p.outstanding > 0) continue;
      done.push_back(seq);
      // A fenced bundle was not all sent here: no file rows, and its unit is not completed.
      const bool failed = p.failed || p.fenced;
      outcomes_of.emplace_back(seq, failed, p.fenced);
      if (auto ait = adopted_request_.find(seq); ait != adopted_request_.end()) {
        if (!failed) adopted_done.push_back(ait->second);
        adopted_request_.erase(ait);
      }
      if (failed || !write_rows) continue;
      file_rows_locked(seq, p, rows);
    }
    for (auto s : done) pending_.erase(s);
  } catch (const std::exception& e) {
    w_.failure->fail("state: ", e);
  }
  if (write_rows && !rows.empty() && !w_.failure->failed()) {
    try {
      w_.state->put_files(rows);
      for (auto req : adopted_done) w_.state->finish_request(w_.instance, req, {}, false, false);
    } catch (const std::exception& e) {
      w_.failure->fail("state: ", e);
    }
  }
  // The unit is done only if its rows were written (else it is released for a retry).
  const bool rows_failed = write_rows && w_.failure->failed();
  if (w_.on_bundle_final)
    for (auto [seq, failed, fenced] : outcomes_of)
      w_.on_bundle_final(seq, failed || rows_failed, fenced);
}

std::vector<std::uint64_t> DeliveryLedger::carry_over() const {
  std::vector<std::uint64_t> carry;
  std::lock_guard lock(mu_);
  for (auto k : w_.dedupe->in_flight_keys())
    if (!w_.dedupe->delivered_before(k) && !recovered_.contains(k))
      carry.insert(carry.end(), w_.dedupe->sends_before(k), k);
  return carry;
}

DeliveryCounts DeliveryLedger::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

}  // namespace chsync
