#include "stages/discover/discover.h"

#include <dirent.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <utility>

#include "pipeline/text.h"
#include "stages/reader/archive_reader.h"
#include "stages/reader/reader.h"

namespace chsync {
namespace {

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

std::string_view basename_of(std::string_view p) {
  auto pos = p.rfind('/');
  return pos == std::string_view::npos ? p : p.substr(pos + 1);
}

std::string dirname_of(std::string_view p) {
  auto pos = p.rfind('/');
  return pos == std::string_view::npos ? std::string() : std::string(p.substr(0, pos));
}

// Transcript file kinds by name; returns false for anything else.
bool transcript_kind(std::string_view name, SourceKind& kind, std::string_view& stem) {
  if (ends_with(name, ".jsonl")) {
    kind = SourceKind::kPlain;
    stem = name.substr(0, name.size() - 6);
  } else if (ends_with(name, ".jsonl.gz")) {
    kind = SourceKind::kGzip;
    stem = name.substr(0, name.size() - 9);
  } else if (ends_with(name, ".jsonl.zst")) {
    kind = SourceKind::kZstd;
    stem = name.substr(0, name.size() - 10);
  } else {
    return false;
  }
  return !stem.empty();
}

struct Candidate {
  FileRef ref;
  std::string dir;      // directory (or archive-internal directory) holding the file
  std::string stem;     // file name without extension
  std::string session;  // resolved session id
  std::string project;  // project folder name
};

// Where a subagent file belongs: <...>/<project>/<session>/subagents[/workflows/<wf>]/agent-x.
// Returns the session directory (…/<project>/<session>) or "" for flat 2.0.x siblings.
std::string session_dir_of_subagent(const std::string& dir) {
  std::string d = dir;
  for (int depth = 0; depth < 4 && !d.empty(); ++depth) {
    if (basename_of(d) == "subagents") return dirname_of(d);
    d = dirname_of(d);
  }
  return "";
}

// Peeks the first lines of a flat agent file for "sessionId" without a JSON parser: the key is a
// top-level field of every envelope, and a wrong guess only makes the file an orphan bundle.
std::string peek_session_id(std::string_view head) {
  static constexpr std::string_view kKey = "\"sessionId\":\"";
  auto pos = head.find(kKey);
  if (pos == std::string_view::npos) return "";
  pos += kKey.size();
  auto end = head.find('"', pos);
  if (end == std::string_view::npos || end - pos > 64) return "";
  return std::string(head.substr(pos, end - pos));
}

std::string read_head(const FileRef& f, std::size_t bytes, std::uint64_t max_window_bytes) {
  std::string head;
  ReaderOptions o;
  o.max_window_bytes = max_window_bytes;
  o.chunk_bytes = std::size_t{64} * 1024;
  o.max_line_bytes = std::size_t{64} * 1024;
  std::size_t lines = 0;
  read_lines(
      f, o,
      [&](std::string_view line, std::size_t, std::uint64_t, std::uint64_t, bool) {
        head.append(line.substr(0, bytes));
        head.push_back('\n');
        return ++lines < 8 && head.size() < bytes;
      },
      nullptr);
  return head;
}

// realpath(3) of path (symbolic links resolved), or path itself when it cannot be resolved.
std::string real_path_or(const std::string& path) {
  const std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr),
                                                         &std::free);
  return real ? std::string(real.get()) : path;
}

bool glob_match(const std::vector<std::string>& globs, const std::string& s) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& g) { return ::fnmatch(g.c_str(), s.c_str(), 0) == 0; });
}

class Walker {
 public:
  Walker(const DiscoverOptions& opt, DiscoverResult& res, std::vector<Candidate>& out)
      : opt_(opt), res_(res), out_(out) {}

