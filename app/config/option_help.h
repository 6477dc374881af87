// --help for the backend options, derived from the declarations (backend_registry.h): one flag may
// be declared by several backend types with different defaults, environment fallbacks or
// conditions, and its help line says each once.
#pragma once

#include <string>

#include "app/config/backend_registry.h"

namespace chsync {

// "a type name for --help": DURATION, SIZE, RATE, N, URL, TEXT, PATH, K=V, "" for a bool, or
// a|b|c for a choice.
std::string option_type_name(const OptionDecl& d);
// Help text with the default(s), the environment fallbacks and the backend types that take the
// flag appended: "Concurrent requests; default 16 (langfuse-legacy: 4) [network backends]".
std::string option_help(const OptionDecl& d);

}  // namespace chsync
