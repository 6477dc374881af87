#include "stages/map_worker/map_worker.h"

#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>

#include "pipeline/log.h"

namespace chsync {

void MapWorkers::encode_ahead(BundleResult& res,
                              std::vector<std::unique_ptr<SpanBytesEncoder>>& encoders) {
  if (res.spans.empty() || w_.encode.empty()) return;
  encoders.resize(w_.encode.size());
  res.encoded.resize(w_.encode.size());
  for (std::size_t ii = 0; ii < w_.encode.size(); ++ii) {
    const auto& e = w_.encode[ii];
    if (!e.exporter || !e.bundles || !(*e.bundles)[res.bundle_index]) continue;
    if (!encoders[ii]) encoders[ii] = e.exporter->make_encoder();
    if (!encoders[ii]) continue;
    auto enc = std::make_shared<EncodedSpans>();
    enc->ends.reserve(res.spans.size());
    for (const auto& sp : res.spans) enc->add(*encoders[ii], sp);
    // The blob grew by doubling: give back the slack before it waits in the queues (up to half
    // of it; result_bytes charges the capacity).
    if (enc->blob.capacity() > enc->blob.size() + enc->blob.size() / 4) enc->blob.shrink_to_fit();
    res.encoded[ii] = std::move(enc);
  }
}

void MapWorkers::start(StageRunner& runner) {
  for (std::size_t i = 0; i < w_.workers; ++i)
    threads_.spawn(runner, "worker-" + std::to_string(i), [this] { run(); });
}

bool MapWorkers::stop(Deadline deadline) noexcept {
  stop_ = true;
  w_.results->close();
  return threads_.wait_until(deadline);
}

void MapWorkers::run() {
  std::vector<std::unique_ptr<SpanBytesEncoder>> encoders;  // this thread's, per instance
  while (auto item = w_.work->pop()) {
    if (stopping()) continue;  // drain without work
    BundleResult res = map_bundle(*item);
    if (w_.check && !res.spans.empty()) {
      // The state's view of these spans (another worker may have delivered some since this run
      // started; or the delivered set is too large to load and is asked per bundle).
      std::vector<std::uint64_t> keys;
      keys.reserve(res.spans.size());
      for (const auto& sp : res.spans) keys.push_back(sp.span_key());
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      res.checks = w_.check(item->bundle_index, keys);
    }
    encode_ahead(res, encoders);
    const std::uint64_t sz = result_bytes(res);
    if (!w_.results->push(std::move(res), sz)) break;
  }
  if (left_.fetch_sub(1) == 1) w_.results->close();
}

ReadResult MapWorkers::read_file(WorkItem& item, std::size_t fi, const LineFn& on_line,
                                 const TooLongFn& on_too_long) {
  const FileRef& f = (*w_.bundles)[item.bundle_index].files[fi];
  if (f.kind != SourceKind::kArchiveMember) return read_lines(f, w_.reader, on_line, on_too_long);
  ReadResult rr;
  if (fi < item.member_error.size() && !item.member_error[fi].empty()) {
    rr.error = item.member_error[fi];  // left out by the feeder: reported here, once
    return rr;
  }
  const std::string spooled = fi < item.member_spool.size() ? item.member_spool[fi] : std::string();
  if (!spooled.empty()) {
    FileRef sf;
    sf.kind = SourceKind::kPlain;
    sf.path = spooled;
    rr = read_lines(sf, w_.reader, on_line, on_too_long);
    const std::uint64_t booked =
        fi < item.member_spool_bytes.size() ? item.member_spool_bytes[fi] : 0;
    if (w_.spool) w_.spool->remove(spooled, booked);  // gives the bytes back to --max-spool
    else ::unlink(spooled.c_str());
  } else if (fi < item.member_data.size()) {
    rr = read_memory_lines(item.member_data[fi], w_.reader, on_line, on_too_long);
    std::string().swap(item.member_data[fi]);  // release as the bundle is read
  }
  return rr;
}

BundleResult MapWorkers::map_bundle(WorkItem& item) {
  thread_local simdjson::dom::parser tail_parser;
  const Bundle& bundle = (*w_.bundles)[item.bundle_index];
  auto report_bad = [this](const BadLine& bl) { w_.problems->bad_line(bl); };
  BundleResult res;
  res.bundle_index = item.bundle_index;
  res.files.resize(bundle.files.size());
  BundleMapper mapper(w_.map, bundle, report_bad);
  for (std::size_t fi = 0; fi < bundle.files.size(); ++fi) {
    const FileRef& f = bundle.files[fi];
    FileOutcome& fo = res.files[fi];
    auto on_line = [&](std::string_view line, std::size_t cap, std::uint64_t ln, std::uint64_t off,
                       bool no_newline) {
      if (line.empty()) return true;
      if (no_newline) {
        // A last line without '\n': complete only if it parses (else: still being written, or
        // cut off in an archive).
        simdjson::padded_string ps(line);
        if (tail_parser.parse(ps).error() != simdjson::SUCCESS) {
          fo.truncated_tail = true;
          if (!f.settles || f.kind == SourceKind::kArchiveMember)
            report_bad(BadLine{f.display, ln, "truncated_tail",
                               "last line has no newline and does not parse"});
          return true;
        }
      }
      mapper.add_line(fi, line, cap, ln, off);
      return true;
    };
    auto on_too_long = [&](std::uint64_t ln, std::uint64_t n) {
      ++fo.bad;
      report_bad(BadLine{f.display, ln, "too_long",
                         fmt::format("line of {} bytes exceeds --max-line-bytes", n)});
    };
    if (f.size == 0 && f.kind != SourceKind::kStdin && !w_.quiet)
      w_.problems->logger().info(f.display + ": empty file (nothing to export)");
    const ReadResult rr = read_file(item, fi, on_line, on_too_long);
    fo.lines = rr.end_line;
    fo.end_offset = rr.end_offset;
    fo.bytes = rr.bytes;
    fo.error = rr.error;
    res.bytes += rr.bytes;
    bytes_read_.fetch_add(rr.bytes, std::memory_order_relaxed);
    if (!rr.error.empty()) w_.problems->file_error(f.display + ": " + rr.error);
  }
  mapper.finish(res.spans);
  res.stats = mapper.stats();
  return res;
}

}  // namespace chsync
