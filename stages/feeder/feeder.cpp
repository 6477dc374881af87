#include "stages/feeder/feeder.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <unordered_map>

#include "stages/reader/archive_reader.h"

namespace chsync {

void Feeder::start(StageRunner& runner) {
  threads_.spawn(runner, "feeder", [this] { run(); });
}

bool Feeder::stop(Deadline deadline) noexcept {
  stop_ = true;
  w_.work->close();
  return threads_.wait_until(deadline);
}

void Feeder::run() {
  if (w_.lease) {
    w_.lease->claim_and_feed(
        w_.lease_options,
        [this](const LeaseUnits::Unit& u) {
          if (!u.archive.empty()) return feed_archive(u.archive, u.bundles);
          return push(WorkItem{u.bundles.front(), {}, {}, {}, {}}, 1);
        },
        [this] { return stopping(); }, *w_.failure);
  } else {
    feed_all();
  }
  w_.work->close();
}

bool Feeder::push(WorkItem&& item, std::uint64_t bytes) {
  if (w_.lease) w_.lease->on_push(item.bundle_index, w_.instances_needing(item.bundle_index));
  return w_.work->push(std::move(item), bytes);
}

void Feeder::feed_all() {
  const auto& bundles = *w_.bundles;
  std::map<std::string, std::vector<std::size_t>> by_archive;
  for (std::size_t b = 0; b < bundles.size(); ++b) {
    if (!(*w_.any_need)[b]) continue;
    if (stopping()) break;
    if (!bundles[b].files.empty() && bundles[b].files[0].kind == SourceKind::kArchiveMember) {
      by_archive[bundles[b].files[0].path].push_back(b);
      continue;
    }
    if (!w_.work->push(WorkItem{b, {}, {}, {}, {}}, 1)) return;
  }
  for (auto& [apath, list] : by_archive) {
    if (stopping()) break;
    if (!feed_archive(apath, list)) break;
  }
}

namespace {

// One archive member read into memory or, past the caps, into a spool file.
struct MemberRead {
  std::string data, spool_path, write_error, damage;
  std::uint64_t spool_bytes = 0;  // booked in the SpoolDir for spool_path
  bool ok = true;
  bool over_limit = false;      // left out: it does not fit under --max-spool
  bool stopped = false;         // a stop came while waiting for spool room
  bool window_refused = false;  // damage: a zip LZMA/XZ member's dictionary is over the budget
  bool damage_local = false;    // the damage is the member's own; the archive walk goes on
};

std::string mib(std::uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

MemberRead read_member(ArchiveReader& ar, SpoolDir& spool, std::uint64_t declared,
                       std::uint64_t pending_bytes, std::uint64_t pending_cap,
                       std::uint64_t member_mem_cap, std::uint64_t own_spool_bytes,
                       const std::function<bool()>& stop, std::vector<char>& buf) {
  MemberRead m;
  int fd = -1;
  const std::uint64_t limit = spool.limit_bytes();
  auto over_limit = [&](std::uint64_t member_bytes) {
    m.over_limit = true;
    m.write_error = fmt::format(
        "left out: over --max-spool {} (archive members spooled to disk at once): this member "
        "is {}{}{}; raise --max-spool",
        mib(limit), member_bytes == declared ? "" : "at least ", mib(member_bytes),
        own_spool_bytes == 0 ? std::string()
                             : fmt::format(" and members waiting for the rest of their session "
                                           "hold {}",
                                           mib(own_spool_bytes)));
    return false;
  };
  auto spool_write = [&](const char* p, std::size_t n) {
    switch (spool.charge(n, own_spool_bytes + m.spool_bytes, stop)) {
      case SpoolDir::Charge::kBooked: break;
      case SpoolDir::Charge::kOverLimit: return over_limit(m.spool_bytes + n);
      case SpoolDir::Charge::kStopped:
        m.stopped = true;
        m.write_error = "stopped";
        return false;
    }
    m.spool_bytes += n;
    return write_all(fd, p, n, m.write_error);
  };
  auto to_disk = [&] {
    // A declared size alone over the cap: refused before anything is decompressed to disk.
    if (limit > 0 && declared > limit) return over_limit(declared);
    m.spool_path = spool.create_file(fd, m.write_error);
    if (m.spool_path.empty()) return false;
    if (!m.data.empty() && !spool_write(m.data.data(), m.data.size())) return false;
    std::string().swap(m.data);
    return true;
  };
  if (declared > member_mem_cap || pending_bytes + declared > pending_cap) m.ok = to_disk();
  while (m.ok) {
    const long n = ar.read(buf.data(), buf.size());
    if (n < 0) {
      m.damage = ar.error("corrupt member");
      m.window_refused = ar.window_refused();
      m.damage_local = ar.damage_is_local();
      break;
    }
    if (n == 0) break;
    if (fd >= 0) {
      m.ok = spool_write(buf.data(), static_cast<std::size_t>(n));
    } else {
      m.data.append(buf.data(), static_cast<std::size_t>(n));
      // Sizes can be unknown (zip streams) or wrong: check as the data grows.
      if (m.data.size() > member_mem_cap || pending_bytes + m.data.size() > pending_cap)
        m.ok = to_disk();
    }
  }
  if (fd >= 0) ::close(fd);
  return m;
}

}  // namespace

bool Feeder::feed_archive(const std::string& apath, const std::vector<std::size_t>& list) {
  const auto& bundles = *w_.bundles;
  const std::uint64_t pending_cap = w_.budget->archive_pending_bytes();
  const std::uint64_t member_mem_cap = w_.budget->archive_member_in_memory_bytes();
  // Discover already named this archive's damage (it lists the same headers): say it once.
  const bool damage_known =
      std::any_of(w_.discover_errors->begin(), w_.discover_errors->end(), [&](auto& e) {
        return e.path == apath && (e.kind == "corrupt_archive" || e.kind == "decoder_window");
      });
  std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> where;
  std::map<std::size_t, WorkItem> partial;  // ordered: released in bundle order at the end
  std::unordered_map<std::size_t, std::size_t> missing;
  std::unordered_map<std::size_t, std::uint64_t> held;        // in-memory bytes per bundle
  std::unordered_map<std::size_t, std::uint64_t> held_spool;  // spooled bytes per bundle
  std::uint64_t pending_bytes = 0, pending_spool_bytes = 0;
  for (auto b : list) {
    for (std::size_t i = 0; i < bundles[b].files.size(); ++i)
      where[bundles[b].files[i].member] = {b, i};
    const std::size_t n = bundles[b].files.size();
    WorkItem& item = partial[b];
    item.bundle_index = b;
    item.member_data.resize(n);
    item.member_spool.resize(n);
    item.member_spool_bytes.resize(n);
    item.member_error.resize(n);
    missing[b] = n;
  }
  ArchiveReader ar(apath, w_.zstd_window_bytes);
  if (!ar.is_open()) {
    w_.problems->file_error(apath + ": cannot open archive: " + ar.error("unknown error"));
    return true;
  }
  std::vector<char> buf(1 << 16);
  ArchiveEntry e;
  bool stopped = false;
  for (;;) {
    if (stopping()) break;
    const auto next = ar.next(e);
    if (next == ArchiveReader::Next::kEnd) break;
    if (next == ArchiveReader::Next::kDamaged) {
      if (!damage_known)
        w_.problems->file_error(apath +
                                ": truncated or corrupt archive: " + ar.error("bad header"));
      break;
    }
    auto it = where.find(e.name);
    if (it == where.end() || partial.find(it->second.first) == partial.end()) {
      ar.skip();
      continue;
    }
    auto [b, i] = it->second;
    MemberRead m = read_member(
        ar, spool_, e.size, pending_bytes, pending_cap, member_mem_cap, pending_spool_bytes,
        [this] { return stopping(); }, buf);
    if (m.stopped) {
      // A stop came while it waited for spool room: its bundle is not fed (not even partly).
      if (!m.spool_path.empty()) spool_.remove(m.spool_path, m.spool_bytes);
      else spool_.refund(m.spool_bytes);
      stopped = true;
      break;
    }
    if (m.window_refused) {
      // Nothing of it was decoded (refused before its dictionary was allocated): left out like a
      // member over --max-spool, so the state does not count it read and a run with a larger
      // --max-memory reads it.
      m.ok = false;
      m.write_error = "decoder_window: " + m.damage;
      m.damage.clear();
    }
    std::string left_out;
    if (!m.ok) {
      // Over --max-spool, or spooling failed (disk full?): the member is left out and its
      // worker reports it (an error on the file: counted, exit 1, not marked complete in the
      // state, so the next run reads it again); the rest goes on.
      left_out = m.over_limit || m.window_refused ? m.write_error
                                                  : "cannot spool member: " + m.write_error;
      if (!m.spool_path.empty()) spool_.remove(m.spool_path, m.spool_bytes);
      else spool_.refund(m.spool_bytes);
      m.spool_path.clear();
      m.spool_bytes = 0;
      std::string().swap(m.data);
      ar.skip();
    }
    // Lines before the damage are kept: the reader passes the cut tail as a bad line.
    if (!m.damage.empty() && (!damage_known || m.damage_local))
      w_.problems->file_error(apath + "!" + e.name +
                              ": truncated or corrupt archive member: " + m.damage);
    held[b] += m.data.size();
    pending_bytes += m.data.size();
    held_spool[b] += m.spool_bytes;
    pending_spool_bytes += m.spool_bytes;
    WorkItem& item = partial[b];
    item.member_data[i] = std::move(m.data);
    item.member_spool[i] = std::move(m.spool_path);
    item.member_spool_bytes[i] = m.spool_bytes;
    item.member_error[i] = std::move(left_out);
    if (--missing[b] == 0) {
      const std::uint64_t sz = 1 + held[b];
      pending_bytes -= held[b];
      held.erase(b);
      // Released to the workers: its spool files can now be read and given back.
      pending_spool_bytes -= held_spool[b];
      held_spool.erase(b);
      WorkItem ready = std::move(item);
      partial.erase(b);
      if (!push(std::move(ready), sz)) {
        stopped = true;
        break;
      }
    }
    if (!m.damage.empty() && !m.damage_local) break;
  }
  // Bundles cut short by damage: map what arrived (the rest stays unread and counted).
  for (auto& [b, item] : partial) {
    if (stopped) break;
    if (!push(std::move(item), 1 + held[b])) break;
  }
  return !stopped;
}

}  // namespace chsync
