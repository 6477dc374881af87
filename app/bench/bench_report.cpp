#include "app/bench/bench_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "pipeline/json_writer.h"

namespace chsync::bench {

namespace {
const double kLogGrowth = std::log(LatencyHistogram::kGrowth);
constexpr std::size_t kMaxBucket = 4000;  // 1.01^4000 µs ≫ any timeout
}  // namespace

std::size_t LatencyHistogram::bucket_of(double us) {
  if (!(us >= 1.0)) return 0;
  const auto b = static_cast<std::size_t>(std::floor(std::log(us) / kLogGrowth)) + 1;
  return std::min(b, kMaxBucket);
}

double LatencyHistogram::bucket_middle(std::size_t bucket) {
  if (bucket == 0) return 0.5;
  return std::exp((static_cast<double>(bucket) - 0.5) * kLogGrowth);
}

void LatencyHistogram::record_us(double us) {
  if (us < 0) us = 0;
  const std::size_t b = bucket_of(us);
  if (counts_.size() <= b) counts_.resize(b + 1, 0);
  ++counts_[b];
  if (count_ == 0) {
    min_ = max_ = us;
  } else {
    min_ = std::min(min_, us);
    max_ = std::max(max_, us);
  }
  ++count_;
  sum_ += us;
}

double LatencyHistogram::percentile_us(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 100.0);
  // The rank of the q-th percentile (nearest-rank, 1-based).
  const auto rank = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::ceil(q / 100.0 * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < counts_.size(); ++b) {
    seen += counts_[b];
    if (seen >= rank) return std::clamp(bucket_middle(b), min_, max_);
  }
  return max_;
}

double BenchResult::achieved_rate() const {
  const double secs = std::max(elapsed_s, 1e-9);
  return static_cast<double>(rate_unit == "spans/s" ? spans_ok : requests_ok) / secs;
}

double BenchResult::error_rate() const {
  const std::uint64_t failed = errors_http + errors_transport;
  return requests_completed ? static_cast<double>(failed) / static_cast<double>(requests_completed)
                            : 0;
}