  void walk_root(const std::string& root) {
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0) {
      error(root, errno == ENOENT ? "missing" : "unreadable", errno_text(errno));
      return;
    }
    std::string r = root;
    while (r.size() > 1 && r.back() == '/') r.pop_back();
    root_ = r;
    if (S_ISDIR(st.st_mode)) {
      walk_dir(r, 0);
    } else if (S_ISREG(st.st_mode)) {
      root_ = dirname_of(r);
      add_file(r, st);
    } else {
      // A FIFO, a device (a symlink to /dev/zero) or a socket would be read forever or block:
      // refused with a clear error, counted like any unreadable input (issue 20 #14).
      error(root, "not_a_file",
            "not a regular file or directory (a FIFO, device or socket): not read");
    }
  }

 private:
  void error(const std::string& path, const char* kind, const std::string& msg) {
    res_.errors.push_back({path, kind, msg});
  }

  void walk_dir(const std::string& dir, int depth) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return;
    auto id = std::make_pair(st.st_dev, st.st_ino);
    if (!visited_.insert(id).second) {
      error(dir, "symlink_loop", "directory already visited (symlink loop)");
      return;
    }
    if (depth > 64) {
      error(dir, "symlink_loop", "directory nesting deeper than 64");
      return;
    }
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      error(dir, "unreadable", errno_text(errno));
      return;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      names.emplace_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      std::string p = dir;
      p += '/';
      p += n;
      struct stat lst {};
      if (::lstat(p.c_str(), &lst) != 0) continue;
      if (S_ISLNK(lst.st_mode)) {
        if (::stat(p.c_str(), &st) != 0) {
          error(p, errno == ELOOP ? "symlink_loop" : "broken_symlink", errno_text(errno));
          continue;
        }
        if (!opt_.follow_symlinks) continue;
      } else {
        st = lst;
      }
      if (S_ISDIR(st.st_mode)) {
        walk_dir(p, depth + 1);
      } else if (S_ISREG(st.st_mode)) {
        add_file(p, st);
      }
    }
  }

  void add_file(const std::string& path, const struct stat& st) {
    std::string_view name = basename_of(path);
    SourceKind kind = SourceKind::kPlain;  // set by transcript_kind
    std::string_view stem;
    if (!transcript_kind(name, kind, stem)) return;
    if (::access(path.c_str(), R_OK) != 0) {
      error(path, "unreadable", errno_text(errno));
      return;
    }
    Candidate c;
    c.ref.kind = kind;
    c.ref.path = path;
    c.ref.key = real_path_or(path);
    std::string rel = path.size() > root_.size() && path.compare(0, root_.size(), root_) == 0
                          ? path.substr(root_.size() + 1)
                          : path;
    c.ref.display = rel;
    c.ref.size = static_cast<std::uint64_t>(st.st_size);
    c.ref.mtime_ms =
        static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
    c.ref.settles = true;
    c.dir = dirname_of(path);
    c.stem = std::string(stem);
    out_.push_back(std::move(c));
  }

  const DiscoverOptions& opt_;
  DiscoverResult& res_;
  std::vector<Candidate>& out_;
  std::set<std::pair<dev_t, ino_t>> visited_;
  std::string root_;
};

void list_archive(const std::string& path, const DiscoverOptions& opt, DiscoverResult& res,
                  std::vector<Candidate>& out) {
  struct stat ast {};
  ::stat(path.c_str(), &ast);
  std::string apath = real_path_or(path);
  ArchiveReader ar(path, opt.max_decoder_window_bytes);
  // A zstd window over the budget is not damage: the archive is refused (members listed before
  // a later frame asked for it are kept and read up to there, like a cut archive).
  auto damaged = [&](const char* fallback) {
    res.errors.push_back(
        {path, ar.window_refused() ? "decoder_window" : "corrupt_archive", ar.error(fallback)});
  };
  if (!ar.is_open()) {
    damaged("cannot open");
    return;
  }
  ArchiveEntry e;
  for (;;) {
    const auto next = ar.next(e);
    if (next == ArchiveReader::Next::kEnd) break;
    if (next == ArchiveReader::Next::kDamaged) {
      damaged("bad header");
      break;
    }
    if (!e.regular) continue;
    const std::string& member = e.name;
    std::string_view name = basename_of(member);
    SourceKind kind = SourceKind::kPlain;  // set by transcript_kind
    std::string_view stem;
    if (!transcript_kind(name, kind, stem) || kind != SourceKind::kPlain) {
      ar.skip();
      continue;
    }
    Candidate c;
    c.ref.kind = SourceKind::kArchiveMember;
    c.ref.path = path;
    c.ref.member = member;
    c.ref.key = apath;
    c.ref.key += '!';
    c.ref.key += member;
    c.ref.display = path;
    c.ref.display += '!';
    c.ref.display += member;
    c.ref.size = e.size;
    c.ref.mtime_ms = e.mtime_s * 1000;
    c.ref.settles = false;  // archived files are final by definition
    c.dir = dirname_of(member);
    c.stem = std::string(stem);
    if (c.stem.rfind("agent-", 0) == 0 && session_dir_of_subagent(c.dir).empty()) {
      // Flat 2.0.x sibling: peek its first bytes for the parent sessionId.
      std::string head(std::size_t{64} * 1024, '\0');
      const long n = ar.read(head.data(), head.size());
      head.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
      c.session = peek_session_id(head);
    }
    if (!ar.skip()) {
      // The member's data is cut or damaged: lines before the damage are still read by the
      // feeder, so the member is listed, and the archive is reported once, here.
      out.push_back(std::move(c));
      damaged("bad data");
      break;
    }
    out.push_back(std::move(c));
  }
}

}  // namespace

