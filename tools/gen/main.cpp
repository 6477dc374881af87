// chsync-gen command line: see tools/gen/README.md.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

#include "tools/gen/gen.h"

// CLI11 set-up throws only on a programming error (a duplicate option): terminating is right.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  using chsync::gen::Format;
  using chsync::gen::Layout;
  CLI::App app{"chsync-gen: deterministic synthetic Claude Code transcript archive generator"};
  chsync::gen::GenOptions opt;
  std::string out, bytes = "200M", layout = "mixed", format = "dir", manifest_path;
  app.add_option("--out", out, "output directory (created)")->required();
  app.add_option("--bytes", bytes, "JSONL bytes to write: 200M, 1G, 64KiB, ... (default 200M)");
  app.add_option("--seed", opt.seed, "PRNG seed (default 1)");
  app.add_flag("--bad", opt.bad,
               "inject malformed/invalid-UTF-8/NUL/truncated lines and an empty file");
  app.add_option("--layout", layout, "mixed|flat|v2.1 (default mixed)");
  app.add_option("--huge-lines", opt.huge_lines,
                 "number of >=500 KB image lines (default: 1 per 100 MiB)");
  app.add_option("--format", format, "dir|tar|tar.zst|tar.gz|zip|jsonl.gz|jsonl.zst (default dir)");
  app.add_option("--manifest", manifest_path, "also write the manifest JSON to this path");
  CLI11_PARSE(app, argc, argv);

  if (!chsync::gen::parse_size(bytes, opt.target_bytes)) {
    std::cerr << "chsync-gen: bad --bytes value '" << bytes << "'\n";
    return 2;
  }
  static const std::map<std::string, Layout> kLayouts{
      {"mixed", Layout::kMixed}, {"flat", Layout::kFlat}, {"v2.1", Layout::kV21}};
  static const std::map<std::string, Format> kFormats{
      {"dir", Format::kDir},           {"tar", Format::kTar}, {"tar.zst", Format::kTarZst},
      {"tar.gz", Format::kTarGz},      {"zip", Format::kZip}, {"jsonl.gz", Format::kJsonlGz},
      {"jsonl.zst", Format::kJsonlZst}};
  const auto li = kLayouts.find(layout);
  const auto fi = kFormats.find(format);
  if (li == kLayouts.end() || fi == kFormats.end()) {
    std::cerr << "chsync-gen: unknown --layout or --format\n";
    return 2;
  }
  opt.layout = li->second;
  opt.format = fi->second;
  opt.out = out;
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const chsync::gen::Manifest m = chsync::gen::generate(opt);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string json = m.to_json(opt);
    std::cout << json;
    if (!manifest_path.empty()) {
      std::ofstream f(manifest_path, std::ios::binary);
      f << json;
      if (!f) throw std::runtime_error("cannot write manifest " + manifest_path);
    }
    std::fprintf(stderr, "chsync-gen: %llu files, %.1f MB in %.2f s (%.1f MB/s)\n",
                 static_cast<unsigned long long>(m.files), static_cast<double>(m.bytes) / 1e6, secs,
                 secs > 0 ? static_cast<double>(m.bytes) / 1e6 / secs : 0.0);
  } catch (const std::exception& e) {
    std::cerr << "chsync-gen: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
