#include "app/config/config.h"

#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "app/sync/sync.h"

namespace chsync {
namespace {

std::string normalise(std::string k) {
  std::replace(k.begin(), k.end(), '_', '-');
  return k;
}

bool scalar_to_string(const toml::node& n, std::string& out) {
  if (auto s = n.value<std::string>()) {
    out = *s;
  } else if (auto b = n.value<bool>(); b && n.is_boolean()) {
    out = *b ? "true" : "false";
  } else if (n.is_integer()) {
    out = std::to_string(*n.value<std::int64_t>());
  } else if (n.is_floating_point()) {
    std::ostringstream os;
    os << *n.value<double>();
    out = os.str();
  } else {
    return false;
  }
  return true;
}

}  // namespace

ConfigFile load_config_file(const std::string& path, bool required) {
  ConfigFile cf;
  if (!std::filesystem::exists(path)) {
    if (required) throw ConfigError("--config: " + path + ": no such file");
    return cf;
  }
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw ConfigError("config " + path + ":" + std::to_string(e.source().begin.line) + ":" +
                      std::to_string(e.source().begin.column) + ": " +
                      std::string(e.description()));
  }
  cf.path = path;
  for (auto&& [k, v] : root) {
    const std::string key(k.str());
    if (key == "sync") {
      auto* t = v.as_table();
      if (!t) throw ConfigError("config " + path + ": [sync] must be a table");
      for (auto&& [sk, sv] : *t) {
        std::vector<std::string> values;
        std::string s;
        if (auto* arr = sv.as_array()) {
          for (auto& el : *arr) {
            if (!scalar_to_string(el, s))
              throw ConfigError("config " + path + ": sync." + std::string(sk.str()) +
                                ": arrays may hold only strings and numbers");
            values.push_back(s);
          }
        } else if (scalar_to_string(sv, s)) {
          values.push_back(s);
        } else {
          throw ConfigError("config " + path + ": sync." + std::string(sk.str()) +
                            ": unsupported value");
        }
        cf.sync[normalise(std::string(sk.str()))] = values;
        cf.lines["sync." + normalise(std::string(sk.str()))] =
            static_cast<int>(sv.source().begin.line);
      }
    } else if (key == "backends") {
      auto* t = v.as_table();
      if (!t) throw ConfigError("config " + path + ": [backends] must hold tables");
      for (auto&& [name, bt] : *t) {
        auto* inst = bt.as_table();
        const std::string iname(name.str());
        if (!inst) throw ConfigError("config " + path + ": backends." + iname + " must be a table");
        auto& out = cf.backends[iname];
        cf.lines["backends." + iname] = static_cast<int>(bt.source().begin.line);
        for (auto&& [bk, bv] : *inst) {
          const std::string bkey(bk.str());
          if (bkey == "headers") {
            auto* ht = bv.as_table();
            if (!ht)
              throw ConfigError("config " + path + ": backends." + iname +
                                ".headers must be a table");
            int i = 0;
            for (auto&& [hk, hv] : *ht) {
              std::string hs;
              if (!scalar_to_string(hv, hs))
                throw ConfigError("config " + path + ": backends." + iname + ".headers." +
                                  std::string(hk.str()) + ": must be a string");
              out["header.cfg" + std::to_string(i++)] = std::string(hk.str()) + "=" + hs;
            }
            continue;
          }
          std::string nk = bkey;
          std::replace(nk.begin(), nk.end(), '-', '_');
          cf.lines["backends." + iname + "." + nk] = static_cast<int>(bv.source().begin.line);
          std::string s;
          if (auto* arr =
                  bv.as_array()) {  // tag = ["a", "b"] -> tag.0, tag.1 (backend_options.cpp)
            std::size_t i = 0;
            for (auto& el : *arr) {
              if (!scalar_to_string(el, s))
                throw ConfigError("config " + path + ": backends." + iname + "." + bkey +
                                  ": arrays may hold only strings and numbers");
              out[nk + "." + std::to_string(i++)] = s;
            }
            continue;
          }
          if (!scalar_to_string(bv, s))
            throw ConfigError("config " + path + ": backends." + iname + "." + bkey +
                              ": unsupported value");
          out[nk] = s;
        }
        if (out.find("type") == out.end())
          throw ConfigError("config " + path + ": backends." + iname +
                            " needs type = \"otlp\"|...");
      }
    } else {
      throw ConfigError("config " + path + ": unknown section or key '" + key +
                        "' (expected [sync] and [backends.NAME])");
    }
  }
  return cf;
}

ConfigFile load_default_or(const std::string& explicit_path) {
  if (!explicit_path.empty()) return load_config_file(explicit_path, true);
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  std::string base =
      xdg && *xdg ? std::string(xdg)
                  : std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") + "/.config";
  return load_config_file(base + "/chsync/config.toml", false);
}

bool is_secret_key(const std::string& key) {
  std::string k = key;
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  return k.find("secret") != std::string::npos || k.find("password") != std::string::npos ||
         k.find("token") != std::string::npos || k.find("authorization") != std::string::npos ||
         k.find("api-key") != std::string::npos || k.find("api_key") != std::string::npos ||
         k.find("apikey") != std::string::npos || k.find("cookie") != std::string::npos ||
         k == "public_key" || k.find("x-honeycomb-team") != std::string::npos;
}

std::string mask_secret(const std::string& value) {
  // Nothing of the value is shown, not even a prefix: "Bearer" or "sk-lf-" prefixes are public,
  // but a short secret would be half revealed.
  return value.empty() ? value : "****";
}

}  // namespace chsync