bool is_archive_path(const std::string& p) {
  return ends_with(p, ".tar") || ends_with(p, ".tar.gz") || ends_with(p, ".tgz") ||
         ends_with(p, ".tar.zst") || ends_with(p, ".tzst") || ends_with(p, ".tar.xz") ||
         ends_with(p, ".tar.bz2") || ends_with(p, ".zip");
}

DiscoverResult discover(const std::vector<std::string>& inputs, const DiscoverOptions& options) {
  DiscoverResult res;
  // Candidates per input, grouped independently: a bundle never spans two inputs.
  std::vector<Bundle> bundles;
  for (const auto& input : inputs) {
    std::vector<Candidate> cands;
    if (input == "-") {
      Candidate c;
      c.ref.kind = SourceKind::kStdin;
      c.ref.key = "-";
      c.ref.display = "-";
      c.ref.path = "-";
      c.ref.settles = false;
      c.stem = "stdin";
      cands.push_back(std::move(c));
    } else if (is_archive_path(input)) {
      list_archive(input, options, res, cands);
    } else {
      Walker w(options, res, cands);
      w.walk_root(input);
    }

    // Resolve each candidate's session and project.
    for (auto& c : cands) {
      const bool agent = c.stem.rfind("agent-", 0) == 0;
      if (agent) {
        c.ref.is_subagent = true;
        c.ref.agent_id = c.stem.substr(6);
        std::string sdir = session_dir_of_subagent(c.dir);
        if (!sdir.empty()) {
          c.session = std::string(basename_of(sdir));
          c.project = std::string(basename_of(dirname_of(sdir)));
          c.dir = dirname_of(sdir);
        } else {
          c.project = std::string(basename_of(c.dir));
          if (c.session.empty() && c.ref.kind != SourceKind::kArchiveMember)
            c.session = peek_session_id(
                read_head(c.ref, std::size_t{16} * 1024, options.max_decoder_window_bytes));
        }
      } else {
        c.session = c.stem;
        c.project = std::string(basename_of(c.dir));
      }
    }

    // Group: (dir, session) -> bundle. Main file first, then subagents sorted by path.
    std::map<std::pair<std::string, std::string>, std::vector<Candidate*>> groups;
    for (auto& c : cands) {
      std::string sess = c.session.empty() ? "orphan:" + c.ref.key : c.session;
      groups[{c.dir, sess}].push_back(&c);
    }
    for (auto& [k, members] : groups) {
      std::stable_sort(members.begin(), members.end(), [](const Candidate* a, const Candidate* b) {
        if (a->ref.is_subagent != b->ref.is_subagent) return !a->ref.is_subagent;
        return a->ref.display < b->ref.display;
      });
      Bundle b;
      b.session_id = members.front()->session;
      b.project = members.front()->project;
      for (auto* c : members) b.files.push_back(std::move(c->ref));
      bundles.push_back(std::move(b));
    }
  }

  // Filters.
  for (auto& b : bundles) {
    if (!options.projects.empty() && !glob_match(options.projects, b.project)) continue;
    if (!options.sessions.empty() && !glob_match(options.sessions, b.session_id)) continue;
    std::vector<FileRef> kept;
    for (auto& f : b.files) {
      if (!options.include_globs.empty() && !glob_match(options.include_globs, f.display)) continue;
      if (glob_match(options.exclude_globs, f.display)) continue;
      kept.push_back(std::move(f));
    }
    if (kept.empty()) continue;
    b.files = std::move(kept);
    for (auto& f : b.files) {
      ++res.files;
      res.bytes += f.size;
      if (f.size == 0 && f.kind != SourceKind::kStdin) ++res.empty_files;
    }
    b.seq = res.bundles.size();
    res.bundles.push_back(std::move(b));
  }
  return res;
}

}  // namespace chsync
