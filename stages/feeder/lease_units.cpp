#include "stages/feeder/lease_units.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "pipeline/fnv1a.h"
#include "pipeline/log.h"
#include "stages/delivery/delivery_ledger.h"

namespace chsync {
namespace {
using Clock = std::chrono::steady_clock;
constexpr std::size_t kNoUnit = static_cast<std::size_t>(-1);
}  // namespace

LeaseUnits::LeaseUnits(WorkTable& table, const std::vector<Bundle>& bundles,
                       const std::vector<bool>& any_need, log::Logger logger)
    : table_(table), log_(std::move(logger)), unit_of_(bundles.size(), kNoUnit) {
  for (std::size_t b = 0; b < bundles.size(); ++b) {
    if (!any_need[b] || bundles[b].files.empty()) continue;
    const FileRef& f0 = bundles[b].files[0];
    const bool member = f0.kind == SourceKind::kArchiveMember;
    const std::string key = member ? f0.path : f0.key;
    auto [it, fresh] = unit_by_key_.emplace(key, units_.size());
    if (fresh) {
      Unit u;
      u.key = key;
      if (member) u.archive = f0.path;
      units_.push_back(std::move(u));
    }
    units_[it->second].bundles.push_back(b);
    unit_of_[b] = it->second;
  }
  std::vector<WorkUnitSpec> specs;
  specs.reserve(units_.size());
  for (const auto& u : units_) {
    std::uint64_t h = kFnvBasis;
    for (auto b : u.bundles)
      for (const auto& f : bundles[b].files)
        h = fnv1a(h, fmt::format("{}\n{}\n{}\n", f.key, f.size, f.mtime_ms));
    specs.push_back(WorkUnitSpec{u.key, fmt::format("{:016x}", h), u.bundles.front()});
  }
  table_.register_units(specs);
}

// A (bundle, instance) pair reached its outcome: completes the unit once nothing is due.
void LeaseUnits::finish_if_done(std::size_t u, std::unique_lock<std::mutex>& lock) {
  Unit& unit = units_[u];
  if (unit.left > 0 || unit.feeding || unit.finished) return;
  unit.finished = true;
  unit.active = false;
  --outstanding_;
  const bool failed = unit.failed;
  if (!failed) ++counts_.done;
  if (unit.lost) ++counts_.lost;
  const UnitFence uf{unit.key, unit.fence};
  lock.unlock();
  cv_.notify_all();
  try {
    // Both act only under this claim's token: a lost unit is left to its new holder.
    if (failed) table_.release(uf);
    else table_.complete(uf);
  } catch (const std::exception& e) {
    // The lease then simply expires and another worker redoes the unit (deduped by span).
    log_.warn(std::string("work table: ") + e.what());
  }
  lock.lock();
}

void LeaseUnits::bundle_finalized(std::size_t seq, bool failed, bool fenced) {
  if (seq >= unit_of_.size() || unit_of_[seq] == kNoUnit) return;
  std::unique_lock lock(mu_);
  Unit& unit = units_[unit_of_[seq]];
  if (failed || fenced) unit.failed = true;
  if (fenced) unit.lost = true;
  if (unit.left > 0) --unit.left;
  finish_if_done(unit_of_[seq], lock);
}

void LeaseUnits::on_push(std::size_t bundle, std::uint64_t instances) {
  std::lock_guard lock(mu_);
  units_[unit_of_[bundle]].left += instances;
  ++bundles_in_pipeline_;
}

void LeaseUnits::bundle_dispatched() {
  {
    std::lock_guard lock(mu_);
    if (bundles_in_pipeline_ > 0) --bundles_in_pipeline_;
  }
  cv_.notify_all();
}

std::vector<UnitFence> LeaseUnits::fences_of(const std::vector<SpanRef>& refs) const {
  std::vector<UnitFence> out;
  std::lock_guard lock(mu_);
  std::uint64_t last = ~std::uint64_t{0};
  for (const auto& r : refs) {
    if (r.bundle_seq == last) continue;
    last = r.bundle_seq;
    if (r.bundle_seq >= unit_of_.size() || unit_of_[r.bundle_seq] == kNoUnit) continue;
    const Unit& u = units_[unit_of_[r.bundle_seq]];
    UnitFence f{u.key, u.fence};
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(std::move(f));
  }
  return out;
}

LeaseUnits::Counts LeaseUnits::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

// --verbose: why this worker is still waiting (an operator's first question at the end).
void LeaseUnits::log_wait(const LeaseFeedOptions& options, const char* why, const WorkCounts* c) {
  if (!options.verbose || Clock::now() - last_wait_log_ < std::chrono::seconds(5)) return;
  last_wait_log_ = Clock::now();
  std::size_t mine = 0, queued = 0;
  {
    std::lock_guard lock(mu_);
    mine = outstanding_;
    queued = bundles_in_pipeline_;
  }
  log_.info(
      fmt::format("work sharing: waiting ({}): {} units in progress here, {} bundles "
                  "queued{}",
                  why, mine, queued,
                  c ? fmt::format("; group: {} pending, {} claimed ({} here), {} "
                                  "expired, {} done",
                                  c->pending, c->claimed, c->claimed_by_me, c->expired, c->done)
                    : std::string()));
}

// Marks a claimed unit active; false when it is still in this pipeline (the claim query skips
// this run's own expired leases, but a unit lost to another run and given back can come back
// while its old bundles still drain here): then this claim is given back, since a bundle's
// bookkeeping is fed once at a time, and the old one finishes first.
bool LeaseUnits::start_unit(const ClaimedUnit& cu, const LeaseFeedOptions& options) {
  const std::size_t u = unit_by_key_.at(cu.key);
  {
    std::unique_lock lock(mu_);
    if (units_[u].active) {
      lock.unlock();
      try {
        table_.release(UnitFence{cu.key, cu.fence});
      } catch (const std::exception& e) {
        log_.warn(std::string("work table: ") + e.what());
      }
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      return false;
    }
    units_[u].active = true;
    ++outstanding_;
    ++counts_.claimed;
    // Only a lease that expired under another run: not a unit a worker that does not know it
    // (another shard's inputs) claimed and gave back.
    if (cu.taken_over) ++counts_.taken_over;
    units_[u].feeding = true;
    units_[u].finished = false;
    units_[u].failed = false;
    units_[u].lost = false;
    units_[u].fence = cu.fence;
  }
  if (cu.taken_over && options.verbose)
    log_.info(fmt::format("taking over {} (attempt {}, last holder {})", cu.key, cu.attempts,
                          cu.prev_owner.empty() ? "none" : cu.prev_owner));
  return true;
}

// Claims units a few at a time, only while few bundles wait to be mapped (units waiting for
// acks do not count: the exporters' in-flight limit bounds those), feeds them, and keeps asking
// until no unit is pending, claimed by a live worker, or held by an expired lease (a crashed
// worker's units are taken over here). Claiming just ahead of the mappers keeps the units spread
// over the workers.
void LeaseUnits::claim_and_feed(const LeaseFeedOptions& options, const FeedFn& feed,
                                const std::function<bool()>& stop_requested,
                                StateFailure& failure) {
  const std::size_t max_queued = 4 * std::max<std::size_t>(options.workers, 1) + 4;
  const auto idle_wait =
      std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500), options.lease / 4);
  std::vector<std::string> foreign;  // claimed but unknown here (not in this run's inputs)
  // The database unreachable for this long (claims failing in a row) ends the run like any other
  // state failure: what was sent is recorded by the next run that can reach it.
  const auto give_up_after = options.outage_tolerance;
  std::optional<Clock::time_point> failing_since;
  auto db_trouble = [&](const std::exception& e) {
    if (!failing_since) failing_since = Clock::now();
    if (Clock::now() - *failing_since > give_up_after) {
      failure.fail("work table: ", e);
      return true;
    }
    log_.warn(std::string("work table: ") + e.what() + " (retrying)");
    std::this_thread::sleep_for(idle_wait);
    return false;
  };
  while (!stop_requested()) {
    std::size_t room = 0;
    {
      std::unique_lock lock(mu_);
      if (bundles_in_pipeline_ >= max_queued) {
        lock.unlock();
        log_wait(options, "mappers busy", nullptr);
        lock.lock();
        cv_.wait_for(lock, std::chrono::milliseconds(100));
        continue;
      }
      room = std::min<std::size_t>(max_queued - bundles_in_pipeline_, 8);
    }
    std::vector<ClaimedUnit> got;
    try {
      got = table_.claim(room, foreign);
      failing_since.reset();
    } catch (const std::exception& e) {
      feeder_idle_ = true;
      if (db_trouble(e)) return;
      continue;
    }
    if (got.empty()) {
      feeder_idle_ = true;
      std::size_t mine = 0;
      {
        std::lock_guard lock(mu_);
        mine = outstanding_;
      }
      if (mine == 0) {
        WorkCounts c;
        try {
          c = table_.counts();
          failing_since.reset();
        } catch (const std::exception& e) {
          if (db_trouble(e)) return;
          continue;
        }
        // Nothing left that this process could ever take: done. Units only other inputs know
        // (foreign) are left to their own workers; units still claimed by this run are
        // finished here (their completion is on its way to the database).
        if (c.claimed == c.claimed_by_me && c.pending + c.expired <= foreign.size()) break;
        log_wait(options, "units held by other workers", &c);
      } else {
        log_wait(options, "own units awaiting acknowledgement", nullptr);
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, idle_wait);
      continue;
    }
    feeder_idle_ = false;
    for (const auto& cu : got) {
      if (!unit_by_key_.contains(cu.key)) {
        foreign.push_back(cu.key);
        try {
          table_.release(UnitFence{cu.key, cu.fence});
        } catch (const std::exception& e) {
          log_.warn(std::string("work table: ") + e.what());
        }
        continue;
      }
      if (!start_unit(cu, options)) continue;
      const std::size_t u = unit_by_key_.at(cu.key);
      const bool open = feed(units_[u]);
      {
        std::unique_lock lock(mu_);
        units_[u].feeding = false;
        finish_if_done(u, lock);
      }
      if (!open) return;
    }
  }
}

}  // namespace chsync
