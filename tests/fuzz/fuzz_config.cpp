// libFuzzer: the config file parser (load_config_file) on a temp file per input. Syntax and
// value errors must come out as ConfigError (a std::exception), never a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include "app/config/config.h"

using namespace chsync;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  static const std::string path = "/tmp/chsync-fuzz-config-" + std::to_string(getpid()) + ".toml";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(raw, 1, size, f);
  std::fclose(f);
  try {
    ConfigFile c = load_config_file(path, true);
    for (auto& [k, v] : c.sync) (void)is_secret_key(k);
  } catch (const std::exception&) {
  }
  return 0;
}
