"""Running it in production (issue 11): redaction, --no-content, metrics endpoint and textfile,
systemd units, the .deb package."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import (BUILD, CHSYNC, REAL, SANITIZED, SRC, TempTestCase, clean_env, json_spans,
                     load_json, run)

FIXTURE = os.path.join(SRC, "tests", "data", "fixtures", "ops")
SECRETS = ["sk-ant-api03-R2D2C3POx9yZkLmNoPqRsTuVwXyZ0123456789abcdefGHIJKLmnopQRSTuv-wxyzAA",
           "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ", "s3cr3t-P4ss"]
METRIC_LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"bad metrics line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def read(path):
    with open(path) as f:
        return f.read()


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(r.read().decode())


class RedactionTest(TempTestCase):
    def test_console_json_has_markers_not_secrets(self):
        report = os.path.join(self.tmp, "r.json")
        rc, out, err = run(["sync", FIXTURE, "--backend", "console", "--json", "--settle", "0",
                            "--dry-run", "--redact", "--redact-pattern", r"db\.internal",
                            "--report", report], check_rc=0)
        for s in SECRETS:
            self.assertNotIn(s, out)
        spans = json_spans(out)
        self.assertEqual(len(spans), 4)
        tool = [s for s in spans if s["tool_name"] == "Bash"][0]
        self.assertIn("aws_access_key_id = [REDACTED:aws_access_key]", tool["output"])
        self.assertIn("[REDACTED:aws_secret_key]", tool["tool_result"])
        self.assertIn("GITHUB_TOKEN=[REDACTED:github_token]", tool["output"])
        self.assertIn("MAX_TOKENS=4096", tool["output"])  # near-miss kept
        root = [s for s in spans if s["kind"] == "trace"][0]
        self.assertIn("postgres://app:[REDACTED:url_password]@[REDACTED:custom]:5432", root["input"])
        self.assertIn("Your sk- prefixed key looks fine; rotate the skeleton", root["output"])
        red = load_json(report)["redactions"]
        # Counted per exported field: the prompt is in the turn and the first generation.
        self.assertEqual(red["anthropic_api_key"], 2)
        self.assertEqual(red["url_password"], 2)
        self.assertEqual(red["aws_access_key"], 2)  # tool output + next generation's input
        self.assertEqual(red["custom"], 2)
        self.assertEqual(red["total"], sum(v for k, v in red.items() if k != "total"))

    def test_without_redact_secrets_pass_through(self):
        rc, out, err = run(["sync", FIXTURE, "--backend", "console", "--json", "--settle", "0",
                            "--dry-run"], check_rc=0)
        self.assertIn(SECRETS[1], out)
        self.assertNotIn("REDACTED", out)

    def test_redaction_before_truncation_hash(self):
        rc, out, err = run(["sync", FIXTURE, "--backend", "console", "--json", "--settle", "0",
                            "--dry-run", "--redact", "--max-field-bytes", "64"], check_rc=0)
        import hashlib
        rc2, full, _ = run(["sync", FIXTURE, "--backend", "console", "--json", "--settle", "0",
                            "--dry-run", "--redact"], check_rc=0)
        cut = {s["id"]: s for s in json_spans(out)}
        checked = 0
        for s in json_spans(full):
            if s["output"] and len(s["output"].encode()) > 64:
                md = cut[s["id"]]["metadata"]
                self.assertEqual(md["output_sha256"],
                                 hashlib.sha256(s["output"].encode()).hexdigest())
                checked += 1
        self.assertGreater(checked, 0, "no output longer than 64 bytes: the check never ran")

    def test_no_content_keeps_structure_and_usage(self):
        rc, out, err = run(["sync", FIXTURE, "--backend", "console", "--json", "--settle", "0",
                            "--dry-run", "--no-content"], check_rc=0)
        spans = json_spans(out)
        self.assertEqual(len(spans), 4)
        for s in spans:
            self.assertIsNone(s["input"])
            self.assertIsNone(s["output"])
            self.assertIsNone(s["tool_result"])
        for sec in SECRETS:
            self.assertNotIn(sec, out)
        gens = [s for s in spans if s["kind"] == "generation"]
        self.assertEqual(sorted(g["tokens_out"] for g in gens), [5, 15])

    def test_bad_redact_pattern_is_usage_error(self):
        rc, out, err = run(["sync", FIXTURE, "--backend", "null", "--redact-pattern", "(oops",
                            "--dry-run"])
        self.assertEqual(rc, 2)
        self.assertIn("--redact-pattern", err)

    def test_redact_patterns_are_checked_by_re2_the_engine_that_runs_them(self):
        """Before: the CLI checked them with std::regex, which refused RE2's "(?i)" (exit 2 for a
        pattern that works) and let lookaround through --print-config."""
        rc, out, err = run(["sync", FIXTURE, "--backend", "null", "--redact-pattern",
                            r"(?i)DB\.INTERNAL", "--dry-run", "--settle", "0"])
        self.assertEqual(rc, 0, err)
        rc, out, err = run(["sync", "--print-config", "--redact-pattern", r"secret(?=x)"])
        self.assertEqual(rc, 2, out)
        self.assertIn("RE2", err)


class MetricsTest(TempTestCase):
    def test_scrape_mid_run_counters_move_then_textfile(self):
        data = REAL  # thousands of spans: 250 per request, one at a time, 300 ms each -> seconds
        sink = self.sink("--latency-ms", "300")
        prom = os.path.join(self.tmp, "chsync.prom")
        errlog = os.path.join(self.tmp, "err.txt")
        with open(errlog, "wb") as ef:
            p = subprocess.Popen(
                [CHSYNC, "sync", data, "--backend", "otlp", "--endpoint", sink.traces_url,
                 "--settle", "0", "--db", self.db(), "--batch-spans", "250", "--max-in-flight", "1",
                 "--metrics-listen", "127.0.0.1:0", "--metrics-file", prom,
                 "--progress-interval", "0",
                 # A synchronous backend beside it: its stats are sampled mid-run too.
                 "--backend", "file", "--output", os.path.join(self.tmp, "spans.jsonl")],
                stdout=subprocess.DEVNULL, stderr=ef, env=clean_env())
        try:
            url = None
            # A TSan/ASan build reads and maps several times slower before the first delivery.
            deadline = time.time() + (60 if SANITIZED else 20)
            while url is None and time.time() < deadline:
                m = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", read(errlog))
                url = m.group(1) if m else None
                time.sleep(0.05)
            self.assertIsNotNone(url, read(errlog))
            key = 'chsync_spans_synced_total{backend="otlp"}'
            samples = []
            # Its own deadline: a slow start above must not eat the time the scrapes need.
            deadline = time.time() + (120 if SANITIZED else 60)
            while p.poll() is None and len(samples) < 2 and time.time() < deadline:
                try:
                    sample = scrape(url)
                except OSError:
                    break
                # The first sample once delivery has begun (else a slow start gives two zeros),
                # the second a second later: the counters must have moved in between.
                if samples or sample.get(key, 0) > 0:
                    samples.append(sample)
                time.sleep(1.0 if samples else 0.1)
            self.assertEqual(len(samples), 2, "run finished before two scrapes")
            a, b = samples
            self.assertGreater(b[key], a[key])
            req = 'chsync_requests_total{backend="otlp",status="200"}'
            self.assertGreater(b[req], a.get(req, 0))
            self.assertGreater(b['chsync_bytes_sent_total{backend="otlp"}'], 0)
            self.assertGreater(b['chsync_bytes_sent_total{backend="file"}'], 0)
            self.assertIn('chsync_in_flight_requests{backend="otlp"}', b)
            self.assertIn('chsync_queue_bytes{queue="work"}', b)
            self.assertIn('chsync_stage_blocked_seconds_total{stage="sender.otlp"}', b)
            self.assertGreater(b["chsync_files_total"], 0)
            self.assertGreater(b["chsync_run_start_timestamp_seconds"], 1.7e9)
            self.assertNotIn("chsync_last_run_exit_code", b)
            # Wrong path: 404, not a crash.
            with self.assertRaises(urllib.error.HTTPError):
                urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=5)
            rc = p.wait(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(rc, 0, read(errlog)[-2000:])
        m = parse_metrics(read(prom))
        self.assertEqual(m["chsync_last_run_exit_code"], 0)
        self.assertGreater(m["chsync_last_run_timestamp_seconds"], 1.7e9)
        self.assertGreaterEqual(m["chsync_last_run_duration_seconds"], 0.5)
        self.assertEqual(m["chsync_files_done"], m["chsync_files_total"])
        self.assertGreater(sink.stats()["spans_accepted"], 0)
        self.assertEqual(m['chsync_spans_synced_total{backend="otlp"}'], sink.stats()["spans_accepted"])
        self.assertFalse([f for f in os.listdir(self.tmp) if ".prom.tmp" in f])

    def test_textfile_records_failure_exit_code(self):
        prom = os.path.join(self.tmp, "chsync.prom")
        bad_dir = os.path.join(self.tmp, "bad")
        os.makedirs(bad_dir)
        with open(os.path.join(bad_dir, "s.jsonl"), "w") as f:
            f.write("{not json\n")
        rc, out, err = run(["sync", bad_dir, "--backend", "null", "--settle", "0", "--db",
                            self.db(), "--metrics-file", prom, "-q"])
        self.assertEqual(rc, 1)
        m = parse_metrics(read(prom))
        self.assertEqual(m["chsync_last_run_exit_code"], 1)
        self.assertEqual(m['chsync_bad_lines_total{kind="json"}'], 1)

    def test_non_loopback_listen_refused(self):
        rc, out, err = run(["sync", FIXTURE, "--backend", "null", "--dry-run",
                            "--metrics-listen", "0.0.0.0:9464"])
        self.assertEqual(rc, 2)
        self.assertIn("loopback", err)


class ReportTest(TempTestCase):
    def test_peak_rss_is_chsyncs_own_not_its_parents(self):
        """A parent that grew to 700 MB execs chsync: the report's peak_rss_kb must be chsync's
        (getrusage's ru_maxrss survives execve and reported the parent's)."""
        d = os.path.join(REAL, "marot__spotter")
        report = os.path.join(self.tmp, "r.json")
        argv = [CHSYNC, "sync", d, "--backend", "null", "--settle", "0", "--db", self.db(),
                "--quiet", "--report", report]
        grow = ("import os, sys\n"
                "x = b'a' * (700 << 20)\n"  # written, so resident
                "os.execv(sys.argv[1], sys.argv[1:])\n")
        subprocess.run(["python3", "-c", grow, *argv], check=True, timeout=120, env=clean_env())
        r = load_json(report)
        self.assertGreater(r["peak_rss_kb"], 1024)
        self.assertLess(r["peak_rss_kb"], 400 * 1024, r["peak_rss_kb"])


class UnitsTest(unittest.TestCase):
    def test_systemd_units_verify(self):
        sa = shutil.which("systemd-analyze")
        if not sa:
            self.skipTest("systemd-analyze not installed")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(SRC, "docs", "chsync.service")) as f:
                unit = f.read().replace("/usr/bin/chsync", CHSYNC)
            with open(os.path.join(d, "chsync.service"), "w") as f:
                f.write(unit)
            shutil.copy(os.path.join(SRC, "docs", "chsync.timer"), d)
            p = subprocess.run([sa, "verify", os.path.join(d, "chsync.service"),
                                os.path.join(d, "chsync.timer")], capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertNotIn(b"chsync.", p.stderr)  # no warnings about our units


@unittest.skipIf(os.environ.get("CHSYNC_SKIP_PACKAGE") == "1",
                 "packaging test skipped by CHSYNC_SKIP_PACKAGE=1")
class PackageTest(unittest.TestCase):
    def test_deb_installs_and_runs(self):
        if not shutil.which("dpkg-deb") or not shutil.which("cpack"):
            self.skipTest("dpkg-deb or cpack missing: cannot build or unpack the .deb (cpack ~10 s)")
        with tempfile.TemporaryDirectory() as d:
            p = subprocess.run(["cpack", "-G", "DEB", "-B", d], cwd=BUILD, capture_output=True,
                               timeout=600)
            self.assertEqual(p.returncode, 0, p.stdout.decode()[-3000:] + p.stderr.decode()[-3000:])
            debs = [f for f in os.listdir(d) if f.endswith(".deb")]
            self.assertEqual(len(debs), 1, os.listdir(d))
            deb = os.path.join(d, debs[0])
            info = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, timeout=60)
            fields = info.stdout.decode()
            self.assertIn("Package: chsync", fields)
            self.assertRegex(fields, r"Depends: .*libc6")
            root = os.path.join(d, "root")
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True, timeout=60)
            binary = os.path.join(root, "usr", "bin", "chsync")
            for doc in ["operations.md", "cli.md", "deploy.md"]:
                self.assertTrue(os.path.exists(os.path.join(root, "usr", "share", "doc", "chsync", doc)), doc)
            # Issue 23 point 10: the units where systemd finds them, the worker template and
            # chsync-gen packaged, node-exporter optional under ProtectSystem=strict.
            unit_dir = os.path.join(root, "usr", "lib", "systemd", "system")
            units = ["chsync.service", "chsync.timer", "chsync-worker@.service"]
            for u in units:
                self.assertTrue(os.path.isfile(os.path.join(unit_dir, u)), u)
            self.assertTrue(os.access(os.path.join(root, "usr", "bin", "chsync-gen"), os.X_OK))
            with open(os.path.join(unit_dir, "chsync.service")) as f:
                self.assertIn("ReadWritePaths=/var/lib/chsync -/var/lib/prometheus/node-exporter",
                              f.read())
            if shutil.which("systemd-analyze"):
                # --root: ExecStart=/usr/bin/chsync is looked up inside the unpacked package; the
                # worker template is verified as an instance. The root needs the system's targets
                # and slices (sysinit.target, ...) that the units' default dependencies name.
                for f in glob.glob("/usr/lib/systemd/system/*.target") + glob.glob(
                        "/usr/lib/systemd/system/*.slice"):
                    if os.path.isfile(f) and not os.path.exists(os.path.join(unit_dir, os.path.basename(f))):
                        shutil.copy(f, unit_dir)
                inst = os.path.join(d, "chsync-worker@1.service")
                shutil.copy(os.path.join(unit_dir, "chsync-worker@.service"), inst)
                va = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                                     os.path.join(unit_dir, "chsync.service"),
                                     os.path.join(unit_dir, "chsync.timer"), inst],
                                    capture_output=True, timeout=120, env=clean_env())
                self.assertEqual(va.returncode, 0, va.stderr.decode())
                self.assertNotIn("chsync", va.stderr.decode())
            elif os.environ.get("CHSYNC_REQUIRE_ALL"):
                self.fail("systemd-analyze missing")
            g = subprocess.run([binary, "bench", "--self", "--generate", "300K", "-q"],
                               capture_output=True, timeout=300, env=clean_env())
            self.assertEqual(g.returncode, 0, g.stderr.decode())  # found the packaged chsync-gen
            v = subprocess.run([binary, "version"], capture_output=True, timeout=30)
            self.assertEqual(v.returncode, 0)
            self.assertIn(b"chsync", v.stdout)
            s = subprocess.run([binary, "sync", FIXTURE, "--backend", "console", "--json",
                                "--settle", "0", "--dry-run", "--redact"], capture_output=True,
                               timeout=60, env=clean_env())
            self.assertEqual(s.returncode, 0, s.stderr.decode())
            self.assertEqual(len(json_spans(s.stdout.decode())), 4)
            self.assertIn(b"[REDACTED:aws_access_key]", s.stdout)


if __name__ == "__main__":
    unittest.main()
