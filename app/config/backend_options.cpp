#include "app/config/backend_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "app/config/config.h"
#include "app/config/units.h"
#include "backends/otlp/otlp_env.h"

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

std::string env_value(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::string(v) : std::string();
}

std::string strip_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

const OptionDecl* find_option(const BackendTypeDecl& t, const std::string& key) {
  for (const auto& o : t.options)
    if (o.key == key) return &o;
  return nullptr;
}

std::string flag_keys_of(const BackendTypeDecl& t) {
  std::string s;
  for (const auto& o : t.options) {
    if (o.flag.empty()) continue;
    s += (s.empty() ? "--" : ", --") + o.flag;
  }
  return s.empty() ? "none" : s;
}

std::string config_where(const ConfigFile& cf, const std::string& dotted) {
  auto it = cf.lines.find(dotted);
  return it == cf.lines.end() ? fmt::format("config {}", cf.path)
                              : fmt::format("config {}:{}", cf.path, it->second);
}

// One instance: every declared option gets a value (or stays unset) and a source.
class Resolver {
 public:
  Resolver(const BackendTypeDecl& t, const std::map<std::string, GivenValue>& given,
           const ConfigFile& cf, const std::map<std::string, std::string>* inst,
           const std::string& inst_name)
      : t_(t), given_(given), cf_(cf), inst_(inst), inst_name_(inst_name) {}

  void run(BackendSpec& spec) {
    if (inst_) check_instance_keys();
    for (const auto& d : t_.options) {
      if (d.type == T::kHeaders || d.type == T::kList) {
        list(d, spec);
        continue;
      }
      one(d, spec);
    }
    derive_endpoint(spec);
    if (inst_) check_instance_conditions(spec);
  }

 private:
  void set(BackendSpec& spec, const OptionDecl& d, const std::string& text,
           const std::string& where, const std::string& source) {
    std::string canon;
    if (auto err = canonical_value(d, text, canon); !err.empty())
      throw ConfigError(fmt::format("{}: {}", where, err));
    spec.settings[d.key] = canon;
    spec.sources[d.key] = source;
  }

  void one(const OptionDecl& d, BackendSpec& spec) {
    const GivenValue* g = nullptr;
    if (!d.flag.empty()) {
      auto it = given_.find(d.flag);
      if (it != given_.end() && !it->second.values.empty()) g = &it->second;
    }
    if (g && g->explicit_) return set(spec, d, g->values.back(), where_given(d, *g), g->source);
    if (inst_) {
      auto it = inst_->find(d.key);
      if (it != inst_->end()) {
        const std::string dotted = "backends." + inst_name_ + "." + d.key;
        const std::string where = config_where(cf_, dotted) + ": " + dotted;
        return set(spec, d, it->second, where,
                   "file " + cf_.path + " [backends." + inst_name_ + "]");
      }
    }
    if (g) return set(spec, d, g->values.back(), where_given(d, *g), g->source);
    for (const auto& e : d.env) {
      std::string v = env_value(e.name);
      if (v.empty()) continue;
      if (e.millis) {
        auto ms = otlp::parse_timeout_ms(v);
        if (!ms) throw ConfigError(fmt::format("{}: expected milliseconds, got '{}'", e.name, v));
        v = fmt::format("{}ms", ms->count());
      }
      if (!e.suffix.empty()) v = strip_slash(v) + e.suffix;
      else if (d.key == "endpoint") v = otlp::resolve_endpoint("", v, "");  // empty path -> "/"
      return set(spec, d, v, e.name, "env " + e.name);
    }
    if (!d.default_text.empty()) set(spec, d, d.default_text, "default of " + d.key, "default");
  }

  std::string where_given(const OptionDecl& d, const GivenValue& g) const {
    // "--rate" for a flag, "CHSYNC_RATE" for the environment, "config PATH:LINE: sync.rate".
    if (g.source.rfind("env ", 0) == 0) return g.source.substr(4);
    if (g.source.rfind("file ", 0) == 0) {
      for (const auto& k : {d.flag, d.key}) {
        auto it = cf_.lines.find("sync." + k);
        if (it != cf_.lines.end())
          return fmt::format("config {}:{}: sync.{}", cf_.path, it->second, d.flag);
      }
      return fmt::format("config {}: sync.{}", cf_.path, d.flag);
    }
    return "--" + d.flag;
  }

