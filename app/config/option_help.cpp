// --help text derived from the declarations (app/config/option_help.h).
#include "app/config/option_help.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace chsync {
namespace {
using T = OptionType;
}  // namespace

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

}  // namespace chsync
