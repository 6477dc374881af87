// OtlpExporter: chsync::Exporter over OTLP/HTTP protobuf (protocols §B, design "HTTP behaviour").
//
// Contract: an http::BatchingHttpExporter (backends/http/batching_exporter.h: batching, slots,
// retries, 413 halving, stop) with the OTLP codec:
// * Bodies: ExportTraceServiceRequest (protobuf, or OTLP/JSON with Encoding::kJson), one resource
//   and one scope per request; gzip (libdeflate) unless Compression::kNone.
// * A 2xx with partialSuccess.rejected_spans > 0 (or an error message): the backend does not say
//   which spans it refused, so none of the request's spans can be called delivered: all of them
//   come back kDead (the dead letter holds the request for inspection, the reason quotes the
//   backend and its number), and stats.spans_rejected counts them all.
// * Error answers: the google.rpc.Status message of a protobuf body, else a body excerpt.
// * For Profile::kLangfuse the header x-langfuse-ingestion-version: 4 is added unless given.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/exporter.h"
#include "backends/http/batching_exporter.h"
#include "backends/http/http_client.h"
#include "backends/http/retry_policy.h"
#include "backends/otlp/otlp_proto.h"
#include "pipeline/log.h"

namespace chsync::otlp {

std::string_view chsync_version() noexcept;

struct OtlpOptions {
  enum class Encoding : std::uint8_t { kProtobuf, kJson };
  enum class Compression : std::uint8_t { kGzip, kNone };

  std::string instance = "otlp";  // state key
  std::string endpoint;           // full traces URL (see resolve_endpoint); empty: the default
  http::Headers headers;          // extra request headers (auth, x-honeycomb-team, ...)
  Encoding encoding = Encoding::kProtobuf;  // kJson: OTLP/JSON (§B.2); Phoenix rejects it (415)
  Compression compression = Compression::kGzip;
  int gzip_level = 1;  // libdeflate level: 1 is ~1.6x faster than 6 for ~8% larger bodies (bench)
  std::chrono::milliseconds timeout{10000};  // per request attempt; 0: none
  std::chrono::milliseconds connect_timeout{10000};
  std::size_t max_in_flight = 16;
  std::size_t batch_spans = 512;
  std::size_t batch_bytes = 4u << 20;
  http::RetryPolicy retry{};  // 1 s initial, 30 s max, 5 min max_elapsed, no attempt cap
  double rate = 0;            // 0: unlimited
  bool rate_is_spans = false;
  std::string ca_file;
  bool insecure = false;
  std::string client_cert, client_key;
  Profile profile = Profile::kGeneric;
  StringPairs resource_attributes;  // user-given; win over the defaults below
  std::string service_name = "claude-code";
  std::string service_version;  // empty: chsync version (not sent with the langfuse profile:
                                // Langfuse would show it as every trace's `version`)
  std::string
      environment;  // --environment: resource deployment.environment.name (Langfuse reads it)
  std::vector<std::string> tags;  // --tag: langfuse.trace.tags on roots, after "claude-code"
  std::string project_name;       // phoenix: openinference.project.name; empty: service_name
  std::string scope_name = "chsync";
  std::string scope_version;  // empty: chsync version
  std::size_t io_threads = 1;
  log::Logger logger;  // failures, rejections, partial-success warnings (default: stderr)
};

class OtlpExporter final : public http::BatchingHttpExporter {
 public:
  // transport: the network seam (make_http_client in production, a fake in tests).
  OtlpExporter(const OtlpOptions& options, http::Url url,
               std::unique_ptr<http::Transport> transport);
  // The encoded Resource message every request carries (tests).
  const std::string& resource_bytes() const noexcept;
};

// Builds an OtlpExporter with the Beast client. Returns nullptr and sets *error on a configuration
// error (bad URL, unreadable CA/cert/key) — the CLI exits 2 on it.
std::unique_ptr<Exporter> make_otlp_exporter(OtlpOptions options, std::string* error);

}  // namespace chsync::otlp