  // Repeatable options: "KEY.0", "KEY.1", ... (headers from the file keep their own keys and add
  // to those given; other lists follow the precedence of single values: a flag or CHSYNC_* beats
  // the instance's `KEY = [...]`, which beats a [sync] key).
  void list(const OptionDecl& d, BackendSpec& spec) {
    auto it = given_.find(d.flag);
    if (d.type == T::kList && inst_ && (it == given_.end() || !it->second.explicit_)) {
      const std::vector<std::string> values = instance_list(d.key);
      if (!values.empty()) {
        const std::string dotted = "backends." + inst_name_ + "." + d.key;
        const std::string where = config_where(cf_, dotted) + ": " + dotted;
        for (std::size_t i = 0; i < values.size(); ++i) {
          std::string canon;
          if (auto err = canonical_value(d, values[i], canon); !err.empty())
            throw ConfigError(fmt::format("{}: {}", where, err));
          spec.settings[d.key + "." + std::to_string(i)] = canon;
          spec.sources[d.key + "." + std::to_string(i)] =
              "file " + cf_.path + " [backends." + inst_name_ + "]";
        }
        return;
      }
    }
    if (it != given_.end()) {
      for (std::size_t i = 0; i < it->second.values.size(); ++i) {
        const auto& v = it->second.values[i];
        if (d.type == T::kHeaders && v.find('=') == std::string::npos)
          throw ConfigError(
              fmt::format("{}: expected K=V, got '{}'", where_given(d, it->second), v));
        std::string canon;
        if (auto err = canonical_value(d, v, canon); !err.empty())
          throw ConfigError(fmt::format("{}: {}", where_given(d, it->second), err));
        spec.settings[d.key + "." + std::to_string(i)] = canon;
        spec.sources[d.key + "." + std::to_string(i)] = it->second.source;
      }
    }
    if (d.type != T::kHeaders) return;
    if (inst_)
      for (const auto& [k, v] : *inst_) {
        if (k.rfind("header.", 0) != 0) continue;
        spec.settings[k] = v;
        spec.sources[k] = "file " + cf_.path + " [backends." + inst_name_ + "]";
      }
    // OTEL_EXPORTER_OTLP_HEADERS, then ..._TRACES_HEADERS: "header.env.N" (sent before the others).
    std::size_t n = 0;
    for (const auto& e : d.env)
      for (const auto& [name, value] : otlp::parse_headers(env_value(e.name))) {
        const std::string k = "header.env." + std::to_string(n++);
        spec.settings[k] = name + "=" + value;
        spec.sources[k] = "env " + e.name;
      }
  }

  void derive_endpoint(BackendSpec& spec) {
    if (spec.settings.count("endpoint") || !spec.settings.count("host")) return;
    std::string path;
    if (t_.type == "langfuse") path = "/api/public/otel/v1/traces";
    else if (t_.type == "langfuse-legacy") path = "/api/public/ingestion";
    else if (t_.type == "phoenix") path = "/v1/traces";
    else return;
    spec.settings["endpoint"] = strip_slash(spec.settings["host"]) + path;
    spec.sources["endpoint"] = "host (" + spec.sources["host"] + ")";
  }

  // A list in [backends.NAME] ("tag = [\"a\", \"b\"]") is stored as KEY.0, KEY.1
  // (app/config/config.cpp); a single string counts as a list of one.
  std::vector<std::string> instance_list(const std::string& key) const {
    std::vector<std::string> out;
    if (auto it = inst_->find(key); it != inst_->end()) out.push_back(it->second);
    for (std::size_t i = 0;; ++i) {
      auto it = inst_->find(key + "." + std::to_string(i));
      if (it == inst_->end()) break;
      out.push_back(it->second);
    }
    return out;
  }

