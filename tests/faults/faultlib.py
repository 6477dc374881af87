"""Shared pieces of the faults suite (issue 13): the integration harness, DeliveryTest's helpers
without its tests, and the checks every case ends with.

Every case is one test named test_NN_<fault> after the row of the checklist in
docs reliability.md ("Fault-case checklist for a bulk exporter"). Cases already covered by
tests/integration/test_delivery.py or test_inputs.py call that test's method on this class, so
`ctest -L faults` runs the whole checklist without a second copy of the code.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import test_delivery as td  # noqa: E402
import test_inputs as ti  # noqa: E402
from harness import (CHSYNC, GEN, REAL, SINK, TempTestCase, clean_env, gen, json_spans,  # noqa
                     load_json, run)

# Short retry budgets keep the suite fast; every case bounds its waits.
FAST_RETRY = ["--retry-initial", "50ms", "--retry-max", "500ms", "--retry-max-elapsed", "5s"]


def own_tests(loader, *classes):
    """Only the test_* methods a class defines itself (not the inherited integration tests)."""
    suite = unittest.TestSuite()
    for cls in classes:
        names = sorted(n for n, v in vars(cls).items() if n.startswith("test_") and callable(v))
        suite.addTests(cls(n) for n in names)
    return suite


class FaultCase(td.DeliveryTest):
    """DeliveryTest's helpers (sync, expected_ids, sink_ids, status, ...) plus fault checks."""

    def gen_dir(self, size="2M", seed=1, name="gen", *extra):
        d = os.path.join(self.tmp, name)
        gen(d, size, seed, *extra)
        return d

    def sync_loud(self, inputs, url, *extra, db=None, timeout=120):
        """Like sync() but without --quiet, so the run's messages can be checked. Returns the
        stderr followed by the stdout (spdlog warnings go to stdout)."""
        if isinstance(inputs, str):
            inputs = [inputs]
        report = os.path.join(self.tmp, f"report-{time.time_ns()}.json")
        args = ["sync", *inputs, "--backend", "otlp", "--endpoint", url, "--settle", "0",
                "--db", db or self.db(), "--report", report, "--progress-interval", "0", *extra]
        rc, out, err = run(args, timeout=timeout)
        return rc, (load_json(report) if os.path.exists(report) else None), err + out

    def popen_sync(self, inputs, url, *extra, report=None, db=None, stderr=subprocess.DEVNULL):
        if isinstance(inputs, str):
            inputs = [inputs]
        args = [CHSYNC, "sync", *inputs, "--backend", "otlp", "--endpoint", url, "--db",
                db or self.db(), "--quiet", *extra]
        if "--settle" not in extra:
            args += ["--settle", "0"]
        if report:
            args += ["--report", report]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, env=clean_env())

    def assert_no_loss(self, sink, expected, repeated_counted):
        """Nothing lost: every expected span at the sink. Nothing duplicated beyond what chsync
        counted as unknown-outcome repeats (spans_repeated over the runs)."""
        ids = self.sink_ids(sink)
        got = set(ids)
        self.assertEqual(len(expected - got), 0, f"{len(expected - got)} spans lost")
        self.assertEqual(len(got - expected), 0, f"{len(got - expected)} foreign spans")
        dup = len(ids) - len(got)
        self.assertLessEqual(dup, repeated_counted,
                             f"{dup} duplicates at the sink, only {repeated_counted} counted")
        return dup

    def assert_clean_rerun(self, inputs, sink, *extra):
        before = sink.stats()["requests_total"]
        rc, r, err = self.sync(inputs, sink, *extra)
        self.assertEqual((rc, r["spans_synced"], r["requests"]), (0, 0, 0), err[-2000:])
        self.assertEqual(sink.stats()["requests_total"], before)

    def integrity(self, db=None):
        p = subprocess.run(["sqlite3", db or self.db(), "PRAGMA integrity_check"],
                           capture_output=True, timeout=60)
        return p.stdout.decode().strip()

    def delivered_count(self, db=None):
        con = sqlite3.connect(f"file:{db or self.db()}?mode=ro", uri=True, timeout=10)
        try:
            tables = [r[0] for r in con.execute(
                "SELECT name FROM sqlite_schema WHERE name LIKE 'delivered_%'")]
            return sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
        finally:
            con.close()


class InputCase(ti.BadInputTest):
    """test_inputs' helpers (dry-run sync through the console backend, tree_with_good_file...)."""


def write_lines(path, lines, mode="w"):
    with open(path, mode) as f:
        f.write("\n".join(lines) + "\n")


def old_mtime(path, age=3600):
    t = time.time() - age
    os.utime(path, (t, t))
