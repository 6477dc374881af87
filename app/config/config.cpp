#include "app/config/config.h"

// toml++ reads TOML_EXCEPTIONS while its header is preprocessed: only a macro can set it.
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage): a switch of toml++, not a constant of ours
#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

#include <fmt/format.h>

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

// [sync]: every key to its list of values (an array or one scalar), by flag name.
void load_sync_table(const toml::node& v, const std::string& path, ConfigFile& cf) {
  const auto* t = v.as_table();
  if (!t) throw ConfigError(fmt::format("config {}: [sync] must be a table", path));
  for (auto&& [sk, sv] : *t) {
    std::vector<std::string> values;
    std::string s;
    if (const auto* arr = sv.as_array()) {
      for (const auto& el : *arr) {
        if (!scalar_to_string(el, s))
          throw ConfigError(fmt::format(
              "config {}: sync.{}: arrays may hold only strings and numbers", path, sk.str()));
        values.push_back(s);
      }
    } else if (scalar_to_string(sv, s)) {
      values.push_back(s);
    } else {
      throw ConfigError(fmt::format("config {}: sync.{}: unsupported value", path, sk.str()));
    }
    const std::string key = normalise(std::string(sk.str()));
    cf.sync[key] = values;
    cf.lines["sync." + key] = static_cast<int>(sv.source().begin.line);
  }
}

// [backends.NAME]: one instance's keys as strings ("headers" -> header.cfgN = "K=V"; an array
// -> KEY.0, KEY.1, read back by app/config/backend_options.cpp).
void load_backend_table(const std::string& iname, const toml::node& bt, const std::string& path,
                        ConfigFile& cf) {
  const auto* inst = bt.as_table();
  if (!inst) throw ConfigError(fmt::format("config {}: backends.{} must be a table", path, iname));
  auto& out = cf.backends[iname];
  cf.lines["backends." + iname] = static_cast<int>(bt.source().begin.line);
  for (auto&& [bk, bv] : *inst) {
    const std::string bkey(bk.str());
    if (bkey == "headers") {
      const auto* ht = bv.as_table();
      if (!ht)
        throw ConfigError(
            fmt::format("config {}: backends.{}.headers must be a table", path, iname));
      int i = 0;
      for (auto&& [hk, hv] : *ht) {
        std::string hs;
        if (!scalar_to_string(hv, hs))
          throw ConfigError(fmt::format("config {}: backends.{}.headers.{}: must be a string", path,
                                        iname, hk.str()));
        out["header.cfg" + std::to_string(i++)] = fmt::format("{}={}", hk.str(), hs);
      }
      continue;
    }
    std::string nk = bkey;
    std::replace(nk.begin(), nk.end(), '-', '_');
    cf.lines[fmt::format("backends.{}.{}", iname, nk)] = static_cast<int>(bv.source().begin.line);
    std::string s;
    if (const auto* arr = bv.as_array()) {  // tag = ["a", "b"] -> tag.0, tag.1
      std::size_t i = 0;
      for (const auto& el : *arr) {
        if (!scalar_to_string(el, s))
          throw ConfigError(
              fmt::format("config {}: backends.{}.{}: arrays may hold only strings and numbers",
                          path, iname, bkey));
        out[nk + "." + std::to_string(i++)] = s;
      }
      continue;
    }
    if (!scalar_to_string(bv, s))
      throw ConfigError(
          fmt::format("config {}: backends.{}.{}: unsupported value", path, iname, bkey));
    out[nk] = s;
  }
  if (!out.contains("type"))
    throw ConfigError(fmt::format("config {}: backends.{} needs type = \"otlp\"|...", path, iname));
}

}  // namespace

ConfigFile load_config_file(const std::string& path, bool required) {
  ConfigFile cf;
  if (!std::filesystem::exists(path)) {
    if (required) throw ConfigError(fmt::format("--config: {}: no such file", path));
    return cf;
  }
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("config {}:{}:{}: {}", path, e.source().begin.line,
                                  e.source().begin.column, e.description()));
  }
  cf.path = path;
  for (auto&& [k, v] : root) {
    const std::string key(k.str());
    if (key == "sync") {
      load_sync_table(v, path, cf);
    } else if (key == "backends") {
      const auto* t = v.as_table();
      if (!t) throw ConfigError(fmt::format("config {}: [backends] must hold tables", path));
      for (auto&& [name, bt] : *t) load_backend_table(std::string(name.str()), bt, path, cf);
    } else {
      throw ConfigError(fmt::format(
          "config {}: unknown section or key '{}' (expected [sync] and [backends.NAME])", path,
          key));
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