  // "tag.1" -> "tag" (lists from the file); "header.*" stays as it is.
  static std::string base_key(const std::string& k) {
    if (k.rfind("header.", 0) == 0) return k;
    const auto dot = k.find('.');
    return dot == std::string::npos ? k : k.substr(0, dot);
  }

  // A key of the instance whose option does nothing with the instance's other values.
  void check_instance_conditions(const BackendSpec& spec) const {
    for (const auto& d : t_.options) {
      if (d.when_key.empty() || instance_list(d.key).empty()) continue;
      const std::string have = spec_str(spec, d.when_key);
      if (std::find(d.when_values.begin(), d.when_values.end(), have) != d.when_values.end())
        continue;
      const std::string dotted = "backends." + inst_name_ + "." + d.key;
      auto src = spec.sources.find(d.when_key);
      throw ConfigError(
          fmt::format("{}: {}: does nothing with {} = \"{}\" ({}); it needs {} = \"{}\"",
                      config_where(cf_, dotted), dotted, d.when_key, have,
                      src == spec.sources.end() ? "unset" : src->second, d.when_key,
                      fmt::join(d.when_values, "\" or \"")));
    }
  }

  void check_instance_keys() {
    std::vector<std::string> keys = {"type"};
    for (const auto& o : t_.options) keys.push_back(o.key == "header" ? "headers" : o.key);
    for (const auto& [full, v] : *inst_) {
      const std::string k = base_key(full);
      const OptionDecl* known = find_option(t_, k);
      if (k == "type" || k.rfind("header.", 0) == 0) continue;
      if (known && (known->type == T::kList || k == full)) continue;
      const std::string dotted = "backends." + inst_name_ + "." + k;
      if (known)
        throw ConfigError(fmt::format("{}: {}: takes one value, not an array",
                                      config_where(cf_, dotted), dotted));
      std::string msg = fmt::format("{}: {}: unknown key for type \"{}\"",
                                    config_where(cf_, dotted), dotted, t_.type);
      if (auto near = did_you_mean(k, keys); !near.empty())
        msg += fmt::format(" (did you mean '{}'?)", near);
      else msg += " (keys: " + fmt::format("{}", fmt::join(keys, ", ")) + ")";
      throw ConfigError(msg);
    }
  }

  const BackendTypeDecl& t_;
  const std::map<std::string, GivenValue>& given_;
  const ConfigFile& cf_;
  const std::map<std::string, std::string>* inst_;
  std::string inst_name_;
};

// A user-given value: a flag, a CHSYNC_* variable or a key of the file (not a default, not an
// ambient LANGFUSE_*/OTEL_* fallback).
bool user_given(const BackendSpec& spec, const std::string& key) {
  auto it = spec.sources.find(key);
  if (it == spec.sources.end()) return false;
  const std::string& s = it->second;
  return s.rfind("flag ", 0) == 0 || s.rfind("env CHSYNC_", 0) == 0 || s.rfind("file ", 0) == 0;
}

// "--host" for a flag, else "env CHSYNC_HOST (--host)" / "file P [sync] (--host)".
std::string named_source(const BackendSpec& spec, const std::string& key) {
  const std::string& s = spec.sources.at(key);
  return s.rfind("flag ", 0) == 0 ? s.substr(5) : s + " (--" + key + ")";
}

// The full endpoint is used as is: a host given beside it (both by the user) would do nothing.
void check_endpoint_beside_host(const BackendSpec& spec) {
  if (spec.settings.count("endpoint") && spec.settings.count("host") &&
      user_given(spec, "endpoint") && user_given(spec, "host"))
    throw ConfigError(fmt::format(
        "{} does nothing for --backend {} beside {} (a full endpoint is used as is); give one "
        "of them",
        named_source(spec, "host"), spec.instance, named_source(spec, "endpoint")));
}

