#include "app/bench/bench_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "backends/console/json_writer.h"

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
  return static_cast<double>(rate_unit == "spans/s" ? spans_sent : requests_sent) / secs;
}

namespace {

double ms(double us) { return us / 1000.0; }

std::string num(double v) {
  if (!std::isfinite(v)) return "0";
  return fmt::format("{:.3f}", v);
}

std::string human_bytes(std::uint64_t n) {
  const double d = static_cast<double>(n);
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
  if (r.mode == "open")
    o += fmt::format(", target {:.1f} {}", r.target_rate, r.rate_unit);
  else
    o += fmt::format(", concurrency {}", r.concurrency);
  o += fmt::format(", {:.1f} s, batch {} spans, {})\n", r.duration_s, r.batch_spans, r.compression);
  o += fmt::format("input: {} spans in {} requests ({} encoded){}; loops {}; id salt {}\n",
                   r.input_spans, r.input_batches, human_bytes(r.input_bytes_encoded),
                   r.input_truncated ? ", TRUNCATED at --max-memory" : "", r.loops, r.id_salt);
  o += "\n";
  o += fmt::format("{:<22}{:>14}\n", "latency (ms)", "");
  o += fmt::format("  {:<20}{:>14.3f}\n", "min", ms(h.min_us()));
  o += fmt::format("  {:<20}{:>14.3f}\n", "mean", ms(h.mean_us()));
  o += fmt::format("  {:<20}{:>14.3f}\n", "p50", ms(h.percentile_us(50)));
  o += fmt::format("  {:<20}{:>14.3f}\n", "p90", ms(h.percentile_us(90)));
  o += fmt::format("  {:<20}{:>14.3f}\n", "p99", ms(h.percentile_us(99)));
  o += fmt::format("  {:<20}{:>14.3f}\n", "p99.9", ms(h.percentile_us(99.9)));
  o += fmt::format("  {:<20}{:>14.3f}\n", "max", ms(h.max_us()));
  o += fmt::format("{:<22}\n", "throughput");
  if (r.mode == "open")
    o += fmt::format("  {:<20}{:>14.1f} {}\n", "target", r.target_rate, r.rate_unit);
  o += fmt::format("  {:<20}{:>14.1f} {}\n", "achieved", r.achieved_rate(), r.rate_unit);
  const double secs = std::max(r.elapsed_s, 1e-9);
  o += fmt::format("  {:<20}{:>14.1f} req/s\n", "requests", static_cast<double>(r.requests_sent) / secs);
  o += fmt::format("  {:<20}{:>14.1f} spans/s\n", "spans", static_cast<double>(r.spans_sent) / secs);
  o += fmt::format("  {:<20}{:>14.1f} spans/s\n", "spans accepted (2xx)", static_cast<double>(r.spans_ok) / secs);
  o += fmt::format("{:<22}\n", "requests");
  o += fmt::format("  {:<20}{:>14}\n", "sent", r.requests_sent);
  o += fmt::format("  {:<20}{:>14}\n", "completed", r.requests_completed);
  for (const auto& [code, n] : r.status_codes) o += fmt::format("  {:<20}{:>14}\n", fmt::format("status {}", code), n);
  for (const auto& [kind, n] : r.transport_errors) o += fmt::format("  {:<20}{:>14}\n", "error " + kind, n);
  o += fmt::format("  {:<20}{:>14}\n", "errors", r.errors_http + r.errors_transport);
  o += fmt::format("  {:<20}{:>14}\n", "retries", r.retries);
  if (r.unfinished) o += fmt::format("  {:<20}{:>14}\n", "unfinished", r.unfinished);
  o += fmt::format("{:<22}\n", "bytes");
  o += fmt::format("  {:<20}{:>14}  ({})\n", "raw", r.bytes_raw, human_bytes(r.bytes_raw));
  o += fmt::format("  {:<20}{:>14}  ({})\n", "sent", r.bytes_sent, human_bytes(r.bytes_sent));
  if (r.max_schedule_lag_ms > 5)
    o += fmt::format("note: the generator fell up to {:.1f} ms behind its schedule (latencies "
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
  std::string j = "{\"schema\":\"chsync.bench/1\",\"backend\":";
  append_json_string(j, r.backend);
  j += ",\"endpoint\":";
  append_json_string(j, r.endpoint);
  j += ",\"mode\":";
  append_json_string(j, r.mode);
  j += fmt::format(",\"duration_s\":{},\"ramp_s\":{},\"elapsed_s\":{},\"concurrency\":{},\"batch_spans\":{}",
                   num(r.duration_s), num(r.ramp_s), num(r.elapsed_s), r.concurrency, r.batch_spans);
  j += ",\"compression\":";
  append_json_string(j, r.compression);
  j += fmt::format(",\"latency_ms\":{{\"count\":{},\"min\":{},\"mean\":{},\"p50\":{},\"p90\":{},"
                   "\"p99\":{},\"p999\":{},\"max\":{}}}",
                   h.count(), num(ms(h.min_us())), num(ms(h.mean_us())), num(ms(h.percentile_us(50))),
                   num(ms(h.percentile_us(90))), num(ms(h.percentile_us(99))),
                   num(ms(h.percentile_us(99.9))), num(ms(h.max_us())));
  const double secs = std::max(r.elapsed_s, 1e-9);
  j += fmt::format(",\"rate\":{{\"target\":{},\"achieved\":{},\"unit\":\"{}\",\"requests_per_s\":{},"
                   "\"spans_per_s\":{},\"spans_ok_per_s\":{}}}",
                   num(r.target_rate), num(r.achieved_rate()), r.rate_unit,
                   num(static_cast<double>(r.requests_sent) / secs),
                   num(static_cast<double>(r.spans_sent) / secs),
                   num(static_cast<double>(r.spans_ok) / secs));
  j += fmt::format(",\"requests\":{{\"sent\":{},\"completed\":{},\"ok\":{},\"unfinished\":{}}}",
                   r.requests_sent, r.requests_completed, r.requests_ok, r.unfinished);
  j += fmt::format(",\"spans\":{{\"sent\":{},\"ok\":{}}}", r.spans_sent, r.spans_ok);
  j += ",\"status_codes\":{";
  bool first = true;
  for (const auto& [code, n] : r.status_codes) {
    j += fmt::format("{}\"{}\":{}", first ? "" : ",", code, n);
    first = false;
  }
  j += fmt::format("}},\"errors\":{{\"total\":{},\"http\":{},\"transport\":{}", r.errors_http + r.errors_transport,
                   r.errors_http, r.errors_transport);
  j += ",\"by_kind\":{";
  first = true;
  for (const auto& [kind, n] : r.transport_errors) {
    if (!first) j += ",";
    append_json_string(j, kind);
    j += fmt::format(":{}", n);
    first = false;
  }
  j += fmt::format("}}}},\"retries\":{},\"bytes\":{{\"raw\":{},\"sent\":{}}}", r.retries, r.bytes_raw,
                   r.bytes_sent);
  j += fmt::format(",\"input\":{{\"spans\":{},\"bytes_encoded\":{},\"requests\":{},\"truncated\":{},"
                   "\"loops\":{},\"id_salt\":",
                   r.input_spans, r.input_bytes_encoded, r.input_batches,
                   r.input_truncated ? "true" : "false", r.loops);
  append_json_string(j, r.id_salt);
  j += fmt::format("}},\"max_schedule_lag_ms\":{},\"timeline\":[", num(r.max_schedule_lag_ms));
  for (std::size_t i = 0; i < r.timeline.size(); ++i) {
    const auto& s = r.timeline[i];
    j += fmt::format("{}{{\"second\":{},\"requests\":{},\"spans\":{},\"ok\":{},\"errors\":{},"
                     "\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{}}}",
                     i ? "," : "", i, s.requests, s.spans, s.ok, s.errors,
                     num(ms(s.latency.percentile_us(50))), num(ms(s.latency.percentile_us(99))),
                     num(ms(s.latency.max_us())));
  }
  j += "]}\n";
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
  std::string name;   // also the CSS class: series-<name>
  std::string color;
  std::vector<double> values;
};

// A line chart over seconds 0..n-1, y from 0 to a rounded maximum. Self-contained SVG.
std::string svg_chart(const std::string& id, const std::string& title, const std::string& unit,
                      const std::vector<Series>& series) {
  constexpr double kW = 1000, kH = 320, kL = 70, kR = 20, kT = 40, kB = 40;
  std::size_t n = 0;
  double ymax = 0;
  for (const auto& s : series) {
    n = std::max(n, s.values.size());
    for (double v : s.values) ymax = std::max(ymax, v);
  }
  if (ymax <= 0) ymax = 1;
  const double mag = std::pow(10.0, std::floor(std::log10(ymax)));
  ymax = std::ceil(ymax / mag * 1.0001) * mag;
  const double pw = kW - kL - kR, ph = kH - kT - kB;
  auto x_of = [&](std::size_t i) { return kL + (n <= 1 ? pw / 2 : pw * static_cast<double>(i) / static_cast<double>(n - 1)); };
  auto y_of = [&](double v) { return kT + ph - ph * std::clamp(v / ymax, 0.0, 1.0); };
  std::string o = fmt::format(
      "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" "
      "height=\"{}\" role=\"img\" aria-label=\"{}\">\n",
      id, kW, kH, kW, kH, html_escape(title));
  o += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n", kW, kH);
  o += fmt::format("<text x=\"{}\" y=\"22\" font-size=\"16\" font-weight=\"bold\">{}</text>\n", kL,
                   html_escape(title));
  for (int g = 0; g <= 4; ++g) {
    const double v = ymax * g / 4.0;
    const double y = y_of(v);
    o += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", kL, y,
                     kW - kR, y);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"end\">{:g}</text>\n",
                     kL - 6, y + 4, v);
  }
  o += fmt::format("<text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" "
                   "text-anchor=\"middle\">{}</text>\n",
                   kT + ph / 2, kT + ph / 2, html_escape(unit));
  const std::size_t step = std::max<std::size_t>(1, n / 10);
  for (std::size_t i = 0; i < n; i += step)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}s</text>\n",
                     x_of(i), kH - kB + 18, i);
  o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n", kL, kT + ph,
                   kW - kR, kT + ph);
  double lx = kW - kR - 110.0 * static_cast<double>(series.size());
  for (const auto& s : series) {
    std::string pts;
    for (std::size_t i = 0; i < s.values.size(); ++i)
      pts += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", x_of(i), y_of(s.values[i]));
    o += fmt::format("<polyline class=\"series-{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
                     "points=\"{}\"/>\n",
                     s.name, s.color, pts);
    for (std::size_t i = 0; i < s.values.size(); ++i)
      o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"><title>{}: {:.3f} {} "
                       "at {}s</title></circle>\n",
                       x_of(i), y_of(s.values[i]), s.color, s.name, s.values[i], html_escape(unit), i);
    o += fmt::format("<rect x=\"{:.1f}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{}\"/>"
                     "<text x=\"{:.1f}\" y=\"{}\" font-size=\"12\">{}</text>\n",
                     lx, kT - 14, s.color, lx + 18, kT - 9, s.name);
    lx += 110;
  }
  o += "</svg>\n";
  return o;
}

}  // namespace

