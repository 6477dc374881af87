// Network exporters (otlp, langfuse, phoenix, langfuse-legacy) built from a BackendSpec: see
// network.h. Endpoint resolution follows design Contracts: --endpoint as is, else the OTEL_*
// variables, else http://127.0.0.1:4318/v1/traces; Langfuse and Phoenix take a base URL and add
// their paths.
#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <tuple>

#include "app/config/backend_options.h"
#include "app/config/network.h"
#include "app/config/units.h"
#include "app/dead_letters/dead_letters.h"
#include "backends/http/http_client.h"
#include "backends/http/settings_check.h"
#include "backends/langfuse_legacy/langfuse_legacy.h"
#include "backends/otlp/otlp_env.h"
#include "backends/otlp/otlp_exporter.h"
#include "pipeline/base64.h"
#include "pipeline/log.h"
#include "stages/state/state_store.h"

namespace chsync {

namespace {

std::string setting(const BackendSpec& spec, const std::string& key) { return spec_str(spec, key); }

std::string langfuse_auth(const BackendSpec& spec) {
  const std::string pk = setting(spec, "public_key");
  const std::string sk = setting(spec, "secret_key");
  if (pk.empty() || sk.empty())
    throw ConfigError("--backend " + spec.type +
                      " needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY");
  return "Basic " + base64_encode(pk + ":" + sk);
}

// Headers in the order they were given: OTEL_*_HEADERS ("header.env.N") first, then --header
// ("header.N"), then the config file's ("header.cfgN"); each group by N.
std::vector<std::pair<std::string, std::string>> spec_headers(const BackendSpec& spec) {
  std::vector<std::tuple<int, std::size_t, std::string>> keys;
  for (const auto& [k, v] : spec.settings) {
    if (k.rfind("header.", 0) != 0) continue;
    std::string rest = k.substr(7);
    int group = 1;
    if (rest.rfind("env.", 0) == 0) group = 0, rest = rest.substr(4);
    else if (rest.rfind("cfg", 0) == 0) group = 2, rest = rest.substr(3);
    const bool num = !rest.empty() && rest.find_first_not_of("0123456789") == std::string::npos;
    keys.emplace_back(group, num ? std::stoull(rest) : 0, k);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [g, n, k] : keys) {
    const std::string& v = spec.settings.at(k);
    auto eq = v.find('=');
    out.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  }
  return out;
}

// Retry, timeout and TLS settings every HTTP backend shares (values resolved and validated by
// app/config/backend_options.cpp, defaults included: declared in backend_registry.cpp).
template <typename Options>
void common_http_options(const BackendSpec& spec, const log::Logger& logger, Options& o) {
  o.instance = spec.instance;
  o.logger = logger;
  o.endpoint = setting(spec, "endpoint");
  o.timeout = spec_ms(spec, "timeout");
  o.connect_timeout = o.timeout.count() > 0 ? o.timeout : std::chrono::milliseconds(10000);
  o.batch_spans = spec_u64(spec, "batch_spans");
  o.max_in_flight = spec_u64(spec, "max_in_flight");
  o.retry.initial_backoff = spec_ms(spec, "retry_initial");
  o.retry.max_backoff = spec_ms(spec, "retry_max");
  o.retry.max_elapsed = spec_ms(spec, "retry_max_elapsed");
  o.ca_file = setting(spec, "ca_file");
  o.insecure = spec_bool(spec, "insecure");
  if (o.insecure) logger.warn(http::insecure_warning("backend " + spec.instance));
  o.client_cert = setting(spec, "client_cert");
  o.client_key = setting(spec, "client_key");
}

// Langfuse batch ingestion API (protocols §A.3-A.8), for self-hosted v3 servers.
std::unique_ptr<Exporter> make_langfuse_legacy(const BackendSpec& spec, const log::Logger& logger) {
  langfuse::LegacyOptions o;
  common_http_options(spec, logger, o);
  o.headers.emplace_back("Authorization", langfuse_auth(spec));
  for (auto& kv : spec_headers(spec)) o.headers.push_back(kv);
  o.environment = setting(spec, "environment");
  o.tags = spec_list(spec, "tag");
  o.typed_observations = spec_bool(spec, "typed_observations");
  o.batch_bytes = std::min<std::size_t>(langfuse::kMaxBatchBytes, spec_u64(spec, "batch_bytes"));
  std::string error;
  auto exp = langfuse::make_langfuse_legacy_exporter(std::move(o), &error);
  if (!exp) throw ConfigError("backend " + spec.instance + ": " + error);
  return exp;
}

}  // namespace

std::unique_ptr<Exporter> make_network_exporter(const BackendSpec& spec,
                                                const log::Logger& logger) {
  const std::string type = spec.type;
  if (type == "langfuse-legacy") return make_langfuse_legacy(spec, logger);
  if (type != "otlp" && type != "langfuse" && type != "phoenix")
    throw ConfigError("unknown backend '" + type + "'");
  otlp::OtlpOptions o;
  common_http_options(spec, logger, o);

  // Headers: OTEL_EXPORTER_OTLP_HEADERS (and the traces variant), then --header, resolved with
  // their sources in app/config/backend_options.cpp (so --print-config shows them).
  o.headers.clear();
  for (auto& kv : spec_headers(spec)) o.headers.push_back(kv);
  o.resource_attributes = otlp::parse_resource_attributes(setting(spec, "resource_attributes"),
                                                          setting(spec, "service_name"));

  if (type == "langfuse") {
    o.headers.emplace_back("Authorization", langfuse_auth(spec));
  } else if (type == "phoenix") {
    o.project_name = setting(spec, "project_name");
    const std::string key = setting(spec, "api_key");
    if (!key.empty()) o.headers.emplace_back("Authorization", "Bearer " + key);
  }
  const std::string profile = setting(spec, "profile");
  o.profile = profile == "langfuse"  ? otlp::Profile::kLangfuse
              : profile == "phoenix" ? otlp::Profile::kPhoenix
                                     : otlp::Profile::kGeneric;
  if (setting(spec, "otlp_encoding") == "json") o.encoding = otlp::OtlpOptions::Encoding::kJson;
  o.environment = setting(spec, "environment");
  o.tags = spec_list(spec, "tag");
  o.compression = setting(spec, "compression") == "none" ? otlp::OtlpOptions::Compression::kNone
                                                         : otlp::OtlpOptions::Compression::kGzip;
  o.gzip_level = static_cast<int>(spec_u64(spec, "compression_level"));  // BENCHMARKS.md
  // Not a user option: main.cpp sets one HTTP io thread per mapper worker, so body assembly and
  // gzip use every core (lost in the typed-options rebase at 4b973c4, restored here).
  if (auto n = setting(spec, "io_threads"); !n.empty())
    o.io_threads = std::max<std::size_t>(1, std::stoull(n));
  o.batch_bytes = spec_u64(spec, "batch_bytes");
  // Self-hosted Langfuse rejects bodies over ~4.5 MB: stay well below it.
  if (type == "langfuse") o.batch_bytes = std::min<std::size_t>(o.batch_bytes, 3u << 20);
  if (auto r = setting(spec, "rate"); !r.empty()) {
    Rate rate;
    parse_rate(r, rate);  // validated and made canonical when the options were resolved
    o.rate = rate.per_second;
    o.rate_is_spans = rate.spans;
  }

  std::string error;
  auto exp = otlp::make_otlp_exporter(std::move(o), &error);
  if (!exp) throw ConfigError("backend " + spec.instance + ": " + error);
  return exp;
}

}  // namespace chsync
