// Shared input for the benchmarks: a chsync-gen archive (generated once into a temp dir, or taken
// from $CHSYNC_BENCH_DATA), discovered into bundles and loaded into memory with simdjson padding.
//
// Env: CHSYNC_BENCH_DATA=DIR uses DIR as is (e.g. tests/data/real or an existing chsync-gen
// output); CHSYNC_BENCH_BYTES=64M sets the size generated otherwise (default 64M, seed 9).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/bundle.h"
#include "stages/discover/discover.h"

#ifndef CHSYNC_GEN_PATH
#define CHSYNC_GEN_PATH "chsync-gen"
#endif

namespace chsync::bench {

constexpr std::size_t kPadding = 64;  // simdjson::SIMDJSON_PADDING

struct LoadedFile {
  std::string data;  // file bytes followed by kPadding spare bytes of capacity
  std::vector<std::uint32_t> line_starts;  // byte offset of each non-empty line
  std::vector<std::uint32_t> line_sizes;
};

struct Corpus {
  std::string root;
  std::vector<Bundle> bundles;
  std::vector<std::vector<LoadedFile>> files;  // parallel to bundles[b].files
  std::uint64_t bytes = 0;
  std::uint64_t lines = 0;
};

inline std::string generate_or_locate() {
  if (const char* d = std::getenv("CHSYNC_BENCH_DATA"); d && *d) return d;
  const char* sz = std::getenv("CHSYNC_BENCH_BYTES");
  const std::string bytes = sz && *sz ? sz : "64M";
  const auto dir = std::filesystem::temp_directory_path() / ("chsync-bench-" + bytes);
  if (!std::filesystem::exists(dir / ".complete")) {
    std::filesystem::remove_all(dir);
    const std::string cmd = std::string(CHSYNC_GEN_PATH) + " --out '" + dir.string() +
                            "' --bytes " + bytes + " --seed 9 > /dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("chsync-gen failed: " + cmd);
    std::ofstream(dir / ".complete") << "ok\n";
  }
  return dir.string();
}

inline const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus r;
    r.root = generate_or_locate();
    DiscoverResult d = discover({r.root}, DiscoverOptions{});
    r.bundles = std::move(d.bundles);
    r.files.resize(r.bundles.size());
    for (std::size_t b = 0; b < r.bundles.size(); ++b) {
      for (const auto& f : r.bundles[b].files) {
        LoadedFile lf;
        std::ifstream in(f.path, std::ios::binary);
        lf.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        lf.data.reserve(lf.data.size() + kPadding);
        std::size_t pos = 0;
        while (pos < lf.data.size()) {
          std::size_t nl = lf.data.find('\n', pos);
          if (nl == std::string::npos) nl = lf.data.size();
          if (nl > pos) {
            lf.line_starts.push_back(static_cast<std::uint32_t>(pos));
            lf.line_sizes.push_back(static_cast<std::uint32_t>(nl - pos));
          }
          pos = nl + 1;
        }
        r.bytes += lf.data.size();
        r.lines += lf.line_starts.size();
        r.files[b].push_back(std::move(lf));
      }
    }
    std::fprintf(stderr, "bench corpus: %s: %zu bundles, %llu bytes, %llu lines\n", r.root.c_str(),
                 r.bundles.size(), static_cast<unsigned long long>(r.bytes),
                 static_cast<unsigned long long>(r.lines));
    return r;
  }();
  return c;
}

}  // namespace chsync::bench