// Whether a chosen instance takes a given flag: "" when it does, else why not.
std::string why_not_applied(const BackendTypeDecl& t, const BackendSpec& spec,
                            const std::string& flag, const OptionDecl** declared) {
  *declared = nullptr;
  for (const auto& o : t.options) {
    if (o.flag != flag) continue;
    *declared = &o;
    const std::string have = spec_str(spec, o.when_key);
    if (o.when_key.empty() ||
        std::find(o.when_values.begin(), o.when_values.end(), have) != o.when_values.end())
      return "";
    const OptionDecl* cond = find_option(t, o.when_key);
    const std::string cflag = cond ? cond->flag : o.when_key;
    auto src = spec.sources.find(o.when_key);
    const std::string why = src == spec.sources.end()           ? "unset"
                            : src->second.rfind("flag", 0) == 0 ? "--" + cflag + " " + have
                                                                : src->second;
    return fmt::format("needs --{} {} (has {}{})", cflag, fmt::join(o.when_values, "|"), have,
                       why.rfind("--", 0) == 0 || why == "unset" ? "" : ", " + why);
  }
  return fmt::format("{} has no --{}", t.type, flag);
}

// A value that applies to some chosen backends but not to this one: its settings (set from that
// value) go back to the default, so what the instance shows is what it uses.
void drop_given_value(const OptionDecl& d, const GivenValue& g, BackendSpec& spec) {
  bool dropped = false;
  for (auto it = spec.settings.begin(); it != spec.settings.end();) {
    const std::string& k = it->first;
    const bool mine = k == d.key || k.rfind(d.key + ".", 0) == 0;
    auto src = spec.sources.find(k);
    if (mine && src != spec.sources.end() && src->second == g.source) {
      spec.sources.erase(src);
      it = spec.settings.erase(it);
      dropped = true;
    } else {
      ++it;
    }
  }
  if (!dropped || d.default_text.empty() || d.type == T::kList || d.type == T::kHeaders) return;
  std::string canon;
  if (canonical_value(d, d.default_text, canon).empty()) {
    spec.settings[d.key] = canon;
    spec.sources[d.key] = "default";
  }
}

// A backend flag set by the user that none of the chosen backends takes is a mistake (exit 2).
// One that some of them take is applied to those; the others record it in `not_applied`
// (start-up notice, --print-config) and keep their own value.
void check_flags_apply(const std::vector<const BackendTypeDecl*>& types,
                       std::vector<BackendSpec>& specs,
                       const std::map<std::string, GivenValue>& given) {
  for (const auto& [flag, g] : given) {
    if (g.values.empty()) continue;
    std::vector<std::string> why(types.size());
    std::vector<const OptionDecl*> decl(types.size());
    bool applies = false;
    for (std::size_t i = 0; i < types.size(); ++i) {
      why[i] = why_not_applied(*types[i], specs[i], flag, &decl[i]);
      applies = applies || why[i].empty();
    }
    const std::string from =
        g.source.rfind("flag", 0) == 0 ? "--" + flag : g.source + " (--" + flag + ")";
    if (applies) {
      // One destination for several backends cannot be meant: `--backend otlp --endpoint X
      // --backend langfuse --host Y` sent Langfuse's spans, and its credentials, to X (a full
      // --endpoint beats --host). Only where the value is the one in effect (an instance's own
      // key beats a [sync] key).
      std::vector<std::string> same_place;
      for (std::size_t i = 0; i < types.size(); ++i) {
        if (!why[i].empty() || !decl[i] || (flag != "endpoint" && flag != "host")) continue;
        auto src = specs[i].sources.find(decl[i]->key);
        if (src != specs[i].sources.end() && src->second == g.source)
          same_place.push_back(specs[i].instance);
      }
      if (same_place.size() > 1)
        throw ConfigError(
            fmt::format("{} would send --backend {} to the same place; give each its own {} in a "
                        "[backends.NAME] table of the config file",
                        from, fmt::join(same_place, ", "), flag));
      for (std::size_t i = 0; i < types.size(); ++i) {
        if (why[i].empty()) continue;
        specs[i].not_applied[flag] = g.source + ": " + why[i];
        if (decl[i]) drop_given_value(*decl[i], g, specs[i]);
      }
      continue;
    }
    // None takes it. A condition that no instance meets says which condition.
    std::string unmet;  // "otlp with --profile generic (default); it needs --profile langfuse"
    for (std::size_t i = 0; i < types.size(); ++i) {
      const OptionDecl* o = decl[i];
      if (!o) continue;
      const std::string have = spec_str(specs[i], o->when_key);
      const OptionDecl* cond = find_option(*types[i], o->when_key);
      auto src = specs[i].sources.find(o->when_key);
      const std::string why_src = src == specs[i].sources.end()       ? " (unset)"
                                  : src->second.rfind("flag", 0) == 0 ? ""
                                                                      : " (" + src->second + ")";
      unmet += fmt::format("{}{} with --{} {}{}; it needs --{} {}", unmet.empty() ? "" : ", ",
                           specs[i].instance, cond ? cond->flag : o->when_key, have, why_src,
                           cond ? cond->flag : o->when_key, fmt::join(o->when_values, "|"));
    }
    if (!unmet.empty())
      throw ConfigError(fmt::format("{} does nothing for --backend {}", from, unmet));
    std::string chosen;
    std::vector<std::string> candidates;
    for (const auto* t : types) {
      chosen += (chosen.empty() ? "" : ", ") + t->type;
      for (const auto& o : t->options)
        if (!o.flag.empty()) candidates.push_back(o.flag);
    }
    std::string msg = fmt::format("{} does not apply to --backend {}", from, chosen);
    std::vector<std::string> takers;
    for (const auto& t : backend_types())
      for (const auto& o : t.options)
        if (o.flag == flag) takers.push_back(t.type);
    if (auto near = did_you_mean(flag, candidates); !near.empty())
      msg += fmt::format("; did you mean --{}?", near);
    else if (takers.empty() && types.size() == 1)
      msg += fmt::format(" (its options: {})", flag_keys_of(*types.front()));
    if (!takers.empty())
      msg += fmt::format("; --{} is for --backend {}", flag, fmt::join(takers, "|"));
    throw ConfigError(msg);
  }
}

}  // namespace