namespace {

double ms(double us) { return us / 1000.0; }

std::string num(double v) {
  if (!std::isfinite(v)) return "0";
  return fmt::format("{:.3f}", v);
}

std::string human_bytes(std::uint64_t n) {
  const auto d = static_cast<double>(n);
  if (d >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", d / (1024.0 * 1024 * 1024));
  if (d >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", d / (1024.0 * 1024));
  if (d >= 1024.0) return fmt::format("{:.1f} KiB", d / 1024.0);
  return fmt::format("{} B", n);
}

}  // namespace

std::string render_table(const BenchResult& r) {
  std::string o;
  const auto& h = r.latency;
  o += fmt::format("chsync bench: {} {} ({} loop", r.backend, r.endpoint, r.mode);
  if (r.mode == "open") o += fmt::format(", target {:.1f} {}", r.target_rate, r.rate_unit);
  else o += fmt::format(", concurrency {}", r.concurrency);
  o += fmt::format(", {:.1f} s, batch {} spans, {})\n", r.duration_s, r.batch_spans, r.compression);
  o += fmt::format("input: {} spans in {} requests ({} encoded){}; loops {}; id salt {}\n",
                   r.input_spans, r.input_batches, human_bytes(r.input_bytes_encoded),
                   r.input_truncated ? ", TRUNCATED at --max-memory" : "", r.loops, r.id_salt);
  o += "\n";
  // The error rate first: throughput and latency below count accepted requests only.
  const std::uint64_t failed = r.errors_http + r.errors_transport;
  o += fmt::format("errors: {} of {} requests failed ({:.1f}%)", failed, r.requests_completed,
                   100.0 * r.error_rate());
  for (const auto& [kind, n] : r.transport_errors) o += fmt::format(", {} {}", kind, n);
  for (const auto& [code, n] : r.status_codes)
    if (code < 200 || code >= 300) o += fmt::format(", HTTP {} {}", code, n);
  o += "\n";
  if (!r.first_error.empty()) o += "first error: " + r.first_error.substr(0, 200) + "\n";
  if (r.stopped_early)
    o += fmt::format("stopped early: none of the first {} answers was a success\n",
                     r.requests_completed);
  if (failed) o += "(latency, throughput and bytes below count accepted requests only)\n";
  o += "\n";
  o += fmt::format("{:<22}{:>14}\n", "latency (ms)", h.count() ? "" : "no accepted request");
  if (h.count()) {
    o += fmt::format("  {:<20}{:>14.3f}\n", "min", ms(h.min_us()));
    o += fmt::format("  {:<20}{:>14.3f}\n", "mean", ms(h.mean_us()));
    o += fmt::format("  {:<20}{:>14.3f}\n", "p50", ms(h.percentile_us(50)));
    o += fmt::format("  {:<20}{:>14.3f}\n", "p90", ms(h.percentile_us(90)));
    o += fmt::format("  {:<20}{:>14.3f}\n", "p99", ms(h.percentile_us(99)));
    o += fmt::format("  {:<20}{:>14.3f}\n", "p99.9", ms(h.percentile_us(99.9)));
    o += fmt::format("  {:<20}{:>14.3f}\n", "max", ms(h.max_us()));
  }
  o += fmt::format("{:<22}\n", "throughput");
  if (r.mode == "open")
    o += fmt::format("  {:<20}{:>14.1f} {}\n", "target", r.target_rate, r.rate_unit);
  o += fmt::format("  {:<20}{:>14.1f} {}\n", "achieved", r.achieved_rate(), r.rate_unit);
  const double secs = std::max(r.elapsed_s, 1e-9);
  o += fmt::format("  {:<20}{:>14.1f} req/s\n", "requests sent",
                   static_cast<double>(r.requests_sent) / secs);
  o += fmt::format("  {:<20}{:>14.1f} req/s\n", "requests accepted",
                   static_cast<double>(r.requests_ok) / secs);
  o += fmt::format("  {:<20}{:>14.1f} spans/s\n", "spans accepted",
                   static_cast<double>(r.spans_ok) / secs);
  o += fmt::format("{:<22}\n", "requests");
  o += fmt::format("  {:<20}{:>14}\n", "sent", r.requests_sent);
  o += fmt::format("  {:<20}{:>14}\n", "completed", r.requests_completed);
  for (const auto& [code, n] : r.status_codes)
    o += fmt::format("  {:<20}{:>14}\n", fmt::format("status {}", code), n);
  for (const auto& [kind, n] : r.transport_errors)
    o += fmt::format("  {:<20}{:>14}\n", "error " + kind, n);
  o += fmt::format("  {:<20}{:>14}\n", "errors", r.errors_http + r.errors_transport);
  o += fmt::format("  {:<20}{:>14}\n", "retries", r.retries);
  if (r.unfinished) o += fmt::format("  {:<20}{:>14}\n", "unfinished", r.unfinished);
  o += fmt::format("{:<22}\n", "bytes");
  o += fmt::format("  {:<20}{:>14}  ({})\n", "raw (accepted)", r.bytes_raw,
                   human_bytes(r.bytes_raw));
  o += fmt::format("  {:<20}{:>14}  ({})\n", "sent (accepted)", r.bytes_sent,
                   human_bytes(r.bytes_sent));
  if (r.max_schedule_lag_ms > 5)
    o += fmt::format(
        "note: the generator fell up to {:.1f} ms behind its schedule (latencies "
        "still count from the intended send time)\n",
        r.max_schedule_lag_ms);
  o += "\nper second:\n";
  o += fmt::format("  {:>4} {:>9} {:>9} {:>7} {:>10} {:>10}\n", "s", "requests", "spans", "errors",
                   "p50 ms", "p99 ms");
  for (std::size_t i = 0; i < r.timeline.size(); ++i) {
    const auto& s = r.timeline[i];
    o += fmt::format("  {:>4} {:>9} {:>9} {:>7} {:>10.2f} {:>10.2f}\n", i, s.requests, s.spans,
                     s.errors, ms(s.latency.percentile_us(50)), ms(s.latency.percentile_us(99)));
  }
  return o;
}

std::string render_json(const BenchResult& r) {
  const auto& h = r.latency;
  std::string j;
  JsonWriter w(j);
  // Measured values: 3 decimals, a non-finite one as 0 (num()).
  const auto m = [&](std::string_view k, double v) { w.key(k).raw(num(v)); };
  w.begin_object()
      .field("schema", "chsync.bench/1")
      .field("backend", r.backend)
      .field("endpoint", r.endpoint)
      .field("mode", r.mode);
  m("duration_s", r.duration_s);
  m("ramp_s", r.ramp_s);
  m("elapsed_s", r.elapsed_s);
  w.field("concurrency", r.concurrency)
      .field("batch_spans", r.batch_spans)
      .field("compression", r.compression)
      .key("latency_ms")
      .begin_object()
      .field("count", h.count());
  m("min", ms(h.min_us()));
  m("mean", ms(h.mean_us()));
  m("p50", ms(h.percentile_us(50)));
  m("p90", ms(h.percentile_us(90)));
  m("p99", ms(h.percentile_us(99)));
  m("p999", ms(h.percentile_us(99.9)));
  m("max", ms(h.max_us()));
  w.end_object();
  const double secs = std::max(r.elapsed_s, 1e-9);
  w.key("rate").begin_object();
  m("target", r.target_rate);
  m("achieved", r.achieved_rate());
  w.field("unit", r.rate_unit);
  m("requests_per_s", static_cast<double>(r.requests_sent) / secs);
  m("spans_per_s", static_cast<double>(r.spans_sent) / secs);
  m("spans_ok_per_s", static_cast<double>(r.spans_ok) / secs);
  w.end_object()
      .key("requests")
      .begin_object()
      .field("sent", r.requests_sent)
      .field("completed", r.requests_completed)
      .field("ok", r.requests_ok)
      .field("unfinished", r.unfinished)
      .end_object();
  m("error_rate", r.error_rate());
  w.field("stopped_early", r.stopped_early)
      .field("first_error", r.first_error)
      .key("spans")
      .begin_object()
      .field("sent", r.spans_sent)
      .field("ok", r.spans_ok)
      .end_object()
      .key("status_codes")
      .begin_object();
  for (const auto& [code, n] : r.status_codes) w.field(std::to_string(code), n);
  w.end_object()
      .key("errors")
      .begin_object()
      .field("total", r.errors_http + r.errors_transport)
      .field("http", r.errors_http)
      .field("transport", r.errors_transport)
      .key("by_kind")
      .begin_object();
  for (const auto& [kind, n] : r.transport_errors) w.field(kind, n);
  w.end_object()
      .end_object()
      .field("retries", r.retries)
      .key("bytes")
      .begin_object()
      .field("raw", r.bytes_raw)
      .field("sent", r.bytes_sent)
      .end_object()
      .key("input")
      .begin_object()
      .field("spans", r.input_spans)
      .field("bytes_encoded", r.input_bytes_encoded)
      .field("requests", r.input_batches)
      .field("truncated", r.input_truncated)
      .field("loops", r.loops)
      .field("id_salt", r.id_salt)
      .end_object();
  m("max_schedule_lag_ms", r.max_schedule_lag_ms);
  w.key("timeline").begin_array();
  for (std::size_t i = 0; i < r.timeline.size(); ++i) {
    const auto& s = r.timeline[i];
    w.begin_object()
        .field("second", i)
        .field("requests", s.requests)
        .field("spans", s.spans)
        .field("ok", s.ok)
        .field("errors", s.errors);
    m("p50_ms", ms(s.latency.percentile_us(50)));
    m("p99_ms", ms(s.latency.percentile_us(99)));
    m("max_ms", ms(s.latency.max_us()));
    w.end_object();
  }
  w.end_array().end_object();
  j += '\n';
  return j;
}

namespace {

std::string html_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o.push_back(c);
    }
  }
  return o;
}

