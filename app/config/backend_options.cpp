// Resolving and validating the options of the chosen backends (app/config/backend_options.h).
#include "app/config/backend_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "app/config/config.h"
#include "backends/otlp/otlp_env.h"

namespace chsync {
namespace {

using T = OptionType;

std::string env_value(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::string(v) : std::string();
}

std::string strip_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
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
           std::string inst_name)
      : t_(t), given_(given), cf_(cf), inst_(inst), inst_name_(std::move(inst_name)) {}

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
  static void set(BackendSpec& spec, const OptionDecl& d, const std::string& text,
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
        spec.settings[k] = fmt::format("{}={}", name, value);
        spec.sources[k] = "env " + e.name;
      }
  }

  void derive_endpoint(BackendSpec& spec) {
    if (spec.settings.contains("endpoint") || !spec.settings.contains("host")) return;
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

// The full endpoint is used as is: a host given beside it (both by the user) would do nothing.
void check_endpoint_beside_host(const BackendSpec& spec) {
  if (spec.settings.contains("endpoint") && spec.settings.contains("host") &&
      user_given(spec, "endpoint") && user_given(spec, "host"))
    throw ConfigError(fmt::format(
        "{} does nothing for --backend {} beside {} (a full endpoint is used as is); give one "
        "of them",
        named_source(spec.sources.at("host"), "host"), spec.instance,
        named_source(spec.sources.at("endpoint"), "endpoint")));
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
    const std::string why = src == spec.sources.end() ? "unset"
                            : src->second.rfind("flag", 0) == 0
                                ? fmt::format("--{} {}", cflag, have)
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
    const std::string from = named_source(g.source, flag);
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

}  // namespace chsync
