#include "backends/otlp/otlp_exporter.h"

#include <fmt/format.h>

#include <unistd.h>

#include <cctype>

#include <algorithm>
#include <stdexcept>

#include "backends/http/settings_check.h"
#include "backends/otlp/gzip.h"
#include "backends/otlp/otlp_json.h"

#ifndef CHSYNC_VERSION
#define CHSYNC_VERSION "0.0.0"
#endif

namespace chsync::otlp {

std::string_view chsync_version() noexcept { return CHSYNC_VERSION; }

namespace {
constexpr std::string_view kProtobufType = "application/x-protobuf";

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return {};
  return buf;
}
bool contains_ci(std::string_view hay, std::string_view needle) {
  const auto* it =
      std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                  [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
  return it != hay.end();
}

// Adjacent slices of one batch are one run of memory: framing them needs no copy.
void joined(const std::vector<std::string_view>& spans, std::string& scratch,
            std::string_view& out) {
  bool contiguous = true;
  for (std::size_t i = 1; i < spans.size() && contiguous; ++i)
    contiguous = spans[i - 1].data() + spans[i - 1].size() == spans[i].data();
  if (spans.empty()) {
    out = {};
  } else if (contiguous) {
    out = std::string_view(
        spans.front().data(),
        static_cast<std::size_t>(spans.back().data() + spans.back().size() - spans.front().data()));
  } else {
    for (auto v : spans) scratch += v;
    out = scratch;
  }
}

// The OTLP part of an exporter: protobuf or JSON span encoding, request framing with the
// resource and scope, gzip, and the reading of partialSuccess and rpc Status answers.
// One span's OTLP bytes (protobuf ScopeSpans.spans field, or an OTLP/JSON span object). The codec
// has one for its send() thread; each map worker gets its own (the encoders keep scratch space).
class OtlpSpanBytes final : public SpanBytesEncoder {
 public:
  OtlpSpanBytes(const EncoderOptions& options, bool json) : proto_(options) {
    if (json) json_ = std::make_unique<JsonSpanEncoder>(options);
  }
  void encode(const Span& span, std::string& out) override {
    if (json_) {
      json_->append_span(span, out);
    } else {
      proto_.append_span(span, out);
    }
  }
  const EncoderOptions& options() const noexcept { return proto_.options(); }
  bool json() const noexcept { return json_ != nullptr; }

 private:
  SpanEncoder proto_;
  std::unique_ptr<JsonSpanEncoder> json_;
};

class OtlpCodec final : public http::HttpCodec {
 public:
  explicit OtlpCodec(const OtlpOptions& o)
      : spans_(EncoderOptions{o.profile, true, o.tags}, o.encoding == OtlpOptions::Encoding::kJson),
        json_(o.encoding == OtlpOptions::Encoding::kJson),
        gzip_(o.compression == OtlpOptions::Compression::kGzip),
        gzip_level_(o.gzip_level),
        log_(o.logger) {
    // Resource: defaults, then user-given attributes override by key.
    StringPairs res = {{"service.name", o.service_name},
                       {"service.version", o.service_version.empty() ? std::string(chsync_version())
                                                                     : o.service_version},
                       {"telemetry.sdk.name", "chsync"},
                       {"telemetry.sdk.language", "cpp"},
                       {"telemetry.sdk.version", std::string(chsync_version())}};
    if (o.profile == Profile::kLangfuse) res.erase(res.begin() + 1);  // service.version: see header
    if (!o.environment.empty()) res.emplace_back("deployment.environment.name", o.environment);
    if (auto h = host_name(); !h.empty()) res.emplace_back("host.name", h);
    if (o.profile == Profile::kPhoenix)
      res.emplace_back("openinference.project.name",
                       o.project_name.empty() ? o.service_name : o.project_name);
    for (const auto& kv : o.resource_attributes) {
      // Not a structured binding: clang 14 (scripts/fuzz) cannot capture one in a lambda.
      const auto& k = kv.first;
      const auto& v = kv.second;
      auto it = std::find_if(res.begin(), res.end(), [&](const auto& p) { return p.first == k; });
      if (it != res.end()) {
        it->second = v;
      } else {
        res.emplace_back(k, v);
      }
    }
    const std::string_view scope_version =
        o.scope_version.empty() ? chsync_version() : std::string_view(o.scope_version);
    resource_ = json_ ? json_resource(res) : encode_resource(res);
    scope_ =
        json_ ? json_scope(o.scope_name, scope_version) : encode_scope(o.scope_name, scope_version);
  }

  void encode_span(const Span& span, std::string& out) override { spans_.encode(span, out); }
  std::unique_ptr<SpanBytesEncoder> make_encoder() const override {
    return std::make_unique<OtlpSpanBytes>(spans_.options(), spans_.json());
  }
  std::string request_body(const std::vector<std::string_view>& spans) const override {
    std::string scratch, body;
    std::string_view run;
    joined(spans, scratch, run);
    if (json_) {
      build_json_request(resource_, scope_, run, body);
    } else {
      build_request(resource_, scope_, run, body);
    }
    return body;
  }
  std::string_view content_type() const override {
    return json_ ? "application/json" : kProtobufType;
  }
  std::string_view content_encoding() const override { return gzip_ ? "gzip" : ""; }
  void compress(std::string& body) const override {
    if (!gzip_) return;
    std::string z;
    if (gzip_libdeflate(body, z, gzip_level_)) body = std::move(z);  // else (OOM only) sent as is
  }
  const std::string& resource() const noexcept { return resource_; }
  http::SuccessReading read_success(const http::Response& r,
                                    const std::vector<std::string_view>& spans) const override {
    http::SuccessReading rd;
    PartialSuccess ps;
    if (contains_ci(r.content_type, "protobuf")) {
      decode_partial_success_proto(r.body, ps);
    } else if (contains_ci(r.content_type, "json")) {
      decode_partial_success_json(r.body, ps);
    }
    // OTLP: rejected_spans == 0 with a message is a warning only; > 0 names no span.
    if (ps.rejected_spans <= 0) {
      if (!ps.error_message.empty())
        log_.warn(fmt::format("otlp: partial success: 0 spans rejected: {}",
                              http::printable_excerpt(ps.error_message)));
      return rd;
    }
    rd.rejected_reason = "partial success: " + std::to_string(ps.rejected_spans) +
                         " spans rejected: " + ps.error_message +
                         " (the backend does not say which; the whole request is kept)";
    for (std::uint32_t i = 0; i < spans.size(); ++i) rd.rejected.push_back(i);
    return rd;
  }
  std::string error_message(const http::Response& r) const override {
    std::string msg;
    if (contains_ci(r.content_type, "protobuf")) msg = decode_rpc_status_message(r.body);
    return msg.empty() ? http::HttpCodec::error_message(r) : msg;
  }

 private:
  OtlpSpanBytes spans_;
  bool json_;
  bool gzip_;
  int gzip_level_;
  log::Logger log_;  // read_success runs on io threads: Logger::write is thread-safe
  std::string resource_, scope_;
};

http::BatchingOptions batching_options(const OtlpOptions& o) {
  http::BatchingOptions b = http::batching_options_of(o, "otlp");
  if (o.profile == Profile::kLangfuse) {
    const bool has = std::any_of(b.headers.begin(), b.headers.end(), [](const auto& h) {
      return h.first.size() == 28 && contains_ci(h.first, "x-langfuse-ingestion-version");
    });
    if (!has) b.headers.emplace_back("x-langfuse-ingestion-version", "4");
  }
  return b;
}
}  // namespace

OtlpExporter::OtlpExporter(const OtlpOptions& options, http::Url url,
                           std::unique_ptr<http::Transport> transport)
    : http::BatchingHttpExporter(batching_options(options), std::move(url), std::move(transport),
                                 std::make_unique<OtlpCodec>(options)) {}

const std::string& OtlpExporter::resource_bytes() const noexcept {
  // The codec is the OtlpCodec the constructor passed, and only that.
  return static_cast<const OtlpCodec&>(codec()).resource();  // NOLINT(*-static-cast-downcast)
}

std::unique_ptr<Exporter> make_otlp_exporter(OtlpOptions options, std::string* error) {
  auto fail = [&](std::string e) -> std::unique_ptr<Exporter> {
    if (error) *error = std::move(e);
    return nullptr;
  };
  if (options.endpoint.empty()) options.endpoint = "http://127.0.0.1:4318/v1/traces";
  if (auto e = http::check_http_settings(options.endpoint, options.headers); !e.empty())
    return fail("otlp: " + e);
  auto url = http::parse_url(options.endpoint);
  if (!url) return fail("otlp: invalid endpoint URL: " + http::mask_url(options.endpoint));
  auto transport = http::make_exporter_client(options, "otlp", chsync_version(), error);
  if (!transport) return nullptr;
  return std::make_unique<OtlpExporter>(std::move(options), std::move(*url), std::move(transport));
}

}  // namespace chsync::otlp