struct Series {
  std::string name;  // also the CSS class: series-<name>
  std::string color;
  std::vector<double> x, y;  // x: seconds, or percentile-axis positions
};

// The smallest "nice" number (1, 2, 2.5, 5 × 10^k) at or above v: axes end just above the data
// instead of at twice it.
double nice_ceiling(double v) {
  if (!(v > 0)) return 1;
  const double mag = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= v * 0.9999) return m * mag;
  return 10 * mag;
}

std::string tick_label(double v) {
  if (v >= 1000) return fmt::format("{:g}k", v / 1000);
  if (v >= 1 || v == 0) return fmt::format("{:g}", v);
  return fmt::format("{:.2g}", v);
}

struct Axis {
  bool log = false;
  double lo = 0, hi = 1;  // data range shown (log: lo > 0)
  std::vector<std::pair<double, std::string>> ticks;
  double frac(double v) const {
    if (log) {
      v = std::max(v, lo);
      return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    }
    return (v - lo) / (hi - lo);
  }
};

Axis linear_axis(double max) {
  Axis a;
  a.hi = nice_ceiling(max);
  for (int g = 0; g <= 4; ++g) a.ticks.emplace_back(a.hi * g / 4.0, tick_label(a.hi * g / 4.0));
  return a;
}

// Decades covering [min, max]; a 1 s stall no longer flattens p50 into the floor.
Axis log_axis(double min, double max) {
  Axis a;
  a.log = true;
  if (!(min > 0)) min = max > 0 ? max / 10 : 0.1;
  if (!(max > 0)) max = 1;
  a.lo = std::pow(10.0, std::floor(std::log10(min)));
  a.hi = std::pow(10.0, std::ceil(std::log10(max * 1.0001)));
  if (a.hi <= a.lo) a.hi = a.lo * 10;
  for (double v = a.lo; v <= a.hi * 1.0001; v *= 10) a.ticks.emplace_back(v, tick_label(v));
  return a;
}

