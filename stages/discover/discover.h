// Discover stage: expands inputs into session bundles (transcript-format §7.3).
//
// Inputs: directories (walked recursively, symlinks to files followed, loops and broken links
// reported), single .jsonl / .jsonl.gz / .jsonl.zst files, tar / tar.gz / tgz / tar.zst / zip
// archives (listed with libarchive, never unpacked), and "-" for stdin.
// Grouping: <dir>/<session>.jsonl is a main file; <dir>/<session>/subagents/**/agent-<id>.jsonl
// (including workflows/<wf>/) belongs to that session; a flat <dir>/agent-<id>.jsonl (2.0.x) is
// assigned by the sessionId of its first entries (a short peek). Subagent files whose session has
// no main file form a bundle of their own (orphans: exported unlinked).
// Output: bundles in a deterministic order (sorted by project, session), numbered by seq.
// Errors: every unreadable path is reported through on_error with the path and counted; discovery
// continues. Filters: include/exclude globs on the display path, project and session filters.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/bundle.h"

namespace chsync {

struct DiscoverOptions {
  std::vector<std::string> include_globs;  // fnmatch on display path; empty = everything
  std::vector<std::string> exclude_globs;
  std::vector<std::string> projects;  // project folder names (exact or glob)
  std::vector<std::string> sessions;  // session ids
  bool follow_symlinks = true;
  // zstd decoder windows (.tar.zst archives, .jsonl.zst heads peeked for a session id): a frame
  // asking for more is refused (kind "decoder_window"). 0: libzstd's default limit (128 MiB).
  std::uint64_t max_decoder_window_bytes = 0;
};

struct DiscoverError {
  std::string path;
  std::string kind;  // "unreadable", "broken_symlink", "symlink_loop", "corrupt_archive",
                     // "missing", "not_a_file" (a FIFO, device or socket named as an input),
                     // "decoder_window" (a zstd archive whose window is over the budget)
  std::string message;
};

struct DiscoverResult {
  std::vector<Bundle> bundles;
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;
  std::uint64_t empty_files = 0;
  std::vector<DiscoverError> errors;
};

DiscoverResult discover(const std::vector<std::string>& inputs, const DiscoverOptions& options);

// Archive kind detection by name: tar, tar.gz, tgz, tar.zst, tar.xz, tar.bz2, zip.
bool is_archive_path(const std::string& path);

}  // namespace chsync
