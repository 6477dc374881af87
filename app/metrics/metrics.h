// Run metrics: a Prometheus text-format registry, a tiny HTTP endpoint and a textfile writer.
//
// MetricsRegistry: owned by run_sync, shared by reference. Thread-safe: the run's own counters
// stay where they are (atomics, queue counters, exporter stats); the registry holds a sampler that
// reads them when a scrape (or the final textfile) asks, under the registry's mutex.
// MetricsServer: serves `GET /metrics` from its own thread (Beast; kept out of this header). Binds
// at construction (throws std::runtime_error naming the address on failure: a startup error).
// Only 127.0.0.1 / ::1 / localhost are accepted. A sync stops it like its other stages:
// stop(deadline) is noexcept and idempotent; it asks the io thread to end after the handler
// running now (sessions in progress are dropped) and joins it by the deadline. False when that
// handler is still running at the deadline (a scrape whose sampler waits on a lock; a deadline
// already passed only asks): the thread ends once it returns, and the destructor joins it.
// write_metrics_textfile: node-exporter textfile (temp + rename); returns false with `error` set.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace chsync {

struct MetricSample {
  std::string name;    // e.g. "chsync_requests_total"
  std::string labels;  // rendered label pairs without braces: backend="otlp",status="200"
  double value = 0;
};

// Renders `key="value"` with Prometheus escaping of the value.
std::string metric_label(std::string_view key, std::string_view value);

class MetricsRegistry {
 public:
  using Sampler = std::function<void(std::vector<MetricSample>&)>;

  void set_sampler(Sampler sampler);
  void clear_sampler();
  // Samples now (plus `extra`) and renders Prometheus text format 0.0.4 with HELP/TYPE lines.
  std::string render(const std::vector<MetricSample>& extra = {}) const;

  std::atomic<std::uint64_t> scrapes{0};

 private:
  mutable std::mutex mu_;
  Sampler sampler_;
};

class MetricsServer {
 public:
  // listen: "127.0.0.1:9464" (port 0: any free port; see port()).
  MetricsServer(MetricsRegistry& registry, const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  std::uint16_t port() const noexcept;
  bool stop(std::chrono::steady_clock::time_point deadline) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Checks "host:port" (loopback host, port 0-65535). Returns an error message, empty when valid.
std::string check_metrics_listen(const std::string& listen);

bool write_metrics_textfile(const std::string& path, const std::string& text, std::string& error);

}  // namespace chsync