struct Chart {
  std::string id, title, x_unit, y_unit;
  Axis x, y;
  std::vector<Series> series;
  double target = -1;  // horizontal reference line (target rate), < 0: none
  std::string target_label;
};

// A self-contained, responsive SVG line chart (viewBox; scales to the width of the page).
std::string svg_chart(const Chart& c) {
  constexpr double kW = 1000, kH = 340, kL = 70, kR = 20, kT = 44, kB = 44;
  const double pw = kW - kL - kR, ph = kH - kT - kB;
  auto px = [&](double v) { return kL + pw * std::clamp(c.x.frac(v), 0.0, 1.0); };
  auto py = [&](double v) { return kT + ph - ph * std::clamp(c.y.frac(v), 0.0, 1.0); };
  std::string o = fmt::format(
      "<svg id=\"{}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" "
      "preserveAspectRatio=\"xMidYMid meet\" role=\"img\" aria-label=\"{}\">\n",
      c.id, kW, kH, html_escape(c.title));
  o += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n", kW, kH);
  o += fmt::format("<text x=\"{}\" y=\"22\" font-size=\"16\" font-weight=\"bold\">{}</text>\n", kL,
                   html_escape(c.title));
  for (const auto& [v, label] : c.y.ticks) {
    const double y = py(v);
    o += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n",
                     kL, y, kW - kR, y);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"end\">{}</text>\n",
                     kL - 6, y + 4, label);
  }
  for (const auto& [v, label] : c.x.ticks)
    o += fmt::format(
        "<text x=\"{:.1f}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n", px(v),
        kH - kB + 18, html_escape(label));
  o += fmt::format(
      "<text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" "
      "text-anchor=\"middle\">{}{}</text>\n",
      kT + ph / 2, kT + ph / 2, html_escape(c.y_unit), c.y.log ? " (log)" : "");
  o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n",
                   kL + pw / 2, kH - 6, html_escape(c.x_unit));
  o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n", kL, kT + ph,
                   kW - kR, kT + ph);
  if (c.target >= 0) {
    const double y = py(c.target);
    o += fmt::format(
        "<line class=\"target\" x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" "
        "stroke=\"#ff7f0e\" stroke-width=\"2\" stroke-dasharray=\"8 5\"/>"
        "<text x=\"{}\" y=\"{:.1f}\" font-size=\"12\" fill=\"#ff7f0e\" "
        "text-anchor=\"end\">{}</text>\n",
        kL, y, kW - kR, y, kW - kR - 4, y - 5, html_escape(c.target_label));
  }
  double lx = kW - kR - 120.0 * static_cast<double>(c.series.size());
  for (const auto& s : c.series) {
    std::string pts;
    for (std::size_t i = 0; i < s.y.size(); ++i)
      pts += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", px(s.x[i]), py(s.y[i]));
    o += fmt::format(
        "<polyline class=\"series-{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
        "points=\"{}\"/>\n",
        s.name, s.color, pts);
    if (s.y.size() <= 400)
      for (std::size_t i = 0; i < s.y.size(); ++i)
        o += fmt::format(
            "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"><title>{}: {:.3f} "
            "{} at {:g}</title></circle>\n",
            px(s.x[i]), py(s.y[i]), s.color, s.name, s.y[i], html_escape(c.y_unit), s.x[i]);
    o += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{}\"/>"
        "<text x=\"{:.1f}\" y=\"{}\" font-size=\"12\">{}</text>\n",
        lx, kT - 14, s.color, lx + 18, kT - 9, s.name);
    lx += 120;
  }
  o += "</svg>\n";
  return o;
}

