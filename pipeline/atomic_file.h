// Whole-or-nothing file replacement for the files chsync writes for others to read (the report,
// the node-exporter metrics file).
//
// Contract: replace_file() writes content to a fresh temporary file created next to `path`
// (mkstemp: a new name, O_EXCL, never a symlink someone planted at a predictable "<path>.tmp"),
// sets its mode to `mode` (0600 unless the file is meant to be read by another user), and renames
// it over `path`. On any failure the temporary file is removed, `path` is left as it was, and
// error names the file and the reason. When `path` exists and is not a regular file (/dev/stdout,
// a FIFO), the content is written to it directly instead. Thread-safe (no shared state).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace chsync {

bool replace_file(const std::string& path, std::string_view content, mode_t mode,
                  std::string& error);

// Adds 077 to the process umask: every file and directory chsync creates (state database and its
// journal, lock, dead letters, report, --output, spool files) is private to the user unless a
// caller chooses a wider mode explicitly (fchmod, as replace_file does for the metrics file).
void restrict_umask() noexcept;

}  // namespace chsync
