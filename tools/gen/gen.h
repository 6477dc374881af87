// chsync-gen: deterministic synthetic Claude Code `projects/` archive generator.
//
// Contract: the same GenOptions always produce byte-identical output (files, their order inside
// archives, their contents and the manifest). All randomness comes from xoshiro256** seeded by
// splitmix64(seed); nothing reads the clock, the environment or hash-map iteration order.
// The exact definition of every manifest key is in gen.cpp (top comment) and tools/gen/README.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace chsync::gen {

enum class Layout : std::uint8_t {
  kMixed,  // every era: 1.0.x inline, 2.0.x flat, 2.1.x subagents/ (default)
  kFlat,   // only 2.0.x sessions (flat agent-<8hex>.jsonl siblings)
  kV21,    // only 2.1.x sessions (<session>/subagents/...)
};

enum class Format : std::uint8_t {
  kDir,       // DIR/projects/... plain files
  kTar,       // DIR/projects.tar
  kTarZst,    // DIR/projects.tar.zst
  kTarGz,     // DIR/projects.tar.gz
  kZip,       // DIR/projects.zip
  kJsonlGz,   // DIR/projects/... with every .jsonl compressed to .jsonl.gz
  kJsonlZst,  // DIR/projects/... with every .jsonl compressed to .jsonl.zst
};

struct GenOptions {
  std::filesystem::path out;
  std::uint64_t target_bytes = 200ull << 20;
  std::uint64_t seed = 1;
  bool bad = false;
  Layout layout = Layout::kMixed;
  std::int64_t huge_lines = -1;  // -1: auto (one per 100 MiB of target)
  Format format = Format::kDir;
};

struct Tokens {
  std::uint64_t input = 0, cache_read = 0, cache_creation = 0, output = 0;
};

struct Manifest {
  std::uint64_t files = 0, meta_files = 0, bytes = 0, lines = 0, sessions = 0, projects = 0;
  std::uint64_t prompts = 0, api_responses = 0, partial_responses = 0, assistant_entries = 0;
  std::uint64_t tool_uses = 0, tool_errors = 0, tool_results = 0;
  std::uint64_t subagents = 0, subagents_unlinked = 0, warmups = 0, orphans = 0;
  std::uint64_t compactions = 0, system_events = 0, summaries = 0, progress = 0;
  std::uint64_t agent_progress_copies = 0, file_history_snapshots = 0, queue_operations = 0;
  std::uint64_t attachments = 0, huge_lines = 0, max_line_bytes = 0;
  Tokens tokens;
  std::map<std::string, std::uint64_t> bad_lines;  // kind -> count (only with --bad)
  std::string archive;                             // archive path relative to --out, if any

  [[nodiscard]] std::string to_json(const GenOptions& opt) const;
};

// Parses "200M", "1.5G", "64KiB", "1000" (bytes). Returns false on bad input.
bool parse_size(const std::string& text, std::uint64_t& out);

// Generates the archive. Throws std::runtime_error on I/O errors (tool code: main reports them).
Manifest generate(const GenOptions& opt);

}  // namespace chsync::gen