// Latency by percentile, HdrHistogram style: x = log10(1 / (1 - p)), so 90%, 99%, 99.9% and
// 99.99% are equally spaced; y on a log axis.
Chart percentile_chart(const LatencyHistogram& h) {
  Chart c{"percentile-chart",
          "Latency by percentile (accepted requests)",
          "percentile",
          "ms",
          {},
          {},
          {},
          -1,
          {}};
  Series s{"latency", "#1f77b4", {}, {}};
  double lo = 0, hi = 0;
  for (double pos = 0; pos <= 4.0001; pos += 0.05) {
    const double q = 100.0 * (1 - std::pow(10.0, -pos));
    const double v = ms(h.percentile_us(q));
    s.x.push_back(pos);
    s.y.push_back(v);
    lo = lo > 0 ? std::min(lo, v) : v;
    hi = std::max(hi, v);
  }
  c.x.lo = 0;
  c.x.hi = 4;
  for (const auto& [pos, label] : std::vector<std::pair<double, std::string>>{
           {0, "0%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"}})
    c.x.ticks.emplace_back(pos, label);
  c.y = log_axis(lo, hi);
  c.series.push_back(std::move(s));
  return c;
}

std::string html_row(const std::string& k, const std::string& v) {
  return "<tr><td>" + html_escape(k) + "</td><td>" + html_escape(v) + "</td></tr>";
}

std::vector<std::pair<double, std::string>> second_ticks(std::size_t n) {
  std::vector<std::pair<double, std::string>> t;
  const std::size_t step = std::max<std::size_t>(1, (n + 9) / 10);
  for (std::size_t i = 0; i < n; i += step)
    t.emplace_back(static_cast<double>(i), fmt::format("{}s", i));
  return t;
}

}  // namespace

