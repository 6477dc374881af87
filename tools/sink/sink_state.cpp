#include "tools/sink/sink_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>
#include <simdjson.h>

#include "tools/sink/sink_json.h"

namespace chsync::sink {

namespace {

// std::strerror from any thread (chsync's errno_text; the sink does not link chsync's pipeline).
std::string errno_text(int err) {
  std::array<char, 256> buf{};
  return ::strerror_r(err, buf.data(), buf.size());  // GNU: buf or a static string
}

std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : s) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Maps a hash to [0, 1) deterministically.
double unit_of(std::uint64_t h) noexcept {
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

SinkState::SinkState(FaultConfig cfg, std::uint64_t seed, const std::string& record_path)
    : cfg_(std::move(cfg)), rng_(seed) {
  if (!record_path.empty()) {
    record_fd_ =
        ::open(record_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (record_fd_ < 0) {
      throw std::runtime_error(
          fmt::format("cannot open record file {}: {}", record_path, errno_text(errno)));
    }
  }
  clear_stats_locked();
}

SinkState::~SinkState() {
  if (record_fd_ >= 0) {
    ::close(record_fd_);
  }
}

FaultConfig SinkState::config() const {
  const std::lock_guard lock(mu_);
  return cfg_;
}

std::uint64_t SinkState::request_started() {
  const std::lock_guard lock(mu_);
  ++in_flight_;
  max_concurrent_ = std::max(max_concurrent_, in_flight_);
  return ++requests_total_;
}

void SinkState::request_finished(unsigned status) {
  const std::lock_guard lock(mu_);
  if (in_flight_ > 0) {
    --in_flight_;
  }
  if (status != 0) {
    ++requests_by_status_[status];
  }
}

unsigned SinkState::next_fail_status_locked() {
  if (cfg_.fail_status.empty()) {
    return 503;
  }
  const unsigned st = cfg_.fail_status[fail_status_next_ % cfg_.fail_status.size()];
  ++fail_status_next_;
  return st;
}

FaultDecision SinkState::decide_fault() {
  const std::lock_guard lock(mu_);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  FaultDecision d;
  d.delay = cfg_.latency;
  auto count_status = [this](unsigned st) {
    if (st == 429) {
      ++faults_["status_429"];
    } else if (st >= 500) {
      ++faults_["status_5xx"];
    } else {
      ++faults_["status_4xx"];
    }
  };
  if (cfg_.reject_all != 0) {
    d.kind = FaultKind::kStatus;
    d.status = cfg_.reject_all;
    ++faults_["reject_all"];
    count_status(d.status);
  } else if (fail_first_used_ < cfg_.fail_first) {
    ++fail_first_used_;
    d.kind = FaultKind::kStatus;
    d.status = next_fail_status_locked();
    ++faults_["fail_first"];
    count_status(d.status);
  } else if (cfg_.fail_rate > 0 && uni(rng_) < cfg_.fail_rate) {
    d.kind = FaultKind::kStatus;
    d.status = next_fail_status_locked();
    count_status(d.status);
  } else if (cfg_.reset_rate > 0 && uni(rng_) < cfg_.reset_rate) {
    d.kind = FaultKind::kReset;
    ++faults_["resets"];
  }
  if (d.kind != FaultKind::kReset && cfg_.stall.count() > 0 && uni(rng_) < cfg_.stall_rate) {
    d.delay += cfg_.stall;
    ++faults_["stalls"];
  }
  return d;
}

void SinkState::add_bytes(std::uint64_t wire, std::uint64_t decoded) {
  const std::lock_guard lock(mu_);
  bytes_wire_ += wire;
  bytes_decoded_ += decoded;
}

SinkState::SpanKey SinkState::key_of(const std::array<std::uint8_t, 16>& t,
                                     const std::array<std::uint8_t, 8>& s) {
  SpanKey k{};
  std::memcpy(&k.t0, t.data(), 8);
  std::memcpy(&k.t1, t.data() + 8, 8);
  std::memcpy(&k.s, s.data(), 8);
  return k;
}

void SinkState::write_record_locked(const std::string& lines) {
  if (record_fd_ < 0 || lines.empty()) {
    return;
  }
  // One write per request on an O_APPEND fd: readers never see a torn line from
  // interleaving requests, and the data is visible to tests as soon as write() returns.
  std::size_t off = 0;
  while (off < lines.size()) {
    const ssize_t n = ::write(record_fd_, lines.data() + off, lines.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fmt::print(stderr, "chsync-sink: record write failed: {}\n", errno_text(errno));
      return;
    }
    off += static_cast<std::size_t>(n);
  }
}

void SinkState::commit_spans(const std::vector<DecodedSpan>& spans, std::uint64_t request_no) {
  std::string lines;
  std::size_t total = 0;
  for (const auto& s : spans) {
    total += s.record.size() + 32;
  }
  lines.reserve(total);
  const std::string tail = fmt::format(",\"request\":{}}}\n", request_no);
  for (const auto& s : spans) {
    lines += s.record;
    lines += tail;
  }
  const std::lock_guard lock(mu_);
  spans_accepted_ += spans.size();
  for (const auto& s : spans) {
    const SpanKey k = key_of(s.trace_id, s.span_id);
    if (!seen_.insert(k).second) {
      ++spans_duplicate_;
    }
    open_parents_.erase(k);
  }
  for (const auto& s : spans) {
    if (!s.has_parent) continue;
    const SpanKey pk = key_of(s.trace_id, s.parent_span_id);
    if (!seen_.contains(pk) && open_parents_.insert(pk).second) {
      ++orphans_total_;
    }
  }
  write_record_locked(lines);
}

unsigned SinkState::legacy_event_fault(const std::string& event_id) {
  const std::lock_guard lock(mu_);
  if (cfg_.legacy_event_fail_rate <= 0 || unit_of(fnv1a(event_id)) >= cfg_.legacy_event_fail_rate) {
    return 0;
  }
  if (cfg_.legacy_event_fail_status >= 500) {
    // Transient: fail only the first time this id is seen, so a retry of the same id succeeds.
    if (!legacy_failed_once_.insert(event_id).second) {
      return 0;
    }
  }
  ++faults_["legacy_event_failures"];
  return cfg_.legacy_event_fail_status;
}

void SinkState::commit_legacy(const std::vector<const LegacyEvent*>& accepted, std::size_t failed,
                              std::uint64_t request_no) {
  std::string lines;
  const std::string tail = fmt::format(",\"request\":{}}}\n", request_no);
  for (const auto* e : accepted) {
    lines += e->record;
    lines += tail;
  }
  const std::lock_guard lock(mu_);
  legacy_accepted_ += accepted.size();
  legacy_failed_ += failed;
  for (const auto* e : accepted) {
    if (!legacy_seen_.insert(e->id).second) {
      ++legacy_duplicate_;
    }
  }
  write_record_locked(lines);
}

void SinkState::clear_stats_locked() {
  requests_total_ = 0;
  requests_by_status_.clear();
  max_concurrent_ = in_flight_;
  spans_accepted_ = spans_duplicate_ = 0;
  bytes_wire_ = bytes_decoded_ = 0;
  faults_.clear();
  for (const char* k : {"status_5xx", "status_429", "status_4xx", "resets", "stalls", "reject_all",
                        "fail_first", "legacy_event_failures"}) {
    faults_[k] = 0;
  }
  orphans_total_ = 0;
  legacy_accepted_ = legacy_failed_ = legacy_duplicate_ = 0;
  seen_.clear();
  open_parents_.clear();
  legacy_seen_.clear();
  legacy_failed_once_.clear();
}

std::string SinkState::stats_json() const {
  const std::lock_guard lock(mu_);
  std::string o = "{";
  auto out = std::back_inserter(o);
  fmt::format_to(out, "\"requests_total\":{},\"requests_by_status\":{{", requests_total_);
  bool first = true;
  for (const auto& [st, n] : requests_by_status_) {
    fmt::format_to(out, "{}\"{}\":{}", first ? "" : ",", st, n);
    first = false;
  }
  fmt::format_to(out,
                 "}},\"spans_accepted\":{},\"spans_unique\":{},\"spans_duplicate\":{},"
                 "\"bytes_received_wire\":{},\"bytes_received_decoded\":{},\"faults_injected\":{{",
                 spans_accepted_, seen_.size(), spans_duplicate_, bytes_wire_, bytes_decoded_);
  first = true;
  for (const auto& [k, n] : faults_) {
    fmt::format_to(out, "{}\"{}\":{}", first ? "" : ",", k, n);
    first = false;
  }
  fmt::format_to(out,
                 "}},\"orphans_open\":{},\"orphans_total\":{},\"in_flight\":{},"
                 "\"max_concurrent_requests\":{},\"legacy_events_accepted\":{},"
                 "\"legacy_events_failed\":{},\"legacy_events_unique\":{},"
                 "\"legacy_events_duplicate\":{}}}",
                 open_parents_.size(), orphans_total_, in_flight_, max_concurrent_,
                 legacy_accepted_, legacy_failed_, legacy_seen_.size(), legacy_duplicate_);
  return o;
}

std::string SinkState::config_json() const {
  const std::lock_guard lock(mu_);
  std::string o = "{";
  auto out = std::back_inserter(o);
  fmt::format_to(out, "\"fail-rate\":{},\"fail-status\":[", cfg_.fail_rate);
  for (std::size_t i = 0; i < cfg_.fail_status.size(); ++i) {
    fmt::format_to(out, "{}{}", i ? "," : "", cfg_.fail_status[i]);
  }
  fmt::format_to(out,
                 "],\"fail-first\":{},\"reject-all\":{},\"reset-rate\":{},\"latency-ms\":{},"
                 "\"stall-ms\":{},\"stall-rate\":{},\"retry-after\":{},\"retry-after-date\":{},"
                 "\"max-body-bytes\":{},\"legacy-event-fail-rate\":{},"
                 "\"legacy-event-fail-status\":{},\"no-decode\":{},\"protobuf-only\":{},"
                 "\"partial-rejected\":{},\"require-basic-auth\":",
                 cfg_.fail_first, cfg_.reject_all, cfg_.reset_rate, cfg_.latency.count(),
                 cfg_.stall.count(), cfg_.stall_rate, cfg_.retry_after_s, cfg_.retry_after_date,
                 cfg_.max_body_bytes, cfg_.legacy_event_fail_rate, cfg_.legacy_event_fail_status,
                 cfg_.no_decode, cfg_.protobuf_only, cfg_.partial_rejected);
  append_json_string(o, cfg_.require_basic_auth);
  o += ",\"require-header\":[";
  for (std::size_t i = 0; i < cfg_.require_headers.size(); ++i) {
    if (i) o.push_back(',');
    append_json_string(o, cfg_.require_headers[i].first + "=" + cfg_.require_headers[i].second);
  }
  o += "]}";
  return o;
}

namespace {

bool to_double(simdjson::dom::element e, double& v) { return e.get_double().get(v) == 0; }

bool to_i64(simdjson::dom::element e, std::int64_t& v) { return e.get_int64().get(v) == 0; }

bool to_bool(simdjson::dom::element e, bool& v) { return e.get_bool().get(v) == 0; }

// "503,429" / [503,429] / 503
bool to_status_list(simdjson::dom::element e, std::vector<unsigned>& v) {
  v.clear();
  std::int64_t one = 0;
  std::string_view s;
  simdjson::dom::array arr;
  if (to_i64(e, one)) {
    v.push_back(static_cast<unsigned>(one));
  } else if (e.get_string().get(s) == 0) {
    std::size_t pos = 0;
    while (pos <= s.size()) {
      const std::size_t comma = std::min(s.find(',', pos), s.size());
      const std::string part(s.substr(pos, comma - pos));
      if (!part.empty()) v.push_back(static_cast<unsigned>(std::stoul(part)));
      pos = comma + 1;
    }
  } else if (e.get_array().get(arr) == 0) {
    for (const auto item : arr) {
      if (!to_i64(item, one)) return false;
      v.push_back(static_cast<unsigned>(one));
    }
  } else {
    return false;
  }
  for (const unsigned st : v) {
    if (st < 100 || st > 599) return false;
  }
  return !v.empty();
}

}  // namespace

bool SinkState::apply_control(std::string_view body, std::string& error) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(body.data(), body.size()).get_object().get(obj) != simdjson::SUCCESS) {
    error = "control body must be a JSON object";
    return false;
  }
  const std::lock_guard lock(mu_);
  FaultConfig c = cfg_;
  bool clear = false;
  bool reset_fail_first = false;
  std::int64_t seed = -1;
  for (const auto kv : obj) {
    std::string key(kv.key);
    for (char& ch : key) {
      if (ch == '_') ch = '-';
    }
    const auto e = kv.value;
    std::int64_t i = 0;
    bool ok = true;
    std::string_view s;
    if (key == "fail-rate") {
      ok = to_double(e, c.fail_rate);
    } else if (key == "fail-status") {
      try {
        ok = to_status_list(e, c.fail_status);
      } catch (const std::exception&) {
        ok = false;
      }
    } else if (key == "fail-first") {
      ok = to_i64(e, i) && i >= 0;
      c.fail_first = static_cast<std::uint64_t>(i);
      reset_fail_first = true;
    } else if (key == "reject-all") {
      ok = to_i64(e, i) && (i == 0 || (i >= 100 && i <= 599));
      c.reject_all = static_cast<unsigned>(i);
    } else if (key == "reset-rate") {
      ok = to_double(e, c.reset_rate);
    } else if (key == "latency-ms") {
      ok = to_i64(e, i) && i >= 0;
      c.latency = std::chrono::milliseconds(i);
    } else if (key == "stall-ms") {
      ok = to_i64(e, i) && i >= 0;
      c.stall = std::chrono::milliseconds(i);
    } else if (key == "stall-rate") {
      ok = to_double(e, c.stall_rate);
    } else if (key == "retry-after") {
      ok = to_i64(e, i);
      c.retry_after_s = static_cast<int>(i);
    } else if (key == "retry-after-date") {
      ok = to_bool(e, c.retry_after_date);
    } else if (key == "max-body-bytes") {
      ok = to_i64(e, i) && i > 0;
      c.max_body_bytes = static_cast<std::uint64_t>(i);
    } else if (key == "legacy-event-fail-rate") {
      ok = to_double(e, c.legacy_event_fail_rate);
    } else if (key == "legacy-event-fail-status") {
      ok = to_i64(e, i) && i >= 100 && i <= 599;
      c.legacy_event_fail_status = static_cast<unsigned>(i);
    } else if (key == "no-decode") {
      ok = to_bool(e, c.no_decode);
    } else if (key == "protobuf-only") {
      ok = to_bool(e, c.protobuf_only);
    } else if (key == "partial-rejected") {
      ok = to_i64(e, c.partial_rejected) && c.partial_rejected >= 0;
    } else if (key == "require-basic-auth") {
      ok = e.get_string().get(s) == 0;
      c.require_basic_auth = std::string(s);
    } else if (key == "require-header") {
      c.require_headers.clear();
      simdjson::dom::array arr;
      std::vector<std::string_view> items;
      if (e.get_string().get(s) == 0) {
        items.push_back(s);
      } else if (e.get_array().get(arr) == 0) {
        for (const auto item : arr) {
          if (item.get_string().get(s) != 0) ok = false;
          items.push_back(s);
        }
      } else {
        ok = false;
      }
      for (const auto item : items) {
        const auto eq = item.find('=');
        if (eq == std::string_view::npos || eq == 0) {
          ok = false;
          break;
        }
        c.require_headers.emplace_back(std::string(item.substr(0, eq)),
                                       std::string(item.substr(eq + 1)));
      }
    } else if (key == "seed") {
      ok = to_i64(e, seed);
    } else if (key == "clear-stats") {
      ok = to_bool(e, clear);
    } else {
      error = fmt::format("unknown control key \"{}\"", kv.key);
      return false;
    }
    if (!ok) {
      error = fmt::format("bad value for control key \"{}\"", kv.key);
      return false;
    }
  }
  cfg_ = std::move(c);
  if (reset_fail_first) {
    fail_first_used_ = 0;
  }
  if (seed >= 0) {
    rng_.seed(static_cast<std::uint64_t>(seed));
  }
  if (clear) {
    clear_stats_locked();
  }
  return true;
}

}  // namespace chsync::sink
