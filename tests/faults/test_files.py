"""Faults checklist, files changing under chsync: #12 appended during a run, #13 truncated /
rewritten during a run, #14 rotated / archived during a run, #15 the same records in several
files, #16 malformed line and partial last line. A writer thread changes the files while chsync
runs against a slow sink; a final run after the writer stops must leave every span of the final
content at the sink exactly once."""
import json
import os
import shutil
import subprocess
import threading
import time
import unittest

from faultlib import FaultCase, old_mtime, own_tests, td, write_lines
import test_inputs as ti


def load_tests(loader, tests, pattern):
    return own_tests(loader, FileFaults)


class Writer(threading.Thread):
    """Runs fn(writer) in a thread; re-raises its exception on join.

    fn calls writer.after_runs(n) to go on only once chsync finished n runs: the changes then
    overlap at least that many runs however slowly the box runs chsync (a writer paced by the
    clock alone could finish before chsync ran twice on a loaded machine)."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.exc = fn, None
        self.runs = 0
        self.cv = threading.Condition()

    def run(self):
        try:
            self.fn(self)
        except BaseException as e:  # noqa: BLE001
            self.exc = e

    def run_done(self):
        with self.cv:
            self.runs += 1
            self.cv.notify_all()

    def after_runs(self, n, timeout=120):
        with self.cv:
            if not self.cv.wait_for(lambda: self.runs >= n, timeout):
                raise AssertionError(f"chsync did not finish {n} runs within {timeout} s")

    def finish(self, timeout=60):
        self.join(timeout)
        if self.exc:
            raise self.exc


class FileFaults(FaultCase):
    def runs_while(self, writer, inputs, sink, *extra, max_runs=30):
        """Back-to-back runs while the writer works; returns spans_repeated summed."""
        repeated, runs = 0, 0
        writer.start()
        while writer.is_alive() and runs < max_runs:
            rc, r, err = self.sync(inputs, sink, "--settle", "2s", "--batch-spans", "16",
                                   "--max-in-flight", "2", *extra)
            self.assertIn(rc, (0, 1), err[-2000:])
            repeated += r["spans_repeated"]
            runs += 1
            writer.run_done()
        writer.finish()
        self.assertGreaterEqual(runs, 2, "the writer finished before chsync ran twice")
        return repeated

    # ---- #12 appended during a run ----
    def test_12_appended_during_runs_partial_lines_and_open_turns(self):
        d = os.path.join(self.tmp, "live", "proj")
        os.makedirs(d)
        f = os.path.join(d, "s12.jsonl")
        lines = ti.session_lines("s12", n_turns=150, text="append")
        write_lines(f, lines[:10])

        def append(w):
            with open(f, "a") as fh:
                for i, line in enumerate(lines[10:]):
                    if i in (40, 80):  # at least two runs see the file grow
                        w.after_runs(1 if i == 40 else 2)
                    half = len(line) // 2
                    fh.write(line[:half])  # a partial line is visible for a moment
                    fh.flush()
                    time.sleep(0.004)
                    fh.write(line[half:] + "\n")
                    fh.flush()
                    time.sleep(0.004)

        sink = self.sink("--latency-ms", "30")
        repeated = self.runs_while(Writer(append), d, sink)
        old_mtime(f)
        rc, r, err = self.sync(d, sink, "--settle", "2s")
        self.assertEqual(rc, 0, err)
        self.assertEqual(repeated + r["spans_repeated"], 0)
        self.assert_exactly_once(sink, self.expected_ids(d))

    # ---- #13 truncated / rewritten during a run ----
    def test_13a_truncate_and_rewrite_between_runs(self):
        td.DeliveryTest.test_truncate_and_rewrite_sends_only_new_spans(self)

    def test_13b_truncated_and_rewritten_during_runs(self):
        d = os.path.join(self.tmp, "live", "proj")
        os.makedirs(d)
        f = os.path.join(d, "s13.jsonl")
        versions = [ti.session_lines("s13", n_turns=60, text="alpha"),
                    ti.session_lines("s13", n_turns=20, text="beta"),      # shrink
                    ti.session_lines("s13b", n_turns=80, text="gamma")]    # other content
        write_lines(f, versions[0])
        ids = set()

        def rewrite(w):
            for k, v in enumerate(versions[1:]):
                time.sleep(0.4)
                w.after_runs(k + 1)  # a run of the previous version before each rewrite
                with open(f, "w") as fh:  # truncate, then write slowly
                    for line in v:
                        fh.write(line + "\n")
                        fh.flush()
                        time.sleep(0.003)

        for v in versions:
            vd = os.path.join(self.tmp, f"v{len(ids)}", "proj")
            os.makedirs(vd, exist_ok=True)
            write_lines(os.path.join(vd, "s13.jsonl"), v)
            ids |= self.expected_ids(vd)
        sink = self.sink("--latency-ms", "30")
        repeated = self.runs_while(Writer(rewrite), d, sink)
        old_mtime(f)
        rc, r, err = self.sync(d, sink, "--settle", "2s")
        self.assertEqual(rc, 0, err)
        got = self.sink_ids(sink)
        final = self.expected_ids(d)
        self.assertLessEqual(final, set(got), "content of the final version lost")
        self.assertLessEqual(set(got), ids, "spans of no version")
        self.assertEqual(len(got), len(set(got)), "a span was sent twice")
        self.assertEqual(repeated + r["spans_repeated"], 0)

    # ---- #14 rotated / moved / archived during a run ----
    def test_14_rotated_and_archived_during_runs(self):
        live = os.path.join(self.tmp, "live")
        arch = os.path.join(self.tmp, "archive")
        os.makedirs(os.path.join(live, "proj"))
        os.makedirs(os.path.join(arch, "proj"))
        files = []
        for i in range(6):
            p = os.path.join(live, "proj", f"s14-{i}.jsonl")
            write_lines(p, ti.session_lines(f"s14-{i}", n_turns=40, text=f"rot{i}"))
            old_mtime(p)
            files.append(p)
        tar = os.path.join(self.tmp, "rotated.tar")

        def rotate(w):
            for k, p in enumerate(files[:4]):
                time.sleep(0.8)
                if k in (1, 3):  # renames between runs, at least two runs during the rotation
                    w.after_runs(k // 2 + 1)
                os.rename(p, os.path.join(arch, "proj", os.path.basename(p)))
            subprocess.run(["tar", "-cf", tar, "-C", arch, "proj"], check=True, timeout=60)
            shutil.rmtree(os.path.join(arch, "proj"))

        expected = set()
        for p in files:
            expected |= self.expected_ids(p)
        sink = self.sink("--latency-ms", "40")
        repeated = self.runs_while(Writer(rotate), live, sink)
        self.assertTrue(os.path.exists(tar))
        rc, r, err = self.sync([live, tar], sink)
        self.assertEqual(rc, 0, err)
        self.assertEqual(repeated + r["spans_repeated"], 0)
        self.assert_exactly_once(sink, expected)
        self.assert_clean_rerun([live, tar], sink)

    # ---- #15 the same records in several files ----
    def test_15a_copied_session_sends_nothing_new(self):
        td.DeliveryTest.test_copied_session_sends_nothing_new(self)

    def test_15b_live_dir_archive_and_copies_in_one_run(self):
        d = self.gen_dir("2M", 151)
        expected = self.expected_ids(d)
        tar = os.path.join(self.tmp, "backup.tar")
        subprocess.run(["tar", "-cf", tar, "-C", d, "."], check=True, timeout=60)
        copy = os.path.join(self.tmp, "copy")
        shutil.copytree(d, copy)
        sink = self.sink()
        rc, r, err = self.sync([d, tar, copy], sink)
        self.assertEqual(rc, 0, err)
        self.assert_exactly_once(sink, expected)
        self.assertEqual(self.expected_ids([d, tar, copy]), expected)
        self.assert_clean_rerun([d, tar, copy], sink)

    # ---- #16 malformed line mid-file, partial last line ----
    def test_16_malformed_line_named_partial_tail_left_for_next_run(self):
        d = os.path.join(self.tmp, "live", "proj")
        os.makedirs(d)
        f = os.path.join(d, "s16.jsonl")
        lines = ti.session_lines("s16", n_turns=6)
        body = lines[:4] + ['{"type":"user","broken": [1,2'] + lines[4:-1]
        last = lines[-1]
        with open(f, "w") as fh:
            fh.write("\n".join(body) + "\n" + last[: len(last) // 2])
        old_mtime(f)
        sink = self.sink()
        rc, r, err = self.sync_loud(d, sink.traces_url)
        self.assertEqual(rc, 1, err)
        self.assertIn("s16.jsonl:5: bad line (json)", err)
        self.assertEqual(r["bad_lines"]["total"], 1)
        first = set(self.sink_ids(sink))
        self.assertGreater(len(first), 0, "the rest of the file is processed")
        # The partial tail was not consumed: completing it delivers its spans, once.
        with open(f, "a") as fh:
            fh.write(last[len(last) // 2:] + "\n")
        old_mtime(f)
        rc, r, err = self.sync(d, sink)
        self.assertIn(rc, (0, 1), err)
        self.assertGreater(r["spans_synced"], 0)
        self.assert_exactly_once(sink, self.expected_ids(d))


if __name__ == "__main__":
    unittest.main()
