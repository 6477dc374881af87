"""Faults checklist, process and state cases: #1 crash mid-batch, #2 SIGKILL during commit,
#3 SIGTERM/SIGINT, #10 disk full, #11 corrupt state, #21 two processes."""
import os
import random
import resource
import signal
import sqlite3
import subprocess
import time
import unittest

from faultlib import (CHSYNC, FAST_RETRY, FaultCase, clean_env, load_json, own_tests, run, td)


def load_tests(loader, tests, pattern):
    return own_tests(loader, ProcessFaults)


class ProcessFaults(FaultCase):
    # ---- #1 crash mid-batch: 20 SIGKILLs at random moments, then a clean run ----
    def test_01_crash_mid_batch_sigkill_loop(self):
        # Same scenario as integration.test_delivery (issue 6), run under the faults label.
        td.DeliveryTest.test_kill9_at_random_moments_then_rerun(self)

    # ---- #2 SIGKILL during the state commit ----
    def test_02_sigkill_during_commit_db_stays_consistent(self):
        """Not possible here: power loss, and a kill *inside* fsync (would need a fault-injecting
        filesystem). Nearest: tiny batches so a commit is almost always under way, SIGKILL at
        random moments; after every kill the db opens, integrity_check is ok, the WAL is what a
        later open recovers from, and the state never records more spans than the sink accepted
        (delivered is written only after the 2xx). The state runs journal_mode=WAL with
        synchronous=NORMAL (stages/state/sqlite_state.cpp): that survives a process kill; on
        power loss it may lose the last commits, which then come back as repeats, never as loss."""
        d = self.gen_dir("3M", 21)
        expected = self.expected_ids(d)
        sink = self.sink("--latency-ms", "20")
        rng = random.Random(2)
        kills, repeated, wal_seen = 0, 0, 0
        deadline = time.time() + 25
        for i in range(12):
            if time.time() > deadline:
                break
            rep = os.path.join(self.tmp, f"k{i}.json")
            p = self.popen_sync(d, sink.traces_url, "--batch-spans", "8", "--max-in-flight", "2",
                                report=rep)
            time.sleep(rng.uniform(0.05, 0.6))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(timeout=30)
            if p.returncode != -signal.SIGKILL:
                self.assertEqual(p.returncode, 0)
            # A run killed after writing its report (atomically) has already counted its repeats
            # and may have removed their in-flight records (SyncRun::run clears them only after
            # the report is on disk): its count is in the report, and nowhere else.
            if os.path.exists(rep):
                repeated += load_json(rep)["spans_repeated"]
            if os.path.exists(self.db() + "-wal"):
                wal_seen += 1
            self.assertEqual(self.integrity(), "ok", f"after kill {i}")
            con = sqlite3.connect(self.db(), timeout=10)
            self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            con.close()
            self.assertLessEqual(self.delivered_count(), sink.stats()["spans_unique"],
                                 "the state claims spans the sink never accepted")
        self.assertGreaterEqual(kills, 3)
        self.assertGreater(wal_seen, 0, "a SIGKILL should leave the WAL for recovery")
        rc, r, err = self.sync(d, sink, "--batch-spans", "64")
        self.assertEqual(rc, 0, err[-2000:])
        repeated += r["spans_repeated"]
        dup = self.assert_no_loss(sink, expected, repeated)
        self.assertEqual(self.delivered_count(), len(expected))
        self.assertEqual(self.integrity(), "ok")
        print(f"\n  #2: {kills} kills, {dup} duplicates, spans_repeated {repeated}", end=" ")
        self.assert_clean_rerun(d, sink)

    # ---- #3 SIGTERM / SIGINT ----
    def test_03a_sigterm_drains_exit_143(self):
        td.DeliveryTest.test_sigterm_drains_exits_143_and_rerun_completes(self)

    def test_03b_sigint_drains_exit_130_second_signal_hard_exit(self):
        d = self.gen_dir("3M", 31)
        expected = self.expected_ids(d)
        sink = self.sink("--latency-ms", "300")
        rep = os.path.join(self.tmp, "int.json")
        p = self.popen_sync(d, sink.traces_url, "--batch-spans", "32", "--max-in-flight", "2",
                            report=rep, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 20
            while sink.stats()["spans_accepted"] < 64 and time.time() < deadline:
                time.sleep(0.05)
            self.assertIsNone(p.poll(), "finished before the signal")
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 130, err.decode()[-2000:])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        r1 = load_json(rep)
        self.assertEqual(r1["spans_synced"], sink.stats()["spans_accepted"])
        self.assertEqual(self.status()["backends"][0]["spans_synced"], r1["spans_synced"])
        # Second signal while draining a slow request: hard exit now (#1 semantics).
        # The held requests take 10 s; a second signal that waited for the drain would take at
        # least that long, so a generous half of it still proves it did not.
        held_s = 10
        sink.control(**{"latency-ms": held_s * 1000})
        p = self.popen_sync(d, sink.traces_url, "--batch-spans", "32", "--max-in-flight", "2",
                            "--drain-timeout", "30s")
        try:
            deadline = time.time() + 10
            while sink.stats()["in_flight"] == 0 and time.time() < deadline:
                time.sleep(0.05)
            self.assertGreater(sink.stats()["in_flight"], 0, "no request reached the sink")
            p.send_signal(signal.SIGINT)
            time.sleep(0.3)
            t0 = time.time()
            p.send_signal(signal.SIGINT)
            p.wait(timeout=held_s)
            self.assertLess(time.time() - t0, held_s / 2,
                            "second signal must not wait for the drain")
            self.assertEqual(p.returncode, 130)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(self.integrity(), "ok")
        sink.control(**{"latency-ms": 0})
        # The sink finishes the held requests (they count as accepted) before the rerun compares.
        deadline = time.time() + held_s + 20
        while sink.stats()["in_flight"] > 0 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(sink.stats()["in_flight"], 0, "sink still holds requests")
        rc, r2, err = self.sync(d, sink)
        self.assertEqual(rc, 0, err[-2000:])
        self.assert_no_loss(sink, expected, r2["spans_repeated"])
        self.assert_clean_rerun(d, sink)

    # ---- #10 disk full ----
    # Two ways to fill the disk under the state database: a real 4 MiB tmpfs (needs
    # CAP_SYS_ADMIN, as CI has) or, with no mount allowed, RLIMIT_FSIZE on the chsync process
    # (SIGXFSZ ignored, so a write past the limit is cut short as on a full disk and SQLite
    # reports it). Both run wherever they can; neither is ever skipped.
    def small_fs(self, size="4m"):
        """A tmpfs mount, or None when mounting is not permitted here."""
        mnt = os.path.join(self.tmp, "small")
        os.makedirs(mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mnt],
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            print(f"\n  tmpfs mount not permitted ({p.stderr.decode().strip()}): "
                  "using RLIMIT_FSIZE", end=" ")
            return None
        self.addCleanup(lambda: subprocess.run(["umount", "-l", mnt], timeout=30))
        return mnt

    @staticmethod
    def fill(mnt, leave_kb):
        filler = os.path.join(mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(filler, max(0, os.path.getsize(filler) - leave_kb * 1024))
        return filler

    def sync_file_size_limited(self, inputs, url, limit_bytes, *extra, db):
        """sync_loud() with every file chsync writes capped at limit_bytes (RLIMIT_FSIZE). The
        odd limit makes the first write across it short, which SQLite reports as SQLITE_FULL."""
        report = os.path.join(self.tmp, f"report-{time.time_ns()}.json")
        args = [CHSYNC, "sync", *inputs, "--backend", "otlp", "--endpoint", url, "--settle", "0",
                "--db", db, "--report", report, "--progress-interval", "0", *extra]

        def limit():  # in the child: ignored signals stay ignored across exec
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        p = subprocess.run(args, capture_output=True, timeout=60, env=clean_env(),
                           preexec_fn=limit)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        r = load_json(report) if os.path.exists(report) and os.path.getsize(report) else None
        return p.returncode, r, err + out

    def disk_full_case(self, leave_kb, mount=True):
        mnt = self.small_fs() if mount else None
        if mnt is None:
            mnt = os.path.join(self.tmp, "limited")
            os.makedirs(mnt, exist_ok=True)
        db = os.path.join(mnt, "state.db")
        small = self.gen_dir("1M", 101, "small-in")
        big = self.gen_dir("4M", 102, "big-in")
        expected = self.expected_ids([small, big])
        sink = self.sink()
        rc, r, err = self.sync(small, sink, db=db)
        self.assertEqual(rc, 0, err)
        filler = None
        if os.path.ismount(mnt):
            filler = self.fill(mnt, leave_kb)
            rc, r, err = self.sync_loud([small, big], sink.traces_url, *FAST_RETRY,
                                        "--batch-spans", "64", db=db, timeout=60)
        else:
            limit = os.path.getsize(db) + leave_kb * 1024 + 123
            rc, r, err = self.sync_file_size_limited([small, big], sink.traces_url, limit,
                                                     *FAST_RETRY, "--batch-spans", "64", db=db)
        full_rc = rc
        full_msg = [l for l in err.splitlines()
                    if "full" in l.lower() or "disk" in l.lower()][:1]
        repeated = r["spans_repeated"] if r else 0
        if filler:
            os.unlink(filler)
        self.assertEqual(self.integrity(db), "ok")
        rc, r2, err2 = self.sync([small, big], sink, db=db)
        self.assertEqual(rc, 0, err2[-2000:])
        repeated += r2["spans_repeated"]
        dup = self.assert_no_loss(sink, expected, repeated)
        print(f"\n  #10 ({leave_kb} KiB free): full run exit {full_rc}: {full_msg}; "
              f"{dup} duplicates, spans_repeated {repeated}", end=" ")
        rc, r3, err = self.sync([small, big], sink, db=db)
        self.assertEqual((rc, r3["spans_synced"], r3["requests"]), (0, 0, 0), err)
        # Checked last so the recovery above is verified whatever the failing run did.
        self.assertIn(full_rc, (1, 2, 3), f"exit {full_rc}: a clean non-zero exit expected\n"
                      + err[-2000:])
        self.assertTrue(full_msg, "the message must say the disk is full\n" + err[-2000:])

    def test_10a_disk_full_at_start_refuses_cleanly(self):
        self.disk_full_case(12)

    # SQLITE_FULL at a commit in the middle of a run: a clean non-zero exit with the reason (not
    # std::terminate), and the rerun delivers the rest with repeats counted.
    def test_10b_disk_full_mid_run_fails_cleanly_rerun_sends_the_rest(self):
        self.disk_full_case(48)

    # The same without a mount (RLIMIT_FSIZE), so the case runs where mounting is not allowed.
    def test_10c_file_size_limit_mid_run_fails_cleanly_rerun_sends_the_rest(self):
        self.disk_full_case(48, mount=False)

    # ---- #11 corrupt / truncated / wrong-version state ----
    def test_11a_corrupt_state_exit_2_then_rebuild(self):
        td.DeliveryTest.test_corrupt_state_exit_2_then_rebuild(self)

    def test_11b_truncated_newer_foreign_state_and_deleted_wal(self):
        d, _ = self.session_copy()
        sink = self.sink()
        rc, r, err = self.sync(d, sink)
        self.assertEqual(rc, 0, err)
        good = self.db() + ".good"
        with open(self.db(), "rb") as f:
            data = f.read()
        with open(good, "wb") as f:
            f.write(data)
        requests = sink.stats()["requests_total"]
        # Truncated in the middle.
        with open(self.db(), "wb") as f:
            f.write(data[: len(data) // 2])
        rc, r, err = self.sync(d, sink)
        self.assertEqual(rc, 2, err)
        self.assertIn(self.db(), err)
        # A newer schema version.
        with open(self.db(), "wb") as f:
            f.write(data)
        con = sqlite3.connect(self.db())
        con.execute("PRAGMA user_version=99")
        con.commit()
        con.close()
        rc, r, err = self.sync(d, sink)
        self.assertEqual(rc, 2, err)
        self.assertRegex(err, r"(?i)newer|version")
        # Somebody else's SQLite database.
        os.unlink(self.db())
        con = sqlite3.connect(self.db())
        con.execute("CREATE TABLE t(x)")
        con.commit()
        con.close()
        rc, r, err = self.sync(d, sink)
        self.assertEqual(rc, 2, err)
        self.assertRegex(err, r"(?i)not a chsync state")
        self.assertEqual(sink.stats()["requests_total"], requests, "nothing sent on a bad state")
        # After a clean exit the WAL is checkpointed: deleting a -wal file loses nothing.
        os.unlink(self.db())
        with open(self.db(), "wb") as f:
            f.write(data)
        if os.path.exists(self.db() + "-wal"):
            os.unlink(self.db() + "-wal")
        self.assert_clean_rerun(d, sink)

    # ---- #21 two processes on one state db ----
    def test_21a_second_run_exits_4_naming_the_holder(self):
        td.DeliveryTest.test_second_concurrent_run_exits_4_naming_pid(self)

    def test_21b_simultaneous_starts_never_double_send(self):
        d = self.gen_dir("2M", 211)
        expected = self.expected_ids(d)
        sink = self.sink("--latency-ms", "100")
        codes = []
        for i in range(4):
            ps = [self.popen_sync(d, sink.traces_url, "--batch-spans", "64",
                                  "--max-in-flight", "2") for _ in range(2)]
            for p in ps:
                p.wait(timeout=60)
            codes.append(sorted(p.returncode for p in ps))
        self.assertEqual(codes[0], [0, 4], codes)
        for c in codes:
            self.assertTrue(c in ([0, 4], [0, 0]), codes)
        self.assert_exactly_once(sink, expected)


if __name__ == "__main__":
    unittest.main()
