// The declarations of app/config/backend_registry.h: what each backend type takes, written once.
#include "app/config/backend_registry.h"

#include <algorithm>
#include <set>

namespace chsync {
namespace {

using T = OptionType;

OptionDecl opt(std::string key, std::string flag, T type, std::string def, std::string help) {
  OptionDecl d;
  d.key = std::move(key);
  d.flag = std::move(flag);
  d.type = type;
  d.default_text = std::move(def);
  d.help = std::move(help);
  return d;
}

OptionDecl with_env(OptionDecl d, std::vector<EnvFallback> env) {
  d.env = std::move(env);
  return d;
}

OptionDecl secret(OptionDecl d) {
  d.secret = true;
  return d;
}

OptionDecl choice(OptionDecl d, std::vector<std::string> choices) {
  d.choices = std::move(choices);
  return d;
}

OptionDecl count(OptionDecl d, std::uint64_t min, std::uint64_t max) {
  d.min = min;
  d.max = max;
  return d;
}

OptionDecl when(OptionDecl d, std::string key, std::vector<std::string> values) {
  d.when_key = std::move(key);
  d.when_values = std::move(values);
  return d;
}

// Options every HTTP backend shares; `otel_env` adds the OTEL_EXPORTER_OTLP_* fallbacks (the
// OTLP exporters honour them, the Langfuse batch API does not); `langfuse_env` the Langfuse SDK's
// LANGFUSE_TRACING_ENVIRONMENT (a Langfuse variable is not meant for a generic collector).
std::vector<OptionDecl> http_options(bool otel_env, bool langfuse_env,
                                     const std::string& max_in_flight,
                                     const std::string& batch_bytes) {
  std::vector<OptionDecl> v;
  auto header = opt("header", "header", T::kHeaders, "",
                    "Extra HTTP header K=V (repeatable; [backends.NAME] headers = { K = \"V\" })");
  // The OTEL_*_HEADERS variables add to the headers given (W3C baggage syntax, %-encoded).
  if (otel_env)
    header = with_env(header, {{"OTEL_EXPORTER_OTLP_HEADERS", "", false},
                               {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "", false}});
  v.push_back(header);
  auto environment = opt("environment", "environment", T::kString, "",
                         "Langfuse environment / deployment.environment.name");
  if (langfuse_env)
    environment = with_env(environment, {{"LANGFUSE_TRACING_ENVIRONMENT", "", false}});
  environment.check = [](const std::string& e) -> std::string {
    // Langfuse's rule for environment names; anything else it rejects at ingestion.
    const bool ok =
        e.size() <= 40 && e.rfind("langfuse", 0) != 0 &&
        std::all_of(e.begin(), e.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        });
    return ok ? ""
              : "use at most 40 lowercase letters, digits, '-' or '_', not starting with "
                "'langfuse'";
  };
  v.push_back(environment);
  auto tag = opt("tag", "tag", T::kList, "", "Langfuse trace tag, after claude-code (repeatable)");
  tag.check = [](const std::string& t) -> std::string {
    return t.empty() ? "must not be empty" : "";
  };
  v.push_back(tag);
  v.push_back(
      count(opt("batch_spans", "batch-spans", T::kCount, "512", "Spans per request"), 1, 1000000));
  v.push_back(
      opt("batch_bytes", "batch-bytes", T::kSize, batch_bytes, "Request size before compression"));
  v.push_back(
      count(opt("max_in_flight", "max-in-flight", T::kCount, max_in_flight, "Concurrent requests"),
            1, 4096));
  auto timeout = opt("timeout", "timeout", T::kDuration, "10s", "Request timeout");
  if (otel_env)
    timeout = with_env(timeout, {{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "", true},
                                 {"OTEL_EXPORTER_OTLP_TIMEOUT", "", true}});
  v.push_back(timeout);
  v.push_back(opt("retry_initial", "retry-initial", T::kDuration, "1s", "First retry backoff"));
  v.push_back(opt("retry_max", "retry-max", T::kDuration, "30s", "Longest retry backoff"));
  v.push_back(opt("retry_max_elapsed", "retry-max-elapsed", T::kDuration, "5m",
                  "Give up retrying a request after"));
  auto ca = opt("ca_file", "ca-file", T::kString, "", "PEM bundle to verify the server");
  auto cert = opt("client_cert", "client-cert", T::kString, "", "mTLS client certificate (PEM)");
  auto key = opt("client_key", "client-key", T::kString, "", "mTLS client key (PEM)");
  if (otel_env) {
    ca = with_env(ca, {{"OTEL_EXPORTER_OTLP_CERTIFICATE", "", false}});
    cert = with_env(cert, {{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "", false}});
    key = with_env(key, {{"OTEL_EXPORTER_OTLP_CLIENT_KEY", "", false}});
  }
  v.push_back(ca);
  v.push_back(opt("insecure", "insecure", T::kBool, "false", "Do not verify TLS certificates"));
  v.push_back(cert);
  v.push_back(key);
  return v;
}

// Options of the OTLP encoders (otlp, langfuse, phoenix).
std::vector<OptionDecl> otlp_options(const std::string& profile) {
  std::vector<OptionDecl> v = http_options(true, profile == "langfuse", "16", "4MiB");
  // The OTLP encoder writes langfuse.trace.tags in the langfuse profile only.
  for (auto& o : v)
    if (o.key == "tag") o = when(o, "profile", {"langfuse"});
  v.push_back(with_env(
      choice(opt("compression", "compression", T::kChoice, "gzip", "Request body compression"),
             {"gzip", "none"}),
      {{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "", false},
       {"OTEL_EXPORTER_OTLP_COMPRESSION", "", false}}));
  v.push_back(
      when(count(opt("compression_level", "compression-level", T::kCount, "1",
                     "gzip level (libdeflate); 1 is the fastest per core, see BENCHMARKS.md"),
                 1, 12),
           "compression", {"gzip"}));
  v.push_back(
      choice(opt("otlp_encoding", "otlp-encoding", T::kChoice, "protobuf", "OTLP body encoding"),
             {"protobuf", "json"}));
  v.push_back(choice(opt("profile", "profile", T::kChoice, profile,
                         "Span attribute conventions (content attribute keys)"),
                     {"generic", "langfuse", "phoenix"}));
  v.push_back(opt("rate", "rate", T::kRate, "",
                  "Send at most this fast: 50/s (requests) or 5000spans/s (spans)"));
  // No flags: the OpenTelemetry variables (or the keys of a [backends.NAME] table).
  v.push_back(
      with_env(opt("resource_attributes", "", T::kString, "", "Resource attributes K=V,..."),
               {{"OTEL_RESOURCE_ATTRIBUTES", "", false}}));
  v.push_back(with_env(opt("service_name", "", T::kString, "", "Resource service.name"),
                       {{"OTEL_SERVICE_NAME", "", false}}));
  return v;
}

std::vector<OptionDecl> langfuse_keys() {
  return {secret(with_env(opt("public_key", "", T::kString, "", "Langfuse public key"),
                          {{"LANGFUSE_PUBLIC_KEY", "", false}})),
          secret(with_env(opt("secret_key", "", T::kString, "", "Langfuse secret key"),
                          {{"LANGFUSE_SECRET_KEY", "", false}}))};
}

OptionDecl endpoint_option(const std::string& help) {
  return opt("endpoint", "endpoint", T::kUrl, "", help);
}

OptionDecl langfuse_host() {
  return with_env(opt("host", "host", T::kUrl, "https://cloud.langfuse.com",
                      "Base URL of Langfuse or Phoenix (the API paths are added)"),
                  {{"LANGFUSE_BASE_URL", "", false}, {"LANGFUSE_HOST", "", false}});
}

// A Langfuse backend type (OTLP or legacy ingestion): the base URL, the full URL that overrides
// it, the key pair, then the options of its transport.
BackendTypeDecl langfuse_type(std::string type, std::string help, const std::string& endpoint_help,
                              const std::vector<OptionDecl>& transport) {
  BackendTypeDecl t{std::move(type), std::move(help), {langfuse_host()}};
  t.options.push_back(endpoint_option(endpoint_help));
  for (auto& o : langfuse_keys()) t.options.push_back(o);
  t.options.insert(t.options.end(), transport.begin(), transport.end());
  return t;
}

std::vector<BackendTypeDecl> build_registry() {
  std::vector<BackendTypeDecl> r;
  r.push_back({"console", "Print spans on stdout (--format text|json)", {}});
  r.push_back({"file",
               "Append spans as JSON lines to a file",
               {opt("output", "output", T::kString, "",
                    "Path for --backend file (JSON lines, appended)")}});
  r.push_back({"null", "Map and count, send nothing (measures the pipeline)", {}});

  BackendTypeDecl otlp{"otlp", "Any OTLP/HTTP collector", {}};
  otlp.options.push_back(
      with_env(opt("endpoint", "endpoint", T::kUrl, "http://127.0.0.1:4318/v1/traces",
                   "OTLP traces URL, used as is (without --backend it selects otlp)"),
               {{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", false},
                {"OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces", false}}));
  for (auto& o : otlp_options("generic")) otlp.options.push_back(o);
  r.push_back(otlp);

  r.push_back(langfuse_type("langfuse", "Langfuse through its OTLP endpoint",
                            "Full traces URL (default: HOST/api/public/otel/v1/traces)",
                            otlp_options("langfuse")));

  BackendTypeDecl legacy =
      langfuse_type("langfuse-legacy", "Langfuse batch ingestion API (self-hosted v3)",
                    "Full ingestion URL (default: HOST/api/public/ingestion)",
                    http_options(false, true, "4", "3500000"));
  legacy.options.push_back(opt("typed_observations", "typed-observations", T::kBool, "false",
                               "Send agent-create/tool-create instead of span-create (Langfuse v3 "
                               "servers that accept them)"));
  r.push_back(legacy);

  BackendTypeDecl px{"phoenix", "Arize Phoenix through its OTLP endpoint", {}};
  px.options.push_back(with_env(opt("host", "host", T::kUrl, "http://127.0.0.1:6006",
                                    "Phoenix base URL (/v1/traces is added)"),
                                {{"PHOENIX_COLLECTOR_ENDPOINT", "", false}}));
  px.options.push_back(endpoint_option("Full traces URL (default: HOST/v1/traces)"));
  px.options.push_back(with_env(opt("project_name", "project-name", T::kString, "",
                                    "Phoenix project (openinference.project.name)"),
                                {{"PHOENIX_PROJECT_NAME", "", false}}));
  px.options.push_back(secret(
      with_env(opt("api_key", "", T::kString, "", "Phoenix API key (sent as a Bearer token)"),
               {{"PHOENIX_API_KEY", "", false}})));
  for (auto& o : otlp_options("phoenix")) {
    // Phoenix's OTLP receiver takes protobuf only (it answers JSON with 415).
    if (o.key == "otlp_encoding")
      o.check = [](const std::string& e) -> std::string {
        return e == "protobuf" ? "" : "phoenix accepts only --otlp-encoding protobuf";
      };
    px.options.push_back(o);
  }
  r.push_back(px);
  return r;
}

}  // namespace

const OptionDecl* find_option(const BackendTypeDecl& t, const std::string& key) {
  for (const auto& o : t.options)
    if (o.key == key) return &o;
  return nullptr;
}

const std::vector<BackendTypeDecl>& backend_types() {
  static const std::vector<BackendTypeDecl> registry = build_registry();
  return registry;
}

const BackendTypeDecl* find_backend_type(const std::string& type) {
  for (const auto& t : backend_types())
    if (t.type == type) return &t;
  return nullptr;
}

std::vector<const OptionDecl*> all_backend_options() {
  std::vector<const OptionDecl*> out;
  std::set<std::string> seen;
  for (const auto& t : backend_types())
    for (const auto& o : t.options)
      if (!o.flag.empty() && seen.insert(o.flag).second) out.push_back(&o);
  return out;
}

}  // namespace chsync
