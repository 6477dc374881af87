// Network exporters (otlp, langfuse, phoenix) built from a BackendSpec.
// Endpoint resolution follows design Contracts: --endpoint as is, else the OTEL_* variables, else
// http://127.0.0.1:4318/v1/traces; Langfuse and Phoenix take a base URL and add their paths.
#include <fmt/format.h>
#include <openssl/evp.h>

#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "backends/http/http_client.h"
#include "backends/langfuse_legacy/langfuse_legacy.h"
#include "backends/otlp/otlp_env.h"
#include "backends/otlp/otlp_exporter.h"
#include "cli/commands.h"
#include "app/dead_letters/dead_letters.h"
#include "stages/state/state_store.h"

namespace chsync {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string setting(const BackendSpec& spec, const std::string& key, std::string fallback = "") {
  auto it = spec.settings.find(key);
  return it == spec.settings.end() ? fallback : it->second;
}

// --tag values in the order given (settings tag.0, tag.1, ...).
std::vector<std::string> spec_tags(const BackendSpec& spec) {
  std::vector<std::string> tags;
  for (std::size_t i = 0;; ++i) {
    auto it = spec.settings.find("tag." + std::to_string(i));
    if (it == spec.settings.end()) return tags;
    tags.push_back(it->second);
  }
}

std::string strip_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::string langfuse_host(const BackendSpec& spec) {
  std::string host = setting(spec, "host");
  if (host.empty()) host = env("LANGFUSE_BASE_URL");
  if (host.empty()) host = env("LANGFUSE_HOST");
  if (host.empty()) host = "https://cloud.langfuse.com";
  return strip_slash(host);
}

std::string langfuse_auth(const BackendSpec& spec) {
  const std::string pk = setting(spec, "public_key", env("LANGFUSE_PUBLIC_KEY"));
  const std::string sk = setting(spec, "secret_key", env("LANGFUSE_SECRET_KEY"));
  if (pk.empty() || sk.empty())
    throw ConfigError("--backend " + spec.type + " needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY");
  return "Basic " + base64_encode(pk + ":" + sk);
}

// Langfuse batch ingestion API (protocols §A.3-A.8), for self-hosted v3 servers.
std::unique_ptr<Exporter> make_langfuse_legacy(const BackendSpec& spec) {
  langfuse::LegacyOptions o;
  o.instance = spec.instance;
  o.endpoint = setting(spec, "endpoint", langfuse_host(spec) + "/api/public/ingestion");
  o.headers.emplace_back("Authorization", langfuse_auth(spec));
  for (const auto& [k, v] : spec.settings) {
    if (k.rfind("header.", 0) != 0) continue;
    auto eq = v.find('=');
    o.headers.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  }
  o.environment = setting(spec, "environment", env("LANGFUSE_TRACING_ENVIRONMENT"));
  o.tags = spec_tags(spec);
  o.typed_observations = setting(spec, "typed_observations") == "1";
  if (auto t = setting(spec, "timeout_ms"); !t.empty()) o.timeout = std::chrono::milliseconds(std::stoll(t));
  o.connect_timeout = o.timeout.count() > 0 ? o.timeout : std::chrono::milliseconds(10000);
  o.batch_spans = std::stoull(setting(spec, "batch_spans", "512"));
  o.batch_bytes = std::min<std::size_t>(langfuse::kMaxBatchBytes,
                                        std::stoull(setting(spec, "batch_bytes", "3500000")));
  o.max_in_flight = std::stoull(setting(spec, "max_in_flight", "4"));
  o.retry.initial_backoff = std::chrono::milliseconds(std::stoll(setting(spec, "retry_initial_ms", "1000")));
  o.retry.max_backoff = std::chrono::milliseconds(std::stoll(setting(spec, "retry_max_ms", "30000")));
  o.retry.max_elapsed = std::chrono::milliseconds(std::stoll(setting(spec, "retry_max_elapsed_ms", "300000")));
  o.ca_file = setting(spec, "ca_file");
  o.insecure = setting(spec, "insecure") == "1";
  o.client_cert = setting(spec, "client_cert");
  o.client_key = setting(spec, "client_key");
  std::string error;
  auto exp = langfuse::make_langfuse_legacy_exporter(std::move(o), &error);
  if (!exp) throw ConfigError("backend " + spec.instance + ": " + error);
  return exp;
}

}  // namespace

