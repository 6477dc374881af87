"""Scale-out (docs/deploy.md): several `chsync sync` processes sharing one PostgreSQL state, and
static sharding with `--shard K/N` without a database.

The real binaries (chsync, chsync-sink, chsync-gen) against a private PostgreSQL started by
pg_cluster.PgCluster (skipped with the reason when PostgreSQL cannot run here; CHSYNC_REQUIRE_PG=1
turns that into a failure). One chsync-gen input (~7 MB, --layout mixed, dir format: ~33 session
bundles in 3 projects) and one reference run (one process, SQLite --db, its own sink) are made
once per class; every test compares what its sinks received with that reference.

What the generator does NOT contain, and the sharding test relies on: resume copies. Every
session (and every orphan subagent file) gets a fresh random session id and no file repeats
another session's entries (tools/gen/gen.cpp), so shards must be disjoint in span ids and in
sessions. With real data, a resumed session whose copy lands in another shard's bundle is sent
by both shards (span-ID dedupe is per state).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import CHSYNC, GEN, SINK, Sink, clean_env, gen, load_json  # noqa: E402
from pg_cluster import start_or_skip  # noqa: E402

GEN_SIZE = "7M"
GEN_SEED = 11
WORKERS = 4
GROUP = "default"
RUN_TIMEOUT = 90  # seconds; each test is expected to take well under a minute


def worker_env(**extra):
    """harness.clean_env without PG* (libpq would read PGOPTIONS, PGPASSWORD...) and without
    JOB_COMPLETION_INDEX (a CI that runs as a Kubernetes Indexed Job would set it)."""
    env = {k: v for k, v in clean_env().items()
           if not k.startswith("PG") and k != "JOB_COMPLETION_INDEX"}
    env.update(extra)
    return env


def sink_ids(sink):
    return [s["span_id"].lower() for s in sink.spans()]


def session_of(span):
    return (span.get("attributes") or {}).get("session.id")


class ScaleoutCase(unittest.TestCase):
    """Shared input and reference run (and PostgreSQL server when needs_pg); per test a fresh
    database and tmp directory."""
    needs_pg = True
    pg = None

    @classmethod
    def setUpClass(cls):
        for b in (CHSYNC, SINK, GEN):
            if not os.access(b, os.X_OK):
                raise AssertionError(f"{b} is missing: build first (CHSYNC_BUILD_DIR={harness.BUILD})")
        if cls.needs_pg:
            cls.pg = start_or_skip(fast=True)
        cls.shared = tempfile.mkdtemp(prefix="chsync-scaleout-")
        try:
            cls.input = os.path.join(cls.shared, "gen")
            cls.manifest = gen(cls.input, GEN_SIZE, GEN_SEED, "--layout", "mixed")
            sink = Sink(cls.shared)
            try:
                report = os.path.join(cls.shared, "reference.json")
                rc, out, err = harness.run(
                    ["sync", cls.input, "--backend", "otlp", "--endpoint", sink.traces_url,
                     "--settle", "0", "--db", os.path.join(cls.shared, "reference.db"),
                     "--report", report, "--quiet"], timeout=RUN_TIMEOUT, env=worker_env())
                if rc != 0:
                    raise AssertionError(f"reference run exited {rc}:\n{err[-3000:]}")
                spans = sink.spans()
            finally:
                sink.stop()
            cls.reference_report = load_json(report)
            ids = [s["span_id"].lower() for s in spans]
            if len(ids) != len(set(ids)):
                raise AssertionError("the reference run delivered a span twice")
            cls.ref = set(ids)
            # Bundles the reference run mapped (the work queue carries one item per bundle): with
            # plain files, the number of work units a PostgreSQL import must register.
            cls.ref_bundles = cls.reference_report["stages"]["work_queue"]["items"]
            if len(cls.ref) < 1000 or cls.ref_bundles < 12:
                raise AssertionError(f"input too small: {len(cls.ref)} spans, "
                                     f"{cls.ref_bundles} bundles")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.pg is not None:
            cls.pg.stop()
        shutil.rmtree(cls.shared, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="chsync-so-")
        self.procs = []
        self.sinks = []
        self.env = worker_env(XDG_STATE_HOME=os.path.join(self.tmp, "xdg"),
                              XDG_CONFIG_HOME=os.path.join(self.tmp, "xdg-config"))
        self.dbname = "t_" + self._testMethodName[:50].lower()
        self.url = None

    def tearDown(self):
        for p, _, _ in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for s in self.sinks:
            s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- helpers ----
    def database(self):
        if self.url is None:
            self.url = self.pg.createdb(self.dbname)
        return self.url

    def sql(self, query):
        return self.pg.psql(query, db=self.dbname)

    def sink(self, *args):
        s = Sink(self.tmp, *args)
        self.sinks.append(s)
        return s

    def sync_args(self, sink, report, *extra):
        return ["sync", self.input, "--backend", "otlp", "--endpoint", sink.traces_url,
                "--settle", "0", "--report", report, "--quiet", "--progress-interval", "0",
                *extra]

    def start_worker(self, name, sink, *extra):
        """A `chsync sync --state URL --worker-id NAME` process; returns (popen, report path)."""
        report = os.path.join(self.tmp, f"{name}.report.json")
        err = open(os.path.join(self.tmp, f"{name}.stderr"), "wb")
        p = subprocess.Popen(
            [CHSYNC, *self.sync_args(sink, report, "--state", self.database(),
                                     "--worker-id", name, *extra)],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=self.env)
        err.close()
        self.procs.append((p, name, report))
        return p, report

    def stderr_of(self, name):
        try:
            with open(os.path.join(self.tmp, f"{name}.stderr"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-3000:]
        except OSError:
            return ""

    def wait_all(self, procs, timeout=RUN_TIMEOUT):
        """Waits for every (popen, name, report); kills all on timeout. Returns {name: rc}."""
        deadline = time.time() + timeout
        rcs = {}
        for p, name, _ in procs:
            try:
                rcs[name] = p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                for q, _, _ in procs:
                    if q.poll() is None:
                        q.kill()
                self.fail(f"worker {name} still running after {timeout}s:\n{self.stderr_of(name)}")
        return rcs

    def run_once(self, sink, *extra, env=None):
        """One chsync sync run to completion; returns (rc, report or None, stderr)."""
        report = os.path.join(self.tmp, f"run-{time.time_ns()}.json")
        p = subprocess.run([CHSYNC, *self.sync_args(sink, report, *extra)], capture_output=True,
                           timeout=RUN_TIMEOUT, env=env or self.env, stdin=subprocess.DEVNULL)
        r = load_json(report) if os.path.exists(report) else None
        return p.returncode, r, p.stderr.decode("utf-8", "replace")[-3000:]

    def status_json(self, *extra):
        p = subprocess.run([CHSYNC, "status", "--json", "--state", self.database(), *extra],
                           capture_output=True, timeout=60, env=self.env)
        self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace")[-2000:])
        return json.loads(p.stdout)

    def units(self, group=GROUP):
        """{unit_key: (status, attempts, owner worker_id)} of chsync_work. The owner column may
        hold a per-run id rather than the --worker-id; when chsync_workers has a run_id column it
        is mapped back to the worker_id."""
        cols = {r[0] for r in self.sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'chsync_workers'")}
        if "run_id" in cols:
            q = ("SELECT w.status, w.attempts, coalesce(k.worker_id, w.owner, ''), w.unit_key "
                 "FROM chsync_work w LEFT JOIN chsync_workers k ON k.run_id = w.owner "
                 f"WHERE w.work_group = '{group}'")
        else:
            q = ("SELECT status, attempts, coalesce(owner, ''), unit_key FROM chsync_work "
                 f"WHERE work_group = '{group}'")
        # The key (a path) goes last: psql separates columns with '|', which a path may contain.
        return {"|".join(r[3:]): (r[0], int(r[1]), r[2]) for r in self.sql(q)}

    def worker_rows(self):
        """{worker_id: status} from chsync_workers (the latest row per worker_id)."""
        rows = self.sql("SELECT worker_id, status FROM chsync_workers ORDER BY started_at")
        return {r[0]: r[1] for r in rows}

    def assert_reference(self, ids, what):
        got = set(ids)
        missing, extra = self.ref - got, got - self.ref
        self.assertFalse(missing or extra,
                         f"{what}: {len(missing)} reference spans missing, {len(extra)} extra "
                         f"(got {len(got)} distinct, reference {len(self.ref)})")


class WorkSharingTest(ScaleoutCase):
    # ---- a. four workers at once: the reference, exactly once, one claim per unit ----
    def test_a_four_workers_share_the_work_exactly_once(self):
        sink = self.sink()
        names = [f"w{i}" for i in range(WORKERS)]
        procs = [self.start_worker(n, sink) for n in names]
        rcs = self.wait_all(self.procs)
        for n in names:
            self.assertEqual(rcs[n], 0, f"worker {n}:\n{self.stderr_of(n)}")

        ids = sink_ids(sink)
        self.assert_reference(ids, "union of the four workers")
        dups = sum(c - 1 for c in Counter(ids).values() if c > 1)
        self.assertEqual(dups, 0, "a span was delivered twice")
        self.assertEqual(len(ids), len(self.ref))
        self.assertEqual(sink.stats()["spans_duplicate"], 0)

        reports = {n: load_json(report) for n, (_, report) in zip(names, procs)}
        units = self.units()
        self.assertEqual(len(units), self.ref_bundles,
                         "one work unit per session bundle (plain files)")
        bad = {k: v for k, v in units.items() if v[0] != "done" or v[1] != 1}
        self.assertFalse(bad, f"units not done exactly once: {list(bad.items())[:5]}")
        owners = Counter(v[2] for v in units.values())
        self.assertTrue(set(owners) <= set(names), f"unknown owners {owners}")
        for n, r in reports.items():
            self.assertEqual(r["worker_id"], n)
            self.assertEqual(r["spans_repeated"], 0, f"{n} repeated spans")
            self.assertEqual(r["units_claimed"], owners.get(n, 0),
                             f"{n}: report units_claimed vs chsync_work owners {dict(owners)}")
        self.assertEqual(sum(r["units_claimed"] for r in reports.values()), len(units))
        self.assertEqual(sum(r["spans_synced"] for r in reports.values()), len(self.ref))

        workers = self.worker_rows()
        self.assertEqual({n: workers.get(n) for n in names}, {n: "finished" for n in names})

        st = self.status_json()
        mine = [w for w in st["workers"] if w["worker_id"] in names]
        self.assertEqual(sorted(w["worker_id"] for w in mine), names)
        self.assertTrue(all(w["status"] == "finished" for w in mine), mine)
        self.assertEqual(sum(w["units_done"] for w in mine), len(units))
        self.assertEqual(sum(w["spans_sent"] for w in mine), len(self.ref))
        self.assertEqual({k: st["work"].get(k) for k in ("pending", "claimed", "done")},
                         {"pending": 0, "claimed": 0, "done": len(units)}, st["work"])
        print(f"\n  units per worker: {dict(sorted(owners.items()))}", file=sys.stderr)

    # ---- b. kill -9 one of four workers mid-run: nothing lost, repeats counted ----
    def test_b_kill9_worker_units_are_reclaimed_after_lease(self):
        sink = self.sink("--latency-ms", "50")
        names = [f"w{i}" for i in range(WORKERS)]
        # Small requests, one at a time: the run lasts several seconds, so a worker can be
        # killed while it holds leases, with a request in flight.
        # 4 s: short enough to keep the test quick, long enough that a survivor's heartbeat
        # (every lease/3) delayed on a loaded 2-core machine does not lose its own units.
        slow = ["--lease", "4s", "--batch-spans", "16", "--max-in-flight", "1"]
        procs = {n: self.start_worker(n, sink, *slow) for n in names}

        victim, victim_units = None, set()
        deadline = time.time() + 45
        while victim is None:
            self.assertLess(time.time(), deadline,
                            "no running worker held a claimed unit after the first spans arrived")
            alive = [n for n in names if procs[n][0].poll() is None]
            if not alive:
                self.fail("every worker exited before one could be killed: " + "; ".join(
                    f"{n} exit {procs[n][0].returncode}: {self.stderr_of(n)[-500:]}"
                    for n in names))
            if sink.stats()["spans_accepted"] > 0:
                held = Counter(v[2] for v in self.units().values() if v[0] == "claimed")
                cands = [n for n in alive if held.get(n)]
                if cands:
                    victim = max(cands, key=lambda n: held[n])
                    procs[victim][0].send_signal(signal.SIGKILL)
                    procs[victim][0].wait(timeout=10)
                    break
            time.sleep(0.05)
        self.assertEqual(procs[victim][0].returncode, -signal.SIGKILL)
        # What the dead worker still held: its leases expire after 4 s; the others take over.
        victim_units = {k for k, v in self.units().items()
                        if v[0] == "claimed" and v[2] == victim}
        killed_at = time.time()

        survivors = [n for n in names if n != victim]
        rcs = self.wait_all([x for x in self.procs if x[1] in survivors])
        for n in survivors:
            self.assertEqual(rcs[n], 0, f"worker {n}:\n{self.stderr_of(n)}")
        reports = {n: load_json(procs[n][1]) for n in survivors}

        ids = sink_ids(sink)
        self.assert_reference(ids, "after a kill -9 (nothing may be lost)")
        dups = sum(c - 1 for c in Counter(ids).values() if c > 1)
        repeated = sum(r["spans_repeated"] for r in reports.values())
        self.assertLessEqual(dups, repeated,
                             f"{dups} duplicate deliveries but the survivors counted only "
                             f"{repeated} repeats")

        units = self.units()
        self.assertEqual(len(units), self.ref_bundles)
        not_done = {k: v for k, v in units.items() if v[0] != "done"}
        self.assertFalse(not_done, f"units left unfinished: {list(not_done.items())[:5]}")
        retried = {k: v for k, v in units.items() if v[1] >= 2}
        if repeated > 0:
            self.assertTrue(retried, "spans_repeated > 0 but no unit was claimed twice")
        for k in victim_units:
            status, attempts, owner = units[k]
            self.assertGreaterEqual(attempts, 2, f"unit {k} of the killed worker not re-claimed")
            self.assertIn(owner, survivors, f"unit {k} finished by {owner!r}")
        for n, r in reports.items():
            self.assertEqual(r["worker_id"], n)
        self.assertGreaterEqual(sum(r["units_claimed"] for r in reports.values()),
                                len(units) - sum(1 for v in units.values() if v[2] == victim))

        workers = self.worker_rows()
        for n in survivors:
            self.assertEqual(workers.get(n), "finished", n)
        self.assertNotEqual(workers.get(victim), "finished", "a killed worker cannot finish")
        # Its heartbeat expired: `status` shows it dead and marks its row so (no longer running).
        st = self.status_json()
        shown = {w["worker_id"]: w["status"] for w in st["workers"]}
        self.assertEqual(shown.get(victim), "dead", st["workers"])
        self.assertEqual(self.worker_rows().get(victim), "dead")
        print(f"\n  killed {victim} holding {len(victim_units)} unit(s); survivors done "
              f"{time.time() - killed_at:.1f}s later; {dups} duplicate deliveries, "
              f"{repeated} spans_repeated, {len(retried)} unit(s) claimed twice",
              file=sys.stderr)

    # ---- c. a second import into the same database sends nothing ----
    def test_c_second_import_sends_nothing(self):
        sink = self.sink()
        rc, r1, err = self.run_once(sink, "--state", self.database(), "--worker-id", "first")
        self.assertEqual(rc, 0, err)
        self.assertEqual(r1["spans_synced"], len(self.ref))
        self.assertEqual(r1["worker_id"], "first")
        self.assertEqual(r1["units_claimed"], self.ref_bundles)
        self.assert_reference(sink_ids(sink), "first import")
        before = sink.stats()

        rc, r2, err = self.run_once(sink, "--state", self.database(), "--worker-id", "second")
        self.assertEqual(rc, 0, err)
        self.assertEqual(r2["spans_synced"], 0)
        self.assertEqual(r2["spans_repeated"], 0)
        after = sink.stats()
        self.assertEqual(after["requests_total"], before["requests_total"], "sink got requests")
        self.assertEqual(after["spans_accepted"], before["spans_accepted"])

        # Another work group over the same inputs: same delivery state, so still nothing new.
        rc, r3, err = self.run_once(sink, "--state", self.database(), "--worker-id", "third",
                                    "--work-group", "other")
        self.assertEqual(rc, 0, err)
        self.assertEqual(r3["spans_synced"], 0)
        self.assertEqual(sink.stats()["requests_total"], before["requests_total"])
        self.assertEqual(len(sink_ids(sink)), len(self.ref))

        # The URL from the environment instead of --state.
        env = dict(self.env, CHSYNC_STATE_URL=self.database())
        rc, r4, err = self.run_once(sink, "--worker-id", "fourth", env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(r4["spans_synced"], 0)
        self.assertEqual(r4["worker_id"], "fourth", "CHSYNC_STATE_URL did not select PostgreSQL")
        self.assertEqual(sink.stats()["requests_total"], before["requests_total"])

        st = self.status_json()
        self.assertEqual(st["work"]["pending"] + st["work"]["claimed"], 0)
        self.assertEqual(st["work"]["done"], self.ref_bundles)


    # ---- e. console output with leases: no reordering wait on bundles other workers hold ----
    def test_e_console_backend_with_leases(self):
        url = self.database()
        procs = []
        for n in ("c0", "c1"):
            out = open(os.path.join(self.tmp, f"{n}.out"), "wb")
            err = open(os.path.join(self.tmp, f"{n}.stderr"), "wb")
            p = subprocess.Popen([CHSYNC, "sync", self.input, "--backend", "console", "--format",
                                  "json", "--settle", "0", "--quiet", "--state", url,
                                  "--worker-id", n], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, env=self.env)
            out.close()
            err.close()
            procs.append((p, n, None))
            self.procs.append((p, n, None))
        rcs = self.wait_all(procs)
        ids = []
        for n in ("c0", "c1"):
            self.assertEqual(rcs[n], 0, self.stderr_of(n))
            with open(os.path.join(self.tmp, f"{n}.out")) as f:
                ids += [json.loads(line)["id"] for line in f if line.strip()]
        self.assertEqual(len(ids), len(set(ids)), "a span was printed by both workers")
        self.assert_reference(ids, "console output of two workers")

class ShardingTest(ScaleoutCase):
    needs_pg = False  # static sharding needs no database: SQLite --db per shard

    # ---- d. static sharding: disjoint shards whose union is the reference ----
    def test_d_static_shards_are_disjoint_and_complete(self):
        n = 3
        shard_spans = {}
        for k in range(n):
            sink = self.sink()
            rc, r, err = self.run_once(sink, "--shard", f"{k}/{n}",
                                       "--db", os.path.join(self.tmp, f"shard-{k}.db"))
            self.assertEqual(rc, 0, err)
            spans = sink.spans()
            shard_spans[k] = spans
            ids = [s["span_id"].lower() for s in spans]
            self.assertEqual(len(ids), len(set(ids)), f"shard {k} delivered a span twice")
            self.assertEqual(r["spans_synced"], len(ids))
            self.assertGreater(len(ids), 0, f"shard {k}/{n} got nothing of "
                               f"{self.ref_bundles} bundles")

        # --shard /N takes K from JOB_COMPLETION_INDEX (Kubernetes Indexed Job).
        sink = self.sink()
        rc, r, err = self.run_once(sink, "--shard", f"/{n}",
                                   "--db", os.path.join(self.tmp, "shard-env.db"),
                                   env=dict(self.env, JOB_COMPLETION_INDEX="1"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(sink_ids(sink)),
                         sorted(s["span_id"].lower() for s in shard_spans[1]),
                         "--shard /3 with JOB_COMPLETION_INDEX=1 differs from --shard 1/3")

        id_sets = {k: {s["span_id"].lower() for s in v} for k, v in shard_spans.items()}
        sessions = {k: {session_of(s) for s in v} for k, v in shard_spans.items()}
        for a in range(n):
            for b in range(a + 1, n):
                self.assertFalse(id_sets[a] & id_sets[b], f"shards {a} and {b} share span ids")
                # The generator has no resume copies (module docstring): a session is one
                # bundle, so it must belong to exactly one shard.
                self.assertFalse(sessions[a] & sessions[b], f"shards {a} and {b} share sessions")
        union = set().union(*id_sets.values())
        self.assert_reference(union, "union of the shards")
        self.assertEqual(sum(len(s) for s in id_sets.values()), len(self.ref))

    def test_d_invalid_shard_values_exit_2(self):
        sink = self.sink()
        db = os.path.join(self.tmp, "bad-shard.db")
        # The flag exists (so exit 2 below is about the value): one shard of one is everything.
        rc, r, err = self.run_once(self.sink(), "--shard", "0/1",
                                   "--db", os.path.join(self.tmp, "one-shard.db"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(r["spans_synced"], len(self.ref))
        cases = [(["--shard=3/3"], None), (["--shard=x"], None), (["--shard=1/0"], None),
                 (["--shard=-1/3"], None), (["--shard=1/"], None),
                 (["--shard=/3"], None),                          # no JOB_COMPLETION_INDEX
                 (["--shard=/3"], "3"), (["--shard=/3"], "abc")]
        for args, index in cases:
            env = dict(self.env)
            if index is not None:
                env["JOB_COMPLETION_INDEX"] = index
            rc, _, err = self.run_once(sink, *args, "--db", db, env=env)
            self.assertEqual(rc, 2, f"{args} JOB_COMPLETION_INDEX={index}: exit {rc}\n{err}")
        self.assertEqual(sink.stats()["requests_total"], 0)

class DatabaseCrashTest(ScaleoutCase):
    """The database crashes (immediate shutdown) while two workers send. Back within the outage
    tolerance: the workers carry on. Gone for longer: they stop with an error instead of
    hanging, and after a restart one rerun delivers the rest. Either way, what reaches the
    backend twice is at most what the reports count as possible repeats."""

    needs_pg = False  # these tests crash their own cluster

    def start_two(self, sink, url, extra):
        procs = []
        for n in ("d0", "d1"):
            report = os.path.join(self.tmp, f"{n}.report.json")
            err = open(os.path.join(self.tmp, f"{n}.stderr"), "wb")
            p = subprocess.Popen(
                [CHSYNC, *self.sync_args(sink, report, "--state", url, "--worker-id", n, *extra)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=self.env)
            err.close()
            procs.append((p, n, report))
            self.procs.append((p, n, report))
        deadline = time.time() + 30
        while sink.stats()["spans_accepted"] < 200:
            self.assertLess(time.time(), deadline, "no spans arrived")
            self.assertTrue(all(p.poll() is None for p, _, _ in procs), "a worker ended early")
            time.sleep(0.05)
        return procs

    def test_f_database_restart_is_ridden_out(self):
        """A restart shorter than the outage tolerance (max(--lease, 10 s)): the workers reconnect
        and finish (exit 0); a rerun then finds nothing left to do but what the crash lost from
        the state, and every duplicate at the backend is counted."""
        pg = start_or_skip(fast=False)
        try:
            url = pg.createdb("restart")
            sink = self.sink("--latency-ms", "100")
            # The lease outlasts the outage (deploy.md: lease >= 3 x the longest pause), so no
            # unit changes hands while its holder is alive and only waiting for the database.
            extra = ["--lease", "15s", "--batch-spans", "50", "--max-in-flight", "1",
                     "--workers", "1"]
            procs = self.start_two(sink, url, extra)
            pg.crash()
            time.sleep(1.0)
            pg.restart()
            rcs = self.wait_all(procs, timeout=90)
            for n, rc in rcs.items():
                self.assertEqual(rc, 0, f"{n} did not ride out a 1 s database restart:\n"
                                 f"{self.stderr_of(n)}")
            repeated = sum(load_json(r)["spans_repeated"] for _, _, r in procs)
            rc, r, err = self.run_once(sink, "--state", url, "--worker-id", "rerun", "--lease", "2s")
            self.assertEqual(rc, 0, err)
            repeated += r["spans_repeated"]
            ids = sink_ids(sink)
            self.assert_reference(ids, "after a database restart")
            dups = len(ids) - len(set(ids))
            self.assertLessEqual(dups, repeated, f"{dups} spans delivered twice, {repeated} counted")
            st = self.pg_status(url)
            self.assertEqual(st["work"]["pending"] + st["work"]["claimed"], 0, st["work"])
        finally:
            pg.stop()

    def test_f_database_crash_mid_run_then_rerun(self):
        pg = start_or_skip(fast=False)
        try:
            url = pg.createdb("outage")
            sink = self.sink("--latency-ms", "100")
            extra = ["--lease", "2s", "--batch-spans", "50", "--max-in-flight", "1",
                     "--workers", "1"]
            procs = self.start_two(sink, url, extra)
            pg.crash()  # and it stays down: longer than the workers' outage tolerance
            rcs = self.wait_all(procs, timeout=60)  # bounded: they must not hang on the database
            for n, rc in rcs.items():
                # One documented code for "the database stayed unreachable": 3, as for an
                # unreachable backend (chsync-worker@.service restarts it; 1 would not be).
                self.assertEqual(rc, 3, f"{n} exited {rc} after the database crashed:\n"
                                 f"{self.stderr_of(n)}")
            self.assertIn("state", self.stderr_of("d0") + self.stderr_of("d1"))
            before = sink.stats()["spans_accepted"]
            self.assertLess(before, len(self.ref), "everything was sent before the crash")
            pg.restart()
            rc, r, err = self.run_once(sink, "--state", url, "--worker-id", "rerun", "--lease", "2s")
            self.assertEqual(rc, 0, err)
            ids = sink_ids(sink)
            self.assert_reference(ids, "after a database crash and one rerun")
            dups = len(ids) - len(set(ids))
            self.assertLessEqual(dups, r["spans_repeated"],
                                 f"{dups} spans delivered twice, {r['spans_repeated']} counted")
            st = self.pg_status(url)
            self.assertEqual(st["work"]["pending"] + st["work"]["claimed"], 0, st["work"])
        finally:
            pg.stop()

    def test_f_outage_tolerance_shorter_than_the_outage_exits_3(self):
        """--state-outage-tolerance 3s with a 15 s lease (whose default tolerance would be 15 s):
        the database stays away longer than 3 s, so both workers stop with exit 3 and the
        documented message within twice the tolerance (the outage clock is the store's: the
        state calls on the way out do not wait the tolerance again each; they did, 3 x 2 s), and
        well before 15 s; after the restart one rerun delivers the rest and every duplicate is
        counted."""
        pg = start_or_skip(fast=False)
        try:
            url = pg.createdb("short_tolerance")
            sink = self.sink("--latency-ms", "100")
            extra = ["--lease", "15s", "--state-outage-tolerance", "3s", "--batch-spans", "50",
                     "--max-in-flight", "1", "--workers", "1"]
            procs = self.start_two(sink, url, extra)
            crashed_at = time.time()
            pg.crash()  # back only after the workers have given up
            rcs = self.wait_all(procs, timeout=60)
            gave_up_s = time.time() - crashed_at
            for n, rc in rcs.items():
                self.assertEqual(rc, 3, f"{n} exited {rc}:\n{self.stderr_of(n)}")
                self.assertIn("state: the shared database stayed unreachable for longer than "
                              "--state-outage-tolerance (3000 ms); stopping with exit 3",
                              self.stderr_of(n))
            self.assertLess(gave_up_s, 2 * 3, "the workers waited longer than the tolerance")
            self.assertLess(sink.stats()["spans_accepted"], len(self.ref))
            pg.restart()
            rc, r, err = self.run_once(sink, "--state", url, "--worker-id", "rerun", "--lease", "2s")
            self.assertEqual(rc, 0, err)
            ids = sink_ids(sink)
            self.assert_reference(ids, "after an outage longer than the tolerance and one rerun")
            repeated = r["spans_repeated"] + sum(load_json(rp)["spans_repeated"]
                                                 for _, _, rp in procs if os.path.exists(rp))
            dups = len(ids) - len(set(ids))
            self.assertLessEqual(dups, repeated, f"{dups} spans delivered twice, {repeated} counted")
            print(f"\n  tolerance 3s, lease 15s: both workers exited 3 {gave_up_s:.1f}s after the "
                  f"crash; {dups} duplicates, {repeated} counted", file=sys.stderr)
        finally:
            pg.stop()

    def pg_status(self, url):
        p = subprocess.run([CHSYNC, "status", "--json", "--state", url], capture_output=True,
                           timeout=60, env=self.env)
        self.assertEqual(p.returncode, 0, p.stderr.decode("utf-8", "replace")[-2000:])
        return json.loads(p.stdout)


class StateUrlUsageTest(unittest.TestCase):
    """--state errors are reported before any work, with exit 2 and no password in the text."""

    def run_chsync(self, *args):
        p = subprocess.run([CHSYNC, "sync", harness.EXAMPLES, "--backend", "null", "--settle",
                            "0", "--quiet", *args], env=worker_env(), capture_output=True,
                           timeout=RUN_TIMEOUT)
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def test_not_a_url_and_both_db_and_state_exit_2(self):
        with tempfile.TemporaryDirectory() as tmp:
            rc, err = self.run_chsync("--state", os.path.join(tmp, "x.db"))
            self.assertEqual(rc, 2, err)
            self.assertIn("postgres://", err)
            rc, err = self.run_chsync("--state", "postgresql://u@127.0.0.1:1/x", "--db",
                                      os.path.join(tmp, "x.db"))
            self.assertEqual(rc, 2, err)
            self.assertIn("--db and --state", err)

    def test_unreachable_server_exit_2_without_password(self):
        # Port 1 on loopback: nothing listens there, the connection is refused at once.
        rc, err = self.run_chsync("--state", "postgresql://chsync:s3cret@127.0.0.1:1/chsync")
        self.assertEqual(rc, 2, err)
        self.assertIn("cannot connect to PostgreSQL state", err)
        self.assertIn("127.0.0.1:1", err)
        self.assertNotIn("s3cret", err)


if __name__ == "__main__":
    unittest.main()