std::string typed_value(const OptionDecl& d, const std::string& text, std::string& out);

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

std::string option_type_name(const OptionDecl& d) {
  switch (d.type) {
    case T::kDuration: return "DURATION";
    case T::kSize: return "SIZE";
    case T::kRate: return "RATE";
    case T::kCount: return "N";
    case T::kUrl: return "URL";
    case T::kHeaders: return "K=V";
    case T::kList: return "TEXT";
    case T::kBool: return "";
    case T::kChoice: return fmt::format("{}", fmt::join(d.choices, "|"));
    case T::kString: break;
  }
  return d.flag == "output" || d.key.find("file") != std::string::npos || d.key.find("client_") == 0
             ? "PATH"
             : "TEXT";
}

std::string option_help(const OptionDecl& d) {
  // Defaults per backend type: "default 16 (langfuse-legacy: 4)".
  std::map<std::string, std::vector<std::string>> by_default;
  std::vector<std::string> types, conditional;  // "otlp with --profile langfuse"
  for (const auto& t : backend_types())
    for (const auto& o : t.options)
      if (o.flag == d.flag) {
        by_default[o.default_text].push_back(t.type);
        types.push_back(t.type);
        const OptionDecl* cond = o.when_key.empty() ? nullptr : find_option(t, o.when_key);
        if (cond && std::find(o.when_values.begin(), o.when_values.end(), cond->default_text) ==
                        o.when_values.end())
          conditional.push_back(
              fmt::format("{} with --{} {}", t.type, cond->flag, fmt::join(o.when_values, "|")));
        else conditional.push_back(t.type);
      }
  std::string h = d.help;
  if (d.type != T::kBool && !(by_default.size() == 1 && by_default.begin()->first.empty())) {
    std::string main_def;
    std::size_t most = 0;
    for (const auto& [def, ts] : by_default)
      if (ts.size() > most) {
        most = ts.size();
        main_def = def;
      }
    if (!main_def.empty()) h += "; default " + main_def;
    for (const auto& [def, ts] : by_default)
      if (def != main_def && !def.empty()) h += fmt::format(" ({}: {})", fmt::join(ts, ", "), def);
  }
  // Environment fallbacks of every type that takes the flag ("LANGFUSE_TRACING_ENVIRONMENT
  // (langfuse, langfuse-legacy)" when only some types read it).
  std::vector<std::string> envs;
  for (const auto& t0 : backend_types())
    for (const auto& o : t0.options)
      if (o.flag == d.flag)
        for (const auto& e : o.env) {
          std::vector<std::string> readers;
          for (const auto& t : backend_types())
            for (const auto& o2 : t.options)
              if (o2.flag == d.flag &&
                  std::any_of(o2.env.begin(), o2.env.end(),
                              [&](const EnvFallback& x) { return x.name == e.name; }))
                readers.push_back(t.type);
          const std::string shown = readers.size() == types.size()
                                        ? e.name
                                        : fmt::format("{} ({})", e.name, fmt::join(readers, ", "));
          if (std::find(envs.begin(), envs.end(), shown) == envs.end()) envs.push_back(shown);
        }
  if (!envs.empty()) h += "; env " + fmt::format("{}", fmt::join(envs, ", "));
  // Which backends take it ("every network backend" when all four do).
  const bool all_network = types.size() == 4 &&
                           std::find(types.begin(), types.end(), "otlp") != types.end() &&
                           std::find(types.begin(), types.end(), "langfuse-legacy") != types.end();
  const bool any_condition = conditional != types;
  h += " [" +
       (all_network && !any_condition ? std::string("network backends")
                                      : fmt::format("{}", fmt::join(conditional, ", "))) +
       "]";
  return h;
}

