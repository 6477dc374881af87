// LangfuseLegacyExporter: chsync::Exporter over the Langfuse batch ingestion API
// (`POST {host}/api/public/ingestion`, protocols §A.3–A.8), for self-hosted Langfuse v3 servers
// that predate the OTel endpoint's direct write path.
//
// Contract (in addition to backends/exporter.h):
// * Events: every trace root (a turn or session root, or an unlinked subagent, which has no
//   parent) gives trace-create (body id = trace id; name = the --trace-name, tags "claude-code" +
//   --tag, release = Claude Code version, environment) before its observation; a generation gives
//   generation-create (model, usageDetails per §A.5, no total; input/output as chat messages with
//   tool_calls); a tool, turn or agent span gives span-create, or tool-create / agent-create with
//   typed_observations (servers that accept them); an event gives event-create (no endTime).
//   Observations carry traceId, parentObservationId, startTime/endTime (ISO, ms, Z), input/output,
//   metadata, and level ERROR + statusMessage when is_error.
// * Envelope id = sha256(type + body id + canonical body)[0:16] as 32 hex chars, so an identical
//   re-export dedupes and a changed one merges in; envelope timestamp = export time (§A.7).
// * Batching: a request holds at most batch_spans spans and batch_bytes (default and cap 3.5 MB)
//   of serialized events; all events of one span go in the same request; a span over the cap
//   goes alone.
// * The exporter is an http::BatchingHttpExporter (backends/http/batching_exporter.h): batching,
//   slots, one retry decision (whole-request 429/502/503/504 and connection failures; a 500 is
//   not retried, as in OTLP), 413 halving, stop. This file is only the codec:
// * Outcomes of a 2xx (207) answer, per span: every event accepted → kDelivered; an event with
//   a per-event 429/5xx → only those events are sent again (same envelope ids) after a backoff;
//   an event with a per-event 4xx → the span is kDead (its dead letter holds all its events as a
//   replayable batch) and counted as rejected.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "backends/exporter.h"
#include "backends/http/http_client.h"
#include "backends/http/retry_policy.h"
#include "pipeline/log.h"

namespace chsync::langfuse {

struct LegacyOptions {
  std::string instance = "langfuse-legacy";  // state key
  std::string endpoint;                      // full ingestion URL ({host}/api/public/ingestion)
  http::Headers headers;                     // Authorization: Basic ..., extra headers
  std::string environment;          // Langfuse environment; empty: not sent (server default)
  std::vector<std::string> tags;    // trace tags after "claude-code"
  bool typed_observations = false;  // tool-create / agent-create instead of span-create
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds connect_timeout{10000};
  std::size_t max_in_flight = 4;
  std::size_t batch_spans = 512;
  std::size_t batch_bytes = 3500000;  // documented cap: "Batch sizes are limited to 3.5 MB"
  http::RetryPolicy retry{};
  std::string ca_file;
  bool insecure = false;
  std::string client_cert, client_key;
  log::Logger logger{};  // failures, rejections (default: stderr)
};

// Capped at 3.5 MB whatever the caller asks for.
constexpr std::size_t kMaxBatchBytes = 3500000;

// What the event builder needs from LegacyOptions.
struct EventOptions {
  std::string environment;
  std::vector<std::string> tags;
  bool typed_observations = false;
};

// Builds the events of one span as JSON objects (for tests): each element is a full envelope.
std::vector<std::string> legacy_events(const Span& span, const EventOptions& options,
                                       const std::string& export_time);
inline std::vector<std::string> legacy_events(const Span& span, const std::string& environment,
                                              const std::string& export_time) {
  return legacy_events(span, EventOptions{environment, {}, false}, export_time);
}

// transport: make_http_client in production, a fake in tests.
std::unique_ptr<Exporter> make_langfuse_legacy_exporter(LegacyOptions options,
                                                        std::unique_ptr<http::Transport> transport,
                                                        std::string* error);
// Same with the Beast client. nullptr + *error on a configuration error.
std::unique_ptr<Exporter> make_langfuse_legacy_exporter(LegacyOptions options, std::string* error);

}  // namespace chsync::langfuse
