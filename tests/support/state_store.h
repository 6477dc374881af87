// Shared set-up of the state-store tests: state_test.cpp (what only SQLite does) and
// state_contract_test.cpp (the StateStore contract over every store) open stores the same way
// and write the same rows before reopening them; this is the one copy of that.
//
// StateFile: a SQLite state file "state.db" in a fresh private TempDir (so parallel ctest runs
// never share one), removed with the directory. sample_file: a file row with every field set to
// a non-default value, so a field that does not round-trip shows. write_sample_rows /
// expect_sample_rows: the rows a reopened store must still hold, and the checks (gtest EXPECTs)
// that it does.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stages/state/state_store.h"
#include "tests/support/temp_dir.h"

namespace chsync::test {

class StateFile {
 public:
  explicit StateFile(std::string_view prefix = "chsync-state")
      : dir_(prefix), path_(dir_.file("state.db")) {}

  // The state database's path (not created until the first open).
  const std::string& path() const { return path_; }
  // Another file of the same directory (a copy, a second database, a mount point).
  std::string file(std::string_view name) const { return dir_.file(name); }
  std::unique_ptr<StateStore> open(const StateOpenOptions& o = {}) const {
    return open_sqlite_state(path_, o);
  }

 private:
  TempDir dir_;
  std::string path_;
};

inline FileState sample_file(std::string instance, std::string key) {
  FileState f;
  f.instance = std::move(instance);
  f.key = std::move(key);
  f.size = 12345;
  f.mtime_ms = 1700000000123;
  f.fingerprint = "abcdef0123456789";
  f.committed_offset = 12000;
  f.lines = 42;
  f.complete = true;
  f.last_sync_ms = 1700000001000;
  f.spans = 77;
  f.errors = 2;
  f.project = "proj";
  return f;
}

// Spans 3, 1, 2 delivered and the file row "a.jsonl" for `instance`.
inline void write_sample_rows(StateStore& s, const std::string& instance) {
  s.mark_delivered(instance, {3, 1, 2});
  s.put_files({sample_file(instance, "a.jsonl")});
}

// What write_sample_rows wrote, read back (by a store opened after it was closed): the spans in
// key order, one file with its bytes and errors in the totals, nothing for another instance.
inline void expect_sample_rows(StateStore& s, const std::string& instance) {
  EXPECT_EQ(s.load_delivered(instance), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_TRUE(s.load_delivered(instance + "-other").empty());
  EXPECT_EQ(s.instances(), (std::vector<std::string>{instance}));
  const StatusTotals t = s.totals(instance);
  EXPECT_EQ(t.files, 1u);
  EXPECT_EQ(t.spans_delivered, 3u);
  EXPECT_EQ(t.bytes, 12345u);
  EXPECT_EQ(t.file_errors, 2u);
  const auto row = s.file(instance, "a.jsonl");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->fingerprint, sample_file(instance, "a.jsonl").fingerprint);
}

}  // namespace chsync::test
