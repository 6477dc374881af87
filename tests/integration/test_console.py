"""Walking skeleton: console JSON output, reruns, bad input (issue 3)."""
import json
import os
import re
import shutil
import unittest

from harness import EXAMPLES, REAL, TempTestCase, gen, json_spans, load_json, run

KEYS = ["id", "trace_id", "parent_id", "start_time", "end_time", "kind", "name", "input",
        "output", "metadata", "model", "tokens_in", "tokens_out", "is_streaming", "tool_name",
        "tool_result", "is_error", "source_file", "source_line"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class ConsoleTest(TempTestCase):
    def check_span(self, s):
        self.assertEqual(list(s.keys()), KEYS)
        self.assertRegex(s["id"], r"^[0-9a-f]{16}$")
        self.assertRegex(s["trace_id"], r"^[0-9a-f]{32}$")
        if s["parent_id"] is not None:
            self.assertRegex(s["parent_id"], r"^[0-9a-f]{16}$")
        self.assertRegex(s["start_time"], TIME)
        self.assertRegex(s["end_time"], TIME)
        self.assertLessEqual(s["start_time"], s["end_time"])
        self.assertIn(s["kind"], ["trace", "generation", "span", "agent", "event"])
        self.assertIsInstance(s["metadata"], dict)
        self.assertIsInstance(s["tokens_in"], int)
        self.assertIsInstance(s["is_error"], bool)
        self.assertGreaterEqual(s["source_line"], 1)

    def test_corpus_json_every_span_well_formed(self):
        rc, out, err = run(["sync", REAL, "--backend", "console", "--format", "json",
                            "--settle", "0", "--dry-run", "--db", self.db()])
        self.assertEqual(rc, 0, err[-2000:])
        spans = json_spans(out)
        self.assertGreater(len(spans), 1000)
        ids = set()
        by_id = {}
        for s in spans:
            self.check_span(s)
            self.assertNotIn(s["id"], ids, "span id emitted twice")
            ids.add(s["id"])
            by_id[s["id"]] = s
        for s in spans:
            if s["parent_id"] is not None:
                self.assertIn(s["parent_id"], by_id, "orphan parent id")
                self.assertEqual(by_id[s["parent_id"]]["trace_id"], s["trace_id"])
        kinds = {s["kind"] for s in spans}
        self.assertTrue({"trace", "generation", "span", "agent", "event"} <= kinds, kinds)

    def test_same_bytes_on_second_run_and_across_worker_counts(self):
        outs = []
        for workers in ("1", "8", "1"):
            rc, out, err = run(["sync", REAL, "--json", "--settle", "0", "--dry-run",
                                "--workers", workers, "--db", self.db()])
            self.assertEqual(rc, 0, err[-2000:])
            outs.append(out)
        self.assertEqual(outs[0], outs[1])
        self.assertEqual(outs[0], outs[2])

    def test_rerun_with_state_prints_nothing(self):
        args = ["sync", EXAMPLES, "--json", "--settle", "0", "--db", self.db(),
                "--report", os.path.join(self.tmp, "r1.json")]
        rc, out, err = run(args)
        self.assertEqual(rc, 0, err)
        first = json_spans(out)
        self.assertGreater(len(first), 50)
        r1 = load_json(os.path.join(self.tmp, "r1.json"))
        self.assertEqual(r1["spans_synced"], len(first))
        args[-1] = os.path.join(self.tmp, "r2.json")
        rc, out, err = run(args)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "")
        r2 = load_json(os.path.join(self.tmp, "r2.json"))
        self.assertEqual(r2["spans_synced"], 0)
        self.assertEqual(r2["files_skipped"], r1["files_scanned"])

    def test_dry_run_writes_no_state(self):
        rc, out, err = run(["sync", EXAMPLES, "--json", "--settle", "0", "--dry-run",
                            "--db", self.db()])
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(self.db()))
        self.assertGreater(len(json_spans(out)), 50)

    def test_bad_lines_are_reported_with_file_and_line_and_counted(self):
        d = os.path.join(self.tmp, "gen")
        manifest = gen(d, "1M", 7, "--bad")
        report = os.path.join(self.tmp, "r.json")
        rc, out, err = run(["sync", d, "--backend", "null", "--settle", "0", "--db", self.db(),
                            "--report", report])
        self.assertEqual(rc, 1, "bad lines make the exit code 1")
        self.assertRegex(err, r"\.jsonl:\d+: bad line \(json\)")
        r = load_json(report)
        bad = manifest["bad_lines"]
        expected = bad["malformed_json"] + bad["nul_bytes"] + bad["truncated_final"]
        self.assertGreaterEqual(r["bad_lines"]["total"], expected - bad["truncated_final"])
        self.assertGreater(r["spans_synced"], 100, "the rest of each file is still exported")

    def test_seed_env_vars(self):
        from harness import clean_env
        env = clean_env(CLAUDE_PROJECTS_DIR=EXAMPLES, CH_SYNC_DB=self.db(),
                        CH_SYNC_BACKEND="console")
        rc, out, err = run(["sync", "--json", "--settle", "0"], env=env)
        self.assertEqual(rc, 0, err)
        self.assertGreater(len(json_spans(out)), 50)
        self.assertTrue(os.path.exists(self.db()))
        rc, out, err = run(["sync", "status"], env=env)
        self.assertEqual(rc, 0, err)
        self.assertIn("spans sent", out)

    def test_usage_errors_exit_2(self):
        for args in (["sync", "--bogus"], ["sync", "--settle", "ten"], ["sync", "--backend", "nope"],
                     ["sync", "--quiet", "--verbose"], ["frobnicate"]):
            rc, out, err = run(args)
            self.assertEqual(rc, 2, args)
            self.assertTrue(err.startswith("chsync:") or "--" in err, err)


if __name__ == "__main__":
    unittest.main()