std::string render_html(const BenchResult& r) {
  Series p50{"p50", "#1f77b4", {}}, p99{"p99", "#d62728", {}};
  Series req{"requests", "#2ca02c", {}}, err{"errors", "#d62728", {}}, spans{"spans", "#9467bd", {}};
  for (const auto& s : r.timeline) {
    p50.values.push_back(ms(s.latency.percentile_us(50)));
    p99.values.push_back(ms(s.latency.percentile_us(99)));
    req.values.push_back(static_cast<double>(s.requests));
    err.values.push_back(static_cast<double>(s.errors));
    spans.values.push_back(static_cast<double>(s.spans));
  }
  const auto& h = r.latency;
  std::string o =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>chsync bench report</title>\n<style>body{font-family:sans-serif;margin:20px;color:#222}"
      "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 10px;"
      "text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
      "svg{display:block;margin:10px 0;border:1px solid #eee}</style></head><body>\n";
  o += "<h1>chsync bench</h1>\n<p>" + html_escape(r.backend) + " &rarr; " + html_escape(r.endpoint) +
       "<br>" +
       html_escape(r.mode == "open"
                       ? fmt::format("open loop, target {:.1f} {}", r.target_rate, r.rate_unit)
                       : fmt::format("closed loop, concurrency {}", r.concurrency)) +
       html_escape(fmt::format(", {:.1f} s, batch {} spans, {}", r.duration_s, r.batch_spans,
                               r.compression)) +
       "</p>\n";
  o += "<table><tr><th>latency</th><th>ms</th></tr>";
  const std::pair<const char*, double> rows[] = {
      {"p50", h.percentile_us(50)}, {"p90", h.percentile_us(90)},  {"p99", h.percentile_us(99)},
      {"p99.9", h.percentile_us(99.9)}, {"max", h.max_us()}};
  for (const auto& [name, v] : rows) o += fmt::format("<tr><td>{}</td><td>{:.3f}</td></tr>", name, ms(v));
  o += "</table>\n<table><tr><th>throughput</th><th>value</th></tr>";
  if (r.mode == "open")
    o += fmt::format("<tr><td>target</td><td>{:.1f} {}</td></tr>", r.target_rate, r.rate_unit);
  o += fmt::format("<tr><td>achieved</td><td>{:.1f} {}</td></tr>", r.achieved_rate(), r.rate_unit);
  o += fmt::format("<tr><td>requests sent / ok</td><td>{} / {}</td></tr>", r.requests_sent, r.requests_ok);
  o += fmt::format("<tr><td>errors</td><td>{}</td></tr>", r.errors_http + r.errors_transport);
  o += fmt::format("<tr><td>bytes raw / sent</td><td>{} / {}</td></tr>", r.bytes_raw, r.bytes_sent);
  o += "</table>\n";
  o += svg_chart("latency-chart", "Latency per second (by intended send time)", "ms", {p50, p99});
  o += svg_chart("throughput-chart", "Throughput per second", "requests/s", {req, err});
  o += svg_chart("spans-chart", "Spans per second", "spans/s", {spans});
  o += "</body></html>\n";
  return o;
}

}  // namespace chsync::bench
