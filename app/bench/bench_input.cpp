// The input of `chsync bench`: see bench_input.h.
#include "app/bench/bench_input.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string_view>
#include <utility>

#include "app/sync/sync.h"
#include "pipeline/log.h"
#include "pipeline/span.h"
#include "stages/discover/discover.h"
#include "stages/mapper/mapper.h"
#include "stages/reader/archive_reader.h"
#include "stages/reader/bounded_decoder.h"
#include "stages/reader/reader.h"

namespace chsync::bench {

namespace {

bool read_varint(const std::uint8_t*& p, const std::uint8_t* end, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const std::uint8_t b = *p++;
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// Finds trace_id (1), span_id (2) and parent_span_id (4) in one ScopeSpans.spans slice.
bool locate_ids(const std::string& blob, std::uint64_t begin, std::uint64_t end,
                SpanStore::IdPos& pos) {
  const auto* base = reinterpret_cast<const std::uint8_t*>(blob.data());
  const std::uint8_t* p = base + begin;
  const std::uint8_t* e = base + end;
  std::uint64_t key = 0, len = 0;
  if (!read_varint(p, e, key) || !read_varint(p, e, len)) return false;  // the Span field header
  while (p < e) {
    if (!read_varint(p, e, key)) return false;
    const std::uint64_t field = key >> 3;
    switch (key & 7) {
      case 0:
        if (!read_varint(p, e, len)) return false;
        break;
      case 1: p += 8; break;
      case 5: p += 4; break;
      case 2: {
        if (!read_varint(p, e, len) || len > static_cast<std::uint64_t>(e - p)) return false;
        const auto off = static_cast<std::uint64_t>(p - base);
        if (field == 1 && len == 16) pos.trace = off;
        if (field == 2 && len == 8) pos.span = off;
        if (field == 4 && len == 8) pos.parent = off;
        p += len;
        break;
      }
      default: return false;
    }
  }
  return pos.trace != 0 && pos.span != 0;
}

class InputLoader {
 public:
  InputLoader(const BenchOptions& o, SpanStore& store)
      : opt_(o), store_(store), encoder_(otlp::EncoderOptions{profile_of(o), true}) {
    map_.settle_ms = 0;  // a bench replays everything there is
    map_.now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  }

  void load(const std::vector<std::string>& inputs) {
    DiscoverOptions dopt;
    dopt.max_decoder_window_bytes = decoder_window_budget_bytes(opt_.max_memory_bytes);
    DiscoverResult disc = discover(inputs, dopt);
    for (const auto& e : disc.errors)
      if (!opt_.quiet)
        opt_.logger.write(log::Level::kWarn,
                          fmt::format("bench: {}: {}: {}", e.path, e.kind, e.message),
                          {{"path", e.path}, {"kind", e.kind}, {"error", e.message}}, false);
    std::map<std::string, std::vector<std::size_t>> by_archive;
    for (std::size_t b = 0; b < disc.bundles.size() && !full(); ++b) {
      const Bundle& bundle = disc.bundles[b];
      const bool archived =
          std::any_of(bundle.files.begin(), bundle.files.end(),
                      [](const FileRef& f) { return f.kind == SourceKind::kArchiveMember; });
      if (archived) {
        by_archive[bundle.files.front().path].push_back(b);
        continue;
      }
      std::vector<std::string> none(bundle.files.size());
      map_bundle(bundle, none);
    }
    for (const auto& [path, list] : by_archive) {
      if (full()) break;
      load_archive(path, disc.bundles, list);
    }
  }

 private:
  bool full() const noexcept { return store_.truncated; }

  // Maps one bundle; data[i] non-empty: file i's bytes (archive member), else read from disk.
  void map_bundle(const Bundle& bundle, const std::vector<std::string>& data) {
    BundleMapper mapper(map_, bundle, [](const BadLine&) {});
    ReaderOptions ro;
    ro.max_window_bytes = decoder_window_budget_bytes(opt_.max_memory_bytes);
    for (std::size_t fi = 0; fi < bundle.files.size(); ++fi) {
      auto on_line = [&](std::string_view line, std::size_t cap, std::uint64_t ln,
                         std::uint64_t off, bool) {
        if (!line.empty()) mapper.add_line(fi, line, cap, ln, off);
        return true;
      };
      auto on_too_long = [](std::uint64_t, std::uint64_t) {};
      const FileRef& f = bundle.files[fi];
      if (f.kind == SourceKind::kArchiveMember)
        (void)read_memory_lines(data[fi], ro, on_line, on_too_long);
      else (void)read_lines(f, ro, on_line, on_too_long);
    }
    spans_.clear();
    mapper.finish(spans_);
    for (const Span& s : spans_) {
      const std::uint64_t begin = store_.blob.size();
      encoder_.append_span(s, store_.blob);
      if (store_.blob.size() > opt_.max_memory_bytes && !store_.ends.empty()) {
        store_.blob.resize(begin);
        store_.truncated = true;
        return;
      }
      SpanStore::IdPos pos;
      if (!locate_ids(store_.blob, begin, store_.blob.size(), pos)) {
        store_.blob.resize(begin);  // cannot re-salt it: leave it out
        continue;
      }
      store_.ends.push_back(store_.blob.size());
      store_.ids.push_back(pos);
    }
  }

  // Reads the members of one archive in archive order; a bundle is mapped as soon as all its
  // members are in memory, so only the bundles in progress are held.
  void load_archive(const std::string& path, const std::vector<Bundle>& bundles,
                    const std::vector<std::size_t>& list) {
    std::map<std::string, std::pair<std::size_t, std::size_t>> where;  // member -> (bundle, file)
    std::map<std::size_t, std::vector<std::string>> data;
    std::map<std::size_t, std::size_t> missing;
    for (std::size_t b : list) {
      missing[b] = bundles[b].files.size();
      data[b].resize(bundles[b].files.size());
      for (std::size_t fi = 0; fi < bundles[b].files.size(); ++fi)
        where[bundles[b].files[fi].member] = {b, fi};
    }
    ArchiveReader ar(path, decoder_window_budget_bytes(opt_.max_memory_bytes));
    if (!ar.is_open()) {
      opt_.logger.write(log::Level::kError,
                        fmt::format("bench: {}: {}", path, ar.error("cannot open")),
                        {{"path", path}, {"error", ar.error("cannot open")}}, false);
      return;
    }
    ArchiveEntry e;
    std::vector<char> buf(1 << 20);
    while (!full() && ar.next(e) == ArchiveReader::Next::kEntry) {
      auto it = where.find(e.name);
      if (it == where.end()) {
        ar.skip();
        continue;
      }
      auto [b, fi] = it->second;
      std::string& out = data[b][fi];
      for (;;) {
        const long n = ar.read(buf.data(), buf.size());
        if (n <= 0) break;
        out.append(buf.data(), static_cast<std::size_t>(n));
      }
      if (--missing[b] == 0) {
        map_bundle(bundles[b], data[b]);
        data.erase(b);
      }
    }
  }

  const BenchOptions& opt_;
  SpanStore& store_;
  MapOptions map_;
  otlp::SpanEncoder encoder_;
  std::vector<Span> spans_;
};

}  // namespace

void load_input(const BenchOptions& o, const std::vector<std::string>& inputs, SpanStore& store) {
  InputLoader(o, store).load(inputs);
}

void cut_batches(SpanStore& s, std::size_t batch_spans, std::uint64_t batch_bytes) {
  std::size_t first = 0;
  for (std::size_t i = 0; i < s.ends.size(); ++i) {
    const std::uint64_t bytes = s.ends[i] - s.begin_of(first);
    if (i > first && (i - first >= batch_spans || bytes > batch_bytes)) {
      s.batches.push_back({first, i});
      first = i;
    }
  }
  if (first < s.ends.size()) s.batches.push_back({first, s.ends.size()});
}

otlp::Profile profile_of(const BenchOptions& o) {
  std::string p = o.profile.empty() ? o.backend : o.profile;
  if (p == "langfuse") return otlp::Profile::kLangfuse;
  if (p == "phoenix") return otlp::Profile::kPhoenix;
  if (p == "otlp" || p == "generic") return otlp::Profile::kGeneric;
  throw ConfigError("--profile: unknown profile '" + p + "' (generic, langfuse, phoenix)");
}

void Resalter::apply(const SpanStore& s, const SpanStore::Batch& b, const std::string& salt,
                     std::string& out) {
  const std::uint64_t base = s.begin_of(b.first);
  out.assign(s.blob, base, s.ends[b.last - 1] - base);
  for (std::size_t i = b.first; i < b.last; ++i) {
    const auto& p = s.ids[i];
    patch(out, p.trace - base, 16, salt);
    patch(out, p.span - base, 8, salt);
    if (p.parent) patch(out, p.parent - base, 8, salt);
  }
}

void Resalter::patch(std::string& out, std::uint64_t off, std::size_t n, const std::string& salt) {
  std::string_view old(out.data() + off, n);
  if (n == 16 && old == last_trace_old_) {  // spans of a turn share their trace id
    std::copy(last_trace_new_.begin(), last_trace_new_.end(),
              out.begin() + static_cast<std::ptrdiff_t>(off));
    return;
  }
  const std::string old_copy(old);
  auto d = hasher_.sha256({salt, old_copy});
  if (std::all_of(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(n),
                  [](std::uint8_t c) { return c == 0; }))
    d[n - 1] = 1;  // all-zero ids are invalid in OTLP
  std::copy(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(n),
            out.begin() + static_cast<std::ptrdiff_t>(off));
  if (n == 16) {
    last_trace_old_ = old_copy;
    last_trace_new_.assign(reinterpret_cast<const char*>(d.data()), 16);
  }
}

std::string salt_for(const std::string& salt, std::uint64_t loop) {
  return loop == 0 ? salt : fmt::format("{}/{}", salt, loop);
}

}  // namespace chsync::bench