std::string canonical_value(const OptionDecl& d, const std::string& text, std::string& out) {
  std::string err = typed_value(d, text, out);
  if (err.empty() && d.check) {
    if (auto why = d.check(out); !why.empty()) err = fmt::format("'{}': {}", text, why);
  }
  return err;
}

std::string typed_value(const OptionDecl& d, const std::string& text, std::string& out) {
  switch (d.type) {
    case T::kSize: {
      std::uint64_t n = 0;
      if (!parse_size(text, n)) return fmt::format("invalid size '{}' (use 64KiB, 4MiB)", text);
      out = std::to_string(n);
      return {};
    }
    case T::kDuration: {
      std::chrono::milliseconds ms{};
      if (!parse_duration(text, ms))
        return fmt::format("invalid duration '{}' (use 0, 500ms, 10s, 10m, 1h)", text);
      out = std::to_string(ms.count());
      return {};
    }
    case T::kRate: {
      Rate r;
      if (!parse_rate(text, r) || r.per_second <= 0)
        return fmt::format("invalid rate '{}' (use 50/s or 5000spans/s)", text);
      out = fmt::format("{}{}/s", r.per_second, r.spans ? "spans" : "");
      return {};
    }
    case T::kCount: {
      if (text.empty() || text.size() > 12 ||
          text.find_first_not_of("0123456789") != std::string::npos)
        return fmt::format("invalid number '{}'", text);
      const std::uint64_t n = std::stoull(text);
      if (n < d.min || (d.max && n > d.max))
        return fmt::format("{} is out of range [{}, {}]", n, d.min, d.max);
      out = std::to_string(n);
      return {};
    }
    case T::kBool: {
      if (text == "true" || text == "1" || text == "yes") out = "true";
      else if (text == "false" || text == "0" || text == "no") out = "false";
      else return fmt::format("invalid boolean '{}' (true or false)", text);
      return {};
    }
    case T::kChoice: {
      std::string v = text;
      std::transform(v.begin(), v.end(), v.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (std::find(d.choices.begin(), d.choices.end(), v) == d.choices.end())
        return fmt::format("'{}' is not one of {}", text, fmt::join(d.choices, ", "));
      out = v;
      return {};
    }
    case T::kUrl:
      if (text.rfind("http://", 0) != 0 && text.rfind("https://", 0) != 0)
        return fmt::format("'{}' is not an http:// or https:// URL", text);
      out = text;
      return {};
    case T::kString:
    case T::kHeaders:
    case T::kList: break;
  }
  out = text;
  return {};
}

std::vector<BackendSpec> resolve_backends(const std::vector<std::string>& backend_names,
                                          const std::map<std::string, GivenValue>& given,
                                          const ConfigFile& cf) {
  std::vector<BackendSpec> out;
  std::vector<const BackendTypeDecl*> types;
  for (const auto& name : backend_names) {
    BackendSpec spec;
    spec.instance = name;
    const std::map<std::string, std::string>* inst = nullptr;
    if (auto it = cf.backends.find(name); it != cf.backends.end()) {
      inst = &it->second;
      spec.type = it->second.at("type");
      if (!find_backend_type(spec.type)) {
        std::vector<std::string> names;
        for (const auto& t : backend_types()) names.push_back(t.type);
        const std::string dotted = "backends." + name + ".type";
        std::string msg = fmt::format("{}: {}: unknown backend type '{}'", config_where(cf, dotted),
                                      dotted, spec.type);
        if (auto near = did_you_mean(spec.type, names); !near.empty())
          msg += fmt::format(" (did you mean '{}'?)", near);
        throw ConfigError(msg);
      }
    } else {
      spec.type = name;
      if (!find_backend_type(name)) {
        std::vector<std::string> names;
        for (const auto& t : backend_types()) names.push_back(t.type);
        for (const auto& [n, _] : cf.backends) names.push_back(n);
        std::string msg = fmt::format(
            "--backend: unknown backend '{}' (one of console, file, null, otlp, langfuse, "
            "langfuse-legacy, phoenix, or an instance name from the config file)",
            name);
        if (auto near = did_you_mean(name, names); !near.empty())
          msg = fmt::format("--backend: unknown backend '{}'; did you mean '{}'?", name, near);
        throw ConfigError(msg);
      }
    }
    const BackendTypeDecl* t = find_backend_type(spec.type);
    types.push_back(t);
    Resolver(*t, given, cf, inst, name).run(spec);
    out.push_back(std::move(spec));
  }
  check_flags_apply(types, out, given);
  for (const auto& spec : out) check_endpoint_beside_host(spec);
  return out;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  auto norm = [](std::string s) {
    std::replace(s.begin(), s.end(), '_', '-');
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  const std::string w = norm(word);
  std::string best;
  std::size_t best_d = w.size() >= 8 ? 3 : 2;
  ++best_d;
  for (const auto& c : candidates) {
    const std::string n = norm(c);
    std::vector<std::size_t> prev(n.size() + 1), cur(n.size() + 1);
    for (std::size_t j = 0; j <= n.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= w.size(); ++i) {
      cur[0] = i;
      for (std::size_t j = 1; j <= n.size(); ++j)
        cur[j] =
            std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (w[i - 1] == n[j - 1] ? 0 : 1)});
      std::swap(prev, cur);
    }
    if (prev[n.size()] < best_d) {
      best_d = prev[n.size()];
      best = c;
    }
  }
  return best;
}

std::string spec_str(const BackendSpec& s, const std::string& key) {
  auto it = s.settings.find(key);
  return it == s.settings.end() ? std::string() : it->second;
}

bool spec_has(const BackendSpec& s, const std::string& key) { return s.settings.count(key) > 0; }

std::uint64_t spec_u64(const BackendSpec& s, const std::string& key) {
  const std::string v = spec_str(s, key);
  return v.empty() ? 0 : std::stoull(v);
}

std::chrono::milliseconds spec_ms(const BackendSpec& s, const std::string& key) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(spec_u64(s, key)));
}

bool spec_bool(const BackendSpec& s, const std::string& key) { return spec_str(s, key) == "true"; }

std::vector<std::string> spec_list(const BackendSpec& s, const std::string& key) {
  std::vector<std::string> out;
  for (std::size_t i = 0;; ++i) {
    auto it = s.settings.find(key + "." + std::to_string(i));
    if (it == s.settings.end()) return out;
    out.push_back(it->second);
  }
}

}  // namespace chsync
