// Session bundles: the unit of work and of sharding. A bundle is one main session file plus the
// subagent files that belong to it (transcript-format §7.3), so one mapper sees all of a session.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chsync {

enum class SourceKind : std::uint8_t {
  kPlain,          // a regular .jsonl file
  kGzip,           // .jsonl.gz
  kZstd,           // .jsonl.zst
  kArchiveMember,  // a member of a tar/zip archive (archive_path + member)
  kStdin,          // "-"
};

struct FileRef {
  std::string key;      // state identity: path, or archive path + "!" + member path
  std::string display;  // source_file in spans: relative to the input root, or archive!member
  std::string path;     // filesystem path (the archive itself for members)
  std::string member;   // path inside the archive (kArchiveMember)
  SourceKind kind = SourceKind::kPlain;
  std::uint64_t size = 0;     // bytes on disk (compressed size for .gz/.zst)
  std::int64_t mtime_ms = 0;  // modification time; 0 when unknown
  bool is_subagent = false;   // agent-<id>.jsonl
  std::string agent_id;       // from the file name: agent-<id>.jsonl -> <id>
  bool settles = true;        // finality by mtime applies (not for archives and stdin)
};

struct Bundle {
  std::uint64_t seq = 0;       // discovery order; stable for a given input set
  std::string session_id;      // from the main file name, or the agent files' sessionId
  std::string project;         // project folder name (encoded cwd) when known
  std::vector<FileRef> files;  // main session file first (if any), then subagent files
  std::uint64_t total_bytes() const noexcept {
    std::uint64_t n = 0;
    for (const auto& f : files) n += f.size;
    return n;
  }
};

}  // namespace chsync