std::string render_html(const BenchResult& r) {
  const std::size_t n = r.timeline.size();
  Series p50{"p50", "#1f77b4", {}, {}}, p99{"p99", "#d62728", {}, {}}, mx{"max", "#7f7f7f", {}, {}};
  Series ok{"accepted", "#2ca02c", {}, {}}, err{"errors", "#d62728", {}, {}};
  Series spans{"spans", "#9467bd", {}, {}};
  double lat_lo = 0, lat_hi = 0, thr_hi = 0, spans_hi = 0;
  const bool rate_in_spans = r.rate_unit == "spans/s";
  for (std::size_t i = 0; i < n; ++i) {
    const auto& s = r.timeline[i];
    const auto x = static_cast<double>(i);
    if (s.latency.count()) {
      for (auto* se : {&p50, &p99, &mx}) se->x.push_back(x);
      p50.y.push_back(ms(s.latency.percentile_us(50)));
      p99.y.push_back(ms(s.latency.percentile_us(99)));
      mx.y.push_back(ms(s.latency.max_us()));
      lat_lo = lat_lo > 0 ? std::min(lat_lo, p50.y.back()) : p50.y.back();
      lat_hi = std::max(lat_hi, mx.y.back());
    }
    ok.x.push_back(x);
    ok.y.push_back(static_cast<double>(s.ok));
    err.x.push_back(x);
    err.y.push_back(static_cast<double>(s.errors));
    spans.x.push_back(x);
    const double ok_spans = s.requests ? static_cast<double>(s.spans) * static_cast<double>(s.ok) /
                                             static_cast<double>(s.requests)
                                       : 0;
    spans.y.push_back(ok_spans);
    thr_hi = std::max({thr_hi, static_cast<double>(s.ok), static_cast<double>(s.errors)});
    spans_hi = std::max(spans_hi, ok_spans);
  }
  Axis seconds;
  seconds.lo = 0;
  seconds.hi = std::max<double>(1, static_cast<double>(n) - 1);
  seconds.ticks = second_ticks(n);

  Chart lat{"latency-chart",
            "Latency per second (by intended send time)",
            "second of the run",
            "ms",
            seconds,
            log_axis(lat_lo, lat_hi),
            {p50, p99, mx},
            -1,
            {}};
  const bool open = r.mode == "open";
  Chart thr{"throughput-chart",
            "Requests per second",
            "second of the run",
            "requests/s",
            seconds,
            linear_axis(std::max(thr_hi, open && !rate_in_spans ? r.target_rate : 0)),
            {ok, err},
            -1,
            {}};
  Chart sp{"spans-chart",
           "Spans accepted per second",
           "second of the run",
           "spans/s",
           seconds,
           linear_axis(std::max(spans_hi, open && rate_in_spans ? r.target_rate : 0)),
           {spans},
           -1,
           {}};
  if (open) {
    Chart& with_target = rate_in_spans ? sp : thr;
    with_target.target = r.target_rate;
    with_target.target_label = fmt::format("target {:g} {}", r.target_rate, r.rate_unit);
  }

  const auto& h = r.latency;
  const std::uint64_t failed = r.errors_http + r.errors_transport;
  std::string o =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>chsync bench report</title>\n<style>body{font-family:sans-serif;margin:20px auto;"
      "max-width:1200px;padding:0 12px;color:#222}"
      ".tables{display:flex;flex-wrap:wrap;align-items:flex-start;gap:0 28px}"
      "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px "
      "10px;"
      "text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
      "svg.chart{display:block;width:100%;height:auto;margin:10px 0;border:1px solid #eee}"
      ".bad{color:#b00;font-weight:bold}</style></head><body>\n";
  o += "<h1>chsync bench</h1>\n<p>" + html_escape(r.backend) + " &rarr; " +
       html_escape(r.endpoint) + "<br>" +
       html_escape(open ? fmt::format("open loop, target {:g} {}", r.target_rate, r.rate_unit)
                        : fmt::format("closed loop, concurrency {}", r.concurrency)) +
       html_escape(fmt::format(", {:.1f} s, batch {} spans, {}", r.duration_s, r.batch_spans,
                               r.compression)) +
       "</p>\n";
  o += fmt::format(
      "<p id=\"error-rate\" class=\"{}\">errors: {} of {} requests failed ({:.1f}%){}</p>\n",
      failed ? "bad" : "", failed, r.requests_completed, 100.0 * r.error_rate(),
      r.stopped_early ? " &mdash; stopped early: no request succeeded" : "");
  o += "<div class=\"tables\">\n<table id=\"latency-table\"><tr><th>latency "
       "(accepted)</th><th>ms</th></tr>";
  const std::pair<const char*, double> rows[] = {{"min", h.min_us()},
                                                 {"mean", h.mean_us()},
                                                 {"p50", h.percentile_us(50)},
                                                 {"p90", h.percentile_us(90)},
                                                 {"p99", h.percentile_us(99)},
                                                 {"p99.9", h.percentile_us(99.9)},
                                                 {"p99.99", h.percentile_us(99.99)},
                                                 {"max", h.max_us()}};
  for (const auto& [name, v] : rows)
    o += fmt::format("<tr><td>{}</td><td>{:.3f}</td></tr>", name, ms(v));
  o += "</table>\n<table id=\"throughput-table\"><tr><th>throughput</th><th>value</th></tr>";
  if (open) o += html_row("target", fmt::format("{:.1f} {}", r.target_rate, r.rate_unit));
  o += html_row("achieved (accepted)", fmt::format("{:.1f} {}", r.achieved_rate(), r.rate_unit));
  o += html_row("requests sent / accepted", fmt::format("{} / {}", r.requests_sent, r.requests_ok));
  o += html_row("spans sent / accepted", fmt::format("{} / {}", r.spans_sent, r.spans_ok));
  o += html_row("bytes raw / sent (accepted)",
                human_bytes(r.bytes_raw) + " / " + human_bytes(r.bytes_sent));
  o += "</table>\n<table id=\"status-table\"><tr><th>answer</th><th>requests</th></tr>";
  for (const auto& [code, cnt] : r.status_codes)
    o += html_row(fmt::format("HTTP {}", code), std::to_string(cnt));
  for (const auto& [kind, cnt] : r.transport_errors) o += html_row(kind, std::to_string(cnt));
  if (r.unfinished) o += html_row("unfinished", std::to_string(r.unfinished));
  o += "</table>\n<table id=\"run-table\"><tr><th>run</th><th></th></tr>";
  o += html_row("date", r.started_at);
  o += html_row("chsync", r.version);
  o += html_row("id salt", r.id_salt);
  o += html_row("input", fmt::format("{} spans in {} requests ({}){}", r.input_spans,
                                     r.input_batches, human_bytes(r.input_bytes_encoded),
                                     r.input_truncated ? ", truncated" : ""));
  o += html_row("passes over the input", std::to_string(r.loops));
  o += "</table>\n</div>\n";
  if (!r.first_error.empty())
    o += "<p>first error: <code>" + html_escape(r.first_error) + "</code></p>\n";
  if (h.count()) o += svg_chart(percentile_chart(h));
  if (!p50.y.empty()) o += svg_chart(lat);
  o += svg_chart(thr);
  o += svg_chart(sp);
  o += "</body></html>\n";
  return o;
}

}  // namespace chsync::bench