std::unique_ptr<Exporter> make_network_exporter(const BackendSpec& spec) {
  otlp::OtlpOptions o;
  o.instance = spec.instance;
  const std::string type = spec.type;
  if (type == "langfuse-legacy") return make_langfuse_legacy(spec);
  if (type != "otlp" && type != "langfuse" && type != "phoenix")
    throw ConfigError("unknown backend '" + type + "'");

  // Headers: OTEL_EXPORTER_OTLP_HEADERS (and the traces variant), then --header.
  for (auto& kv : otlp::parse_headers(env("OTEL_EXPORTER_OTLP_HEADERS"))) o.headers.push_back(kv);
  for (auto& kv : otlp::parse_headers(env("OTEL_EXPORTER_OTLP_TRACES_HEADERS"))) o.headers.push_back(kv);
  for (const auto& [k, v] : spec.settings) {
    if (k.rfind("header.", 0) != 0) continue;
    auto eq = v.find('=');
    o.headers.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  }
  o.resource_attributes =
      otlp::parse_resource_attributes(env("OTEL_RESOURCE_ATTRIBUTES"), env("OTEL_SERVICE_NAME"));

  if (type == "otlp") {
    o.endpoint = otlp::resolve_endpoint(setting(spec, "endpoint"),
                                        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                                        env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    o.profile = otlp::Profile::kGeneric;
  } else if (type == "langfuse") {
    o.endpoint = setting(spec, "endpoint", langfuse_host(spec) + "/api/public/otel/v1/traces");
    o.headers.emplace_back("Authorization", langfuse_auth(spec));
    o.profile = otlp::Profile::kLangfuse;
    // Self-hosted Langfuse rejects bodies over ~4.5 MB: stay well below it.
    o.batch_bytes = std::min<std::size_t>(o.batch_bytes, 3u << 20);
  } else {  // phoenix
    std::string host = setting(spec, "host");
    if (host.empty()) host = env("PHOENIX_COLLECTOR_ENDPOINT");
    if (host.empty()) host = "http://127.0.0.1:6006";
    o.endpoint = setting(spec, "endpoint", strip_slash(host) + "/v1/traces");
    o.profile = otlp::Profile::kPhoenix;
    o.project_name = setting(spec, "project_name", env("PHOENIX_PROJECT_NAME"));
    const std::string key = env("PHOENIX_API_KEY");
    if (!key.empty()) o.headers.emplace_back("Authorization", "Bearer " + key);
  }

  const std::string profile = setting(spec, "profile");
  if (profile == "generic") o.profile = otlp::Profile::kGeneric;
  else if (profile == "langfuse") o.profile = otlp::Profile::kLangfuse;
  else if (profile == "phoenix") o.profile = otlp::Profile::kPhoenix;
  else if (!profile.empty())
    throw ConfigError("--profile: unknown profile '" + profile + "' (generic, langfuse, phoenix)");

  if (setting(spec, "encoding") == "json") o.encoding = otlp::OtlpOptions::Encoding::kJson;
  o.environment = setting(spec, "environment", env("LANGFUSE_TRACING_ENVIRONMENT"));
  o.tags = spec_tags(spec);
  std::string comp = setting(spec, "compression");
  if (comp.empty()) comp = env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION");
  if (comp.empty()) comp = env("OTEL_EXPORTER_OTLP_COMPRESSION");
  if (!comp.empty()) {
    auto gz = otlp::parse_compression_gzip(comp);
    if (!gz) throw ConfigError("--compression: expected gzip or none, got '" + comp + "'");
    o.compression = *gz ? otlp::OtlpOptions::Compression::kGzip
                        : otlp::OtlpOptions::Compression::kNone;
  }
  if (auto lv = setting(spec, "compression_level"); !lv.empty()) {
    // libdeflate's levels; BENCHMARKS.md "Compression level" measures 1, 3 and 6.
    int level = 0;
    const auto [end, ec] = std::from_chars(lv.data(), lv.data() + lv.size(), level);
    if (ec != std::errc() || end != lv.data() + lv.size() || level < 1 || level > 12)
      throw ConfigError("compression_level: expected 1..12, got '" + lv + "'");
    o.gzip_level = level;
  }
  if (auto n = setting(spec, "io_threads"); !n.empty())
    o.io_threads = std::max<std::size_t>(1, std::stoull(n));
  if (auto t = setting(spec, "timeout_ms"); !t.empty()) {
    o.timeout = std::chrono::milliseconds(std::stoll(t));
  } else {
    std::string te = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
    if (te.empty()) te = env("OTEL_EXPORTER_OTLP_TIMEOUT");
    if (!te.empty()) {
      auto ms = otlp::parse_timeout_ms(te);
      if (!ms) throw ConfigError("OTEL_EXPORTER_OTLP_TIMEOUT: expected milliseconds, got '" + te + "'");
      o.timeout = *ms;
    }
  }
  o.connect_timeout = o.timeout.count() > 0 ? o.timeout : std::chrono::milliseconds(10000);
  o.batch_spans = std::stoull(setting(spec, "batch_spans", "512"));
  o.batch_bytes = std::min<std::size_t>(o.batch_bytes, std::stoull(setting(spec, "batch_bytes", "4194304")));
  o.max_in_flight = std::stoull(setting(spec, "max_in_flight", "16"));
  if (auto r = setting(spec, "rate"); !r.empty()) {
    o.rate = std::stod(r);
    o.rate_is_spans = setting(spec, "rate_unit") == "spans";
  }
  o.retry.initial_backoff = std::chrono::milliseconds(std::stoll(setting(spec, "retry_initial_ms", "1000")));
  o.retry.max_backoff = std::chrono::milliseconds(std::stoll(setting(spec, "retry_max_ms", "30000")));
  o.retry.max_elapsed = std::chrono::milliseconds(std::stoll(setting(spec, "retry_max_elapsed_ms", "300000")));
  o.ca_file = setting(spec, "ca_file", env("OTEL_EXPORTER_OTLP_CERTIFICATE"));
  o.insecure = setting(spec, "insecure") == "1";
  o.client_cert = setting(spec, "client_cert", env("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"));
  o.client_key = setting(spec, "client_key", env("OTEL_EXPORTER_OTLP_CLIENT_KEY"));

  std::string error;
  auto exp = otlp::make_otlp_exporter(std::move(o), &error);
  if (!exp) throw ConfigError("backend " + spec.instance + ": " + error);
  return exp;
}

}  // namespace chsync
