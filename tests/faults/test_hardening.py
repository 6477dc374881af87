"""Issue 20 (hardening): the exit code never lies, and no hostile server, input or setting can hurt
a run. One test (or more) per item, named test_hNN_<item>; each failed on the code before the fix.
Hostile servers the sink cannot play (a Retry-After beyond 64 bits, a 2xx with a huge body) are a
small scripted HTTP server on 127.0.0.1 written here."""
import http.server
import json
import os
import signal
import socketserver
import subprocess
import threading
import time

from faultlib import CHSYNC, FAST_RETRY, REAL, FaultCase, clean_env, own_tests, run


def load_tests(loader, tests, pattern):
    return own_tests(loader, Hardening)


class ScriptedServer:
    """A loopback HTTP/1.1 server answering every POST with handler(n) -> (status, headers, body)."""

    def __init__(self, handler):
        outer = self
        self.requests = 0
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                with outer.lock:
                    k = outer.requests
                    outer.requests += 1
                status, headers, body = handler(k)
                self.send_response(status)
                for key, v in headers.items():
                    self.send_header(key, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.srv = S(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/v1/traces"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(timeout=10)


class Hardening(FaultCase):
    def scripted(self, handler):
        s = ScriptedServer(handler)
        self.addCleanup(s.stop)
        return s

    # ---- item 1: no silent success ----
    def test_h01a_refused_backend_until_drain_timeout_is_exit_3(self):
        """Before: the drain timeout ended the retries, spans_failed 20, errors [], exit 0."""
        d, _ = self.session_copy()
        rc, r, err = self.sync_loud(d, "http://127.0.0.1:1/v1/traces", "--retry-initial", "50ms",
                                    "--retry-max", "200ms", "--retry-max-elapsed", "10m",
                                    "--drain-timeout", "2s", timeout=60)
        self.assertEqual(rc, 3, err[-2000:])
        self.assertGreater(r["spans_failed"], 0)
        self.assertEqual(r["spans_synced"], 0)
        self.assertTrue(r["errors"], r)
        self.assertRegex(err, rf"{r['spans_failed']} spans not delivered")
        self.assertRegex(err, r"refused|drain")

    def test_h01b_503_with_long_retry_after_past_drain_timeout_is_exit_3(self):
        d, _ = self.session_copy()
        sink = self.sink("--fail-rate", "1", "--fail-status", "429", "--retry-after", "60")
        t0 = time.time()
        rc, r, err = self.sync_loud(d, sink.traces_url, "--retry-max-elapsed", "10m",
                                    "--drain-timeout", "2s", timeout=60)
        self.assertEqual(rc, 3, err[-2000:])
        self.assertLess(time.time() - t0, 30)
        self.assertGreater(r["spans_failed"], 0)
        self.assertEqual(self.status()["backends"][0]["spans_synced"], 0)

    # ---- item 2: a stop signal ends retry waits ----
    def test_h02_sigterm_while_the_backend_asks_to_wait_ends_within_seconds(self):
        """Before: send() waited for a slot while every slot slept a 60 s Retry-After."""
        d = self.gen_dir("2M", 7)
        sink = self.sink("--fail-rate", "1", "--fail-status", "503", "--retry-after", "60")
        rep = os.path.join(self.tmp, "term.json")
        p = self.popen_sync(d, sink.traces_url, "--batch-spans", "16", "--max-in-flight", "2",
                            "--retry-max-elapsed", "10m", "--drain-timeout", "20s", report=rep,
                            stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 20
            while sink.stats()["requests_total"] < 2 and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            self.assertIsNone(p.poll(), "finished before the signal")
            t0 = time.time()
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
            self.assertLess(time.time() - t0, 8, "a stop must not sit out the Retry-After")
            self.assertEqual(p.returncode, 143, err.decode()[-2000:])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        r = json.load(open(rep))
        self.assertGreater(r["spans_failed"], 0)
        self.assertEqual(r["spans_synced"], 0)

    # ---- item 3: partialSuccess is a rejection ----
    def test_h03_partial_success_rejections_counted_dead_lettered_exit_1(self):
        d, one = self.one_request_input()
        sink = self.sink("--partial-rejected", "3")
        rc, r, err = self.sync_loud(d, sink.traces_url, *one)
        self.assertEqual(rc, 1, err[-2000:])
        self.assertGreater(r["spans_rejected"], 0)
        self.assertEqual(r["spans_rejected"], r["dead_letters"])
        self.assertEqual(r["spans_synced"], 0, "no span of the request may be called delivered")
        self.assertRegex(err, r"3 spans rejected: injected partial success")
        b = self.status()["backends"][0]
        self.assertEqual(b["spans_synced"], 0)
        self.assertEqual(b["spans_rejected"], r["spans_rejected"])
        with open(os.path.join(self.tmp, "state.dead-letters.jsonl")) as f:
            recs = [json.loads(line) for line in f]
        self.assertTrue(recs)
        self.assertIn("3 spans rejected", recs[0]["reason"])

    def one_request_input(self):
        d, _ = self.session_copy()
        return d, ["--batch-spans", "100000", "--max-in-flight", "1"]

    # ---- item 4: a 2xx with a big body is a success ----
    def test_h04_2xx_with_a_body_over_4_mib_is_delivered(self):
        """Before: status 0, "body limit exceeded", dead-lettered (a replay sent duplicates)."""
        d, _ = self.session_copy()
        big = b"x" * (6 << 20)
        srv = self.scripted(lambda n: (200, {"Content-Type": "text/plain"}, big))
        rc, r, err = self.sync_loud(d, srv.url, *FAST_RETRY)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["dead_letters"], 0)
        self.assertGreater(r["spans_synced"], 0)

    # ---- item 5: Retry-After overflow ----
    def test_h05_retry_after_beyond_64_bits_ends_retries_now(self):
        """Before: secs * 1000 overflowed: 245,635 requests in 30 s."""
        d, one = self.one_request_input()
        srv = self.scripted(lambda n: (429, {"Retry-After": "9223372036854776"}, b""))
        t0 = time.time()
        rc, r, err = self.sync_loud(d, srv.url, *one, "--retry-max-elapsed", "60s", timeout=60)
        self.assertEqual(rc, 3, err[-2000:])
        self.assertLess(time.time() - t0, 20)
        self.assertLessEqual(srv.requests, 2)
        self.assertRegex(err, r"Retry-After")
        self.assertGreater(r["spans_failed"], 0)

    # ---- item 6: backend bodies are escaped and bounded ----
    def test_h06_backend_body_cannot_forge_a_summary_line(self):
        d, _ = self.session_copy()
        forged = b"denied\nchsync: 999 files scanned, 999 spans sent, 0 dead\x1b[2K" + b"x" * 4000
        srv = self.scripted(lambda n: (401, {"Content-Type": "text/plain"}, forged))
        rc, r, err = self.sync_loud(d, srv.url, *FAST_RETRY)
        self.assertEqual(rc, 3, err[-2000:])
        self.assertNotIn("\x1b", err)
        for line in err.splitlines():
            self.assertFalse(line.startswith("chsync: 999"), line)
        self.assertIn("401", err)

    # ---- item 9: header injection ----
    def test_h09_header_with_cr_lf_is_exit_2_from_every_source(self):
        d, _ = self.session_copy()
        sink = self.sink()
        args = ["sync", d, "--backend", "otlp", "--endpoint", sink.traces_url, "--db", self.db(),
                "--settle", "0", "--quiet"]
        rc, out, err = run([*args, "--header", "x-env=a\r\nX-Env-Injected: 1"])
        self.assertEqual(rc, 2, err)
        self.assertRegex(err, r"CR, LF or NUL")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHSYNC_"))}
        env["OTEL_EXPORTER_OTLP_HEADERS"] = "x-env=a%0D%0AX-Env-Injected%3A%201"
        rc, out, err = run(args, env=env)
        self.assertEqual(rc, 2, err)
        self.assertEqual(sink.stats()["requests_total"], 0)

    # ---- item 10: --print-config masks every header value and URL credential ----
    def test_h10_print_config_masks_header_values_and_url_credentials(self):
        rc, out, err = run(["sync", "/nonexistent", "--backend", "otlp", "--endpoint",
                            "http://user:hunter2@127.0.0.1:4318/v1/traces?token=tok123",
                            "--header", "x-custom-team=teamsecret", "--print-config"])
        self.assertEqual(rc, 0, err)
        for secret in ("hunter2", "tok123", "teamsecret"):
            self.assertNotIn(secret, out)
        self.assertIn("x-custom-team=****", out)

    # ---- item 11: credentials in the endpoint URL ----
    def test_h11_endpoint_credentials_are_basic_auth_and_never_printed(self):
        d, _ = self.session_copy()
        sink = self.sink("--require-basic-auth", "pk:sk")
        url = sink.traces_url.replace("http://", "http://pk:sk@")
        rc, r, err = self.sync(d, url)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertGreater(r["spans_synced"], 0)
        rc, out, err = run(["sync", d, "--backend", "otlp", "--endpoint", "http://u:hunter2@[::1",
                            "--db", self.db("x.db"), "--settle", "0"])
        self.assertEqual(rc, 2, err)
        self.assertNotIn("hunter2", err + out)

    # ---- item 12: https:// proxies ----
    def test_h12_https_proxy_is_refused_without_printing_its_password(self):
        d, _ = self.session_copy()
        sink = self.sink()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHSYNC_"))}
        for k in ("NO_PROXY", "no_proxy"):
            env.pop(k, None)
        env["HTTP_PROXY"] = "https://u:proxypw@127.0.0.1:9"
        env["http_proxy"] = env["HTTP_PROXY"]
        rc, out, err = run(["sync", d, "--backend", "otlp", "--endpoint", sink.traces_url,
                            "--db", self.db(), "--settle", "0"], env=env)
        self.assertEqual(rc, 2, err)
        self.assertIn("https:// proxies are not supported", err)
        self.assertNotIn("proxypw", err)
        self.assertEqual(sink.stats()["requests_total"], 0)

    # ---- item 15: report and status are valid JSON whatever the names ----
    def test_h15_report_and_status_escape_instance_names(self):
        d, _ = self.session_copy()
        sink = self.sink()
        cfg = os.path.join(self.tmp, "c.toml")
        with open(cfg, "w") as f:
            f.write('[backends."x\\"y"]\ntype = "otlp"\nendpoint = "%s"\n' % sink.traces_url)
        rep = os.path.join(self.tmp, "r15.json")
        rc, out, err = run(["sync", d, "--config", cfg, "--backend", 'x"y', "--db", self.db(),
                            "--settle", "0", "--report", rep, "--quiet"])
        self.assertEqual(rc, 0, err)
        with open(rep) as f:
            r = json.load(f)
        self.assertIn('sender.x"y', r["stages"])
        st = self.status()
        self.assertEqual(st["backends"][0]["backend"], 'x"y')

    # ---- item 16: file modes ----
    def test_h16_state_lock_report_output_are_0600_and_report_tmp_is_not_followed(self):
        d, _ = self.session_copy()
        sink = self.sink()
        rep = os.path.join(self.tmp, "r16.json")
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("keep")
        os.symlink(victim, rep + ".tmp")  # the old predictable temp name
        out_file = os.path.join(self.tmp, "out.jsonl")
        env = dict(os.environ)
        old = os.umask(0o022)
        try:
            rc, _, err = run(["sync", d, "--backend", "otlp", "--endpoint", sink.traces_url,
                              "--db", self.db(), "--settle", "0", "--report", rep, "--quiet"])
            self.assertEqual(rc, 0, err)
            rc, _, err = run(["sync", d, "--backend", "file", "--output", out_file,
                              "--db", self.db("f.db"), "--settle", "0", "--quiet"])
            self.assertEqual(rc, 0, err)
        finally:
            os.umask(old)
        with open(victim) as f:
            self.assertEqual(f.read(), "keep", "the report followed a planted symlink")
        for p in (self.db(), rep, out_file, self.db("f.db")):
            self.assertEqual(os.stat(p).st_mode & 0o777, 0o600, p)
        for p in os.listdir(self.tmp):
            if p.endswith(".lock"):
                self.assertEqual(os.stat(os.path.join(self.tmp, p)).st_mode & 0o777, 0o600, p)

    # ---- item 18: --insecure warns ----
    def test_h18_insecure_prints_a_warning(self):
        d, _ = self.session_copy()
        sink = self.sink()
        rc, r, err = self.sync_loud(d, sink.traces_url, "--insecure")
        self.assertEqual(rc, 0, err[-2000:])
        self.assertRegex(err, r"--insecure: TLS certificates and host names are NOT verified")

    # ---- item 14: inputs that are not regular files or directories ----
    def test_h14_fifo_and_dev_zero_inputs_are_refused_and_the_rest_is_read(self):
        d, _ = self.session_copy()
        fifo = os.path.join(self.tmp, "pipe.jsonl")
        os.mkfifo(fifo)
        zero = os.path.join(self.tmp, "zero.jsonl")
        os.symlink("/dev/zero", zero)
        sink = self.sink()
        t0 = time.time()
        rc, r, err = self.sync_loud([fifo, zero, d], sink.traces_url, timeout=60)
        self.assertLess(time.time() - t0, 30)
        self.assertEqual(rc, 1, err[-2000:])
        self.assertIn("not a regular file", err + json.dumps(r["errors"]))
        self.assertEqual(len([e for e in r["errors"] if "not a regular file" in e]), 2, r["errors"])
        self.assertGreater(r["spans_synced"], 0)

    # ---- item 7: an idle metrics client blocks nothing ----
    def test_h07_idle_metrics_client_does_not_block_scrapes_or_the_exit(self):
        import re
        import socket
        import urllib.request
        d = self.gen_dir("1M", 3)
        sink = self.sink("--latency-ms", "200")
        errlog = os.path.join(self.tmp, "m.err")
        with open(errlog, "w") as ef:
            p = subprocess.Popen(
                [CHSYNC, "sync", d, "--backend", "otlp", "--endpoint", sink.traces_url, "--settle", "0",
                 "--db", self.db(), "--batch-spans", "64", "--max-in-flight", "1",
                 "--metrics-listen", "127.0.0.1:0", "--progress-interval", "0"],
                stdout=subprocess.DEVNULL, stderr=ef, env=clean_env())
        idle = None
        try:
            url, deadline = None, time.time() + 20
            while url is None and time.time() < deadline:
                with open(errlog) as f:
                    m = re.search(r"metrics at (http://127\.0\.0\.1:(\d+)/metrics)", f.read())
                url = m.group(1) if m else None
                time.sleep(0.05)
            self.assertIsNotNone(url)
            port = int(url.split(":")[2].split("/")[0])
            idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # says nothing
            time.sleep(0.2)
            t0 = time.time()
            body = urllib.request.urlopen(url, timeout=4).read().decode()
            self.assertLess(time.time() - t0, 3, "a scrape waited for the idle client")
            self.assertIn("chsync_", body)
            rc = p.wait(timeout=120)
            self.assertEqual(rc, 0)
        finally:
            if idle:
                idle.close()
            if p.poll() is None:
                p.kill()
                p.wait()

    # ---- item 13: spool cap and zstd decoder windows ----
    def session_file(self, name, copies, session_id=None):
        """A project folder holding one session file of `copies` x the fixture (about 450 KB
        each), with the session id replaced when given (distinct sessions, distinct spans)."""
        d, src = self.session_copy(name)
        with open(src, "rb") as f:
            data = f.read()
        if not data.endswith(b"\n"):
            data += b"\n"
        old = os.path.basename(src)[:-len(".jsonl")]
        sid = session_id or old
        data = data.replace(old.encode(), sid.encode())
        os.remove(src)
        path = os.path.join(d, sid + ".jsonl")
        with open(path, "wb") as f:
            for _ in range(copies):
                f.write(data)
        return d, path

    def tar_of(self, name, files):
        import tarfile
        tar = os.path.join(self.tmp, name + ".tar")
        with tarfile.open(tar, "w") as t:
            for p in files:
                t.add(p, arcname="proj/" + os.path.basename(p))
        return tar

    def zstd_long(self, src, dst):
        """zstd --long=27 through a pipe: with the size unknown the frame keeps the 128 MiB window."""
        import shutil as sh
        if not sh.which("zstd"):
            self.fail("zstd CLI missing (scripts/install-deps installs it)")
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            subprocess.run(["zstd", "-q", "--long=27", "-3", "-c"], stdin=fin, stdout=fout,
                           check=True, timeout=120)
        return dst

    def test_h13a_member_over_max_spool_is_left_out_and_the_rest_goes_on(self):
        """Before: no cap (a 21 KB .tar.zst spooled 401 MB); --max-spool was unknown (exit 2)."""
        # ~3.7 MB (spooled at --max-memory 32MiB), a session of its own
        _, big = self.session_file("spool", 8, "00000000-0000-4000-8000-0000000000aa")
        tar = self.tar_of("spool", [big])
        d, _ = self.session_copy("plain")
        sink = self.sink()
        rc, r, err = self.sync_loud([tar, d], sink.traces_url, "--max-memory", "32MiB",
                                    "--max-spool", "1MiB", timeout=120)
        self.assertEqual(rc, 1, err[-2000:])
        member = f"{tar}!proj/{os.path.basename(big)}"
        left = [e for e in r["errors"] if "over --max-spool" in e]
        self.assertEqual(len(left), 1, r["errors"])
        self.assertTrue(left[0].startswith(member + ": left out"), left[0])
        self.assertIn(member, err)
        self.assertGreater(r["spans_synced"], 0, "the plain input was still delivered")
        # Not marked complete: with room the next run reads the member.
        rc, r2, err = self.sync_loud([tar, d], sink.traces_url, "--max-memory", "32MiB", timeout=120)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r2["files_updated"], 1, r2)  # the member; the plain file is unchanged
        self.assertGreaterEqual(r2["bytes_read"], os.path.getsize(big), r2)

    def test_h13b_members_that_fit_one_at_a_time_wait_for_the_workers(self):
        """Four sessions of ~3.7 MB, each spooled, under an 8 MiB cap with a slow backend: the
        feeder waits for the workers to read what it released instead of leaving members out."""
        files = [self.session_file(f"w{k}", 8, f"00000000-0000-4000-8000-00000000000{k}")[1]
                 for k in range(4)]
        tar = self.tar_of("wait", files)
        sink = self.sink("--latency-ms", "100")
        rc, r, err = self.sync_loud(tar, sink.traces_url, "--max-memory", "32MiB", "--max-spool",
                                    "8MiB", "--workers", "1", "--max-in-flight", "1", timeout=300)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["errors"], [])
        base = self.sink()
        rc, r0, err = self.sync_loud(tar, base.traces_url, "--max-memory", "32MiB",
                                     db=self.db("uncapped.db"), timeout=300)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["spans_synced"], r0["spans_synced"])

    def test_h13c_tar_zst_window_over_the_memory_budget_is_refused(self):
        """Before: libarchive allocated the 128 MiB window of a --long=27 .tar.zst whatever
        --max-memory said, exit 0."""
        _, f = self.session_file("win", 2)
        zst = self.zstd_long(self.tar_of("win", [f]), os.path.join(self.tmp, "win.tar.zst"))
        d, _ = self.session_copy("plain")
        sink = self.sink()
        rc, r, err = self.sync_loud([zst, d], sink.traces_url, "--max-memory", "64MiB", timeout=120)
        self.assertEqual(rc, 1, err[-2000:])
        refused = [e for e in r["errors"] if e.startswith(zst + ": decoder_window: ")]
        self.assertEqual(len(refused), 1, r["errors"])
        self.assertIn("window of 128 MiB, over the limit of 16 MiB", refused[0])
        self.assertGreater(r["spans_synced"], 0, "the plain input was still delivered")
        # With room in the budget (a quarter of 1 GiB) the same archive is read.
        rc, r, err = self.sync_loud([zst], sink.traces_url, "--max-memory", "1GiB",
                                    db=self.db("big.db"), timeout=120)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertGreater(r["spans_synced"], 0)

    def test_h13d_jsonl_zst_window_over_the_memory_budget_fails_that_file(self):
        d, f = self.session_file("zwin", 1)
        self.zstd_long(f, f + ".zst")
        os.remove(f)
        plain, _ = self.session_copy("plain")
        sink = self.sink()
        rc, r, err = self.sync_loud([d, plain], sink.traces_url, timeout=120)  # default 256MiB
        self.assertEqual(rc, 1, err[-2000:])
        refused = [e for e in r["errors"] if "decoder window of 128 MiB, over the limit of 64 MiB" in e]
        self.assertEqual(len(refused), 1, r["errors"])
        self.assertIn(os.path.basename(f) + ".zst", refused[0])
        self.assertGreater(r["spans_synced"], 0)
        rc, r, err = self.sync_loud([d], sink.traces_url, "--max-memory", "1GiB",
                                    db=self.db("big.db"), timeout=120)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertGreater(r["spans_synced"], 0)

    def test_h13e_tar_xz_dictionary_over_the_memory_budget_is_refused(self):
        """Before: libarchive's xz filter took any dictionary up to 1 GiB, exit 0 at any
        --max-memory."""
        import lzma
        _, f = self.session_file("xzwin", 2)
        with open(self.tar_of("xzwin", [f]), "rb") as fin:
            data = lzma.compress(fin.read(), format=lzma.FORMAT_XZ, preset=7)  # 16 MiB dictionary
        txz = os.path.join(self.tmp, "xzwin.tar.xz")
        with open(txz, "wb") as fout:
            fout.write(data)
        d, _ = self.session_copy("plain")
        sink = self.sink()
        rc, r, err = self.sync_loud([txz, d], sink.traces_url, "--max-memory", "32MiB", timeout=120)
        self.assertEqual(rc, 1, err[-2000:])
        refused = [e for e in r["errors"] if e.startswith(txz + ": decoder_window: xz stream needs 16.")]
        self.assertEqual(len(refused), 1, r["errors"])
        self.assertGreater(r["spans_synced"], 0, "the plain input was still delivered")
        rc, r, err = self.sync_loud([txz], sink.traces_url, db=self.db("big.db"), timeout=120)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["errors"], [])
        self.assertEqual(r["files_updated"], 1, r)

    def zip_of(self, name, members):
        """A zip written by hand (Python's zipfile cannot write method 95, nor choose the LZMA
        dictionary): members are (arcname, bytes, method, dictionary bytes), method 0 (stored),
        8 (deflate), 14 (LZMA, properties as zipfile writes them) or 95 (one .xz stream), with
        the CRC-32 and sizes in both headers."""
        import lzma
        import struct
        import zlib
        path = os.path.join(self.tmp, name + ".zip")
        body, cd = b"", b""
        for arcname, raw, method, dict_bytes in members:
            lzma2 = [{"id": lzma.FILTER_LZMA2, "dict_size": dict_bytes}]
            if method == 0:
                comp = raw
            elif method == 8:
                z = zlib.compressobj(6, zlib.DEFLATED, -15)
                comp = z.compress(raw) + z.flush()
            elif method == 95:
                comp = lzma.compress(raw, format=lzma.FORMAT_XZ, filters=lzma2)
            else:
                lzma1 = {"id": lzma.FILTER_LZMA1, "dict_size": dict_bytes}
                props = lzma._encode_filter_properties(lzma1)
                comp = (struct.pack("<BBH", 9, 4, len(props)) + props +
                        lzma.compress(raw, format=lzma.FORMAT_RAW, filters=[lzma1]))
            crc, nb, flags = zlib.crc32(raw) & 0xFFFFFFFF, arcname.encode(), 2 if method == 14 else 0
            off = len(body)
            body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 63, flags, method, 0, 0, crc, len(comp),
                                len(raw), len(nb), 0) + nb + comp
            cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 63, 63, flags, method, 0, 0, crc,
                              len(comp), len(raw), len(nb), 0, 0, 0, 0, 0, off) + nb
        eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd),
                           len(body), 0)
        with open(path, "wb") as f:
            f.write(body + cd + eocd)
        return path

    def test_h13f_zip_lzma_and_xz_members_are_decoded_within_the_memory_budget(self):
        """Before: libarchive decoded zip methods 14 (LZMA) and 95 (XZ) with liblzma's memory
        limit off, so a member could name any dictionary (up to 4 GiB) at any --max-memory."""
        sample = os.path.join(REAL, "iansherr__claude-code-log",
                              "-Users-dain-workspace-claude-code-log-sample")
        sessions = ["07f2e15c-a38b-454b-9148-60edc06de401", "12a546d1-83a7-49a6-abba-5400db340b43",
                    "326189cf-5676-4237-8cde-1ce80aae4a9f", "71c9afe9-d9cc-4583-86b3-e62ba682b83a",
                    "89488521-e2e7-4d97-bc02-38197efdddc8", "b45ad5d8-81fb-4bcb-baba-19d9f503d731"]
        members = []
        # A zip holding LZMA/XZ members is read by chsync itself, its stored and deflate members
        # too (libarchive would decode LZMA with no memory limit).
        for sid, (method, dict_bytes) in zip(sessions, [(14, 48 << 20), (95, 48 << 20),
                                                        (14, 1 << 20), (95, 1 << 20), (8, 0),
                                                        (0, 0)]):
            with open(os.path.join(sample, sid + ".jsonl"), "rb") as fin:
                members.append((f"proj/{sid}.jsonl", fin.read(), method, dict_bytes))
        z = self.zip_of("lzma-members", members)
        sink = self.sink()
        rc, r, err = self.sync_loud([z], sink.traces_url, "--max-memory", "32MiB", timeout=120)
        self.assertEqual(rc, 1, err[-2000:])
        # Members are decoded by several workers: the two errors come in either order.
        self.assertEqual(len(r["errors"]), 2, r["errors"])
        expected = [f"{z}!{members[0][0]}: decoder_window: LZMA zip member needs 48.",
                    f"{z}!{members[1][0]}: decoder_window: XZ zip member needs 48."]
        for prefix in expected:
            self.assertEqual(sum(e.startswith(prefix) for e in r["errors"]), 1,
                             (prefix, r["errors"]))
        first = r["spans_synced"]
        self.assertGreater(first, 0, "the other members were delivered")
        # Left out, not marked read: at the default --max-memory (a 64 MiB dictionary budget)
        # the next run reads exactly the two refused members ...
        rc, r, err = self.sync_loud([z], sink.traces_url, timeout=120)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["errors"], [])
        self.assertEqual(r["files_updated"], 2, r)
        second = r["spans_synced"]
        self.assertGreater(second, 0)
        # ... and the two runs together sent what one run of the same files as a directory sends.
        d = os.path.join(self.tmp, "lzma-members-dir", "proj")
        os.makedirs(d)
        for name, raw, _, _ in members:
            with open(os.path.join(d, os.path.basename(name)), "wb") as f:
                f.write(raw)
        rc, r, err = self.sync_loud([d], sink.traces_url, db=self.db("dir.db"), timeout=120)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["spans_synced"], first + second)

    def test_h13g_zip_lzma_member_with_a_wrong_crc_is_named(self):
        """The central directory's CRC-32 does not match the data: named, exit 1. Before (libarchive
        decoding), read without a word."""
        import struct
        _, f = self.session_file("zlcrc", 1)
        with open(f, "rb") as fin:
            z = self.zip_of("lzma-crc", [("proj/a.jsonl", fin.read(), 14, 1 << 20)])
        with open(z, "r+b") as fz:
            data = bytearray(fz.read())
            cd = data.rfind(b"PK\x01\x02")
            data[cd + 16:cd + 20] = struct.pack("<I", 0xDEADBEEF)
            fz.seek(0)
            fz.write(data)
        sink = self.sink()
        rc, r, err = self.sync_loud([z], sink.traces_url, timeout=120)
        self.assertEqual(rc, 1, err[-2000:])
        self.assertEqual(r["errors"], [z + "!proj/a.jsonl: truncated or corrupt archive member: "
                                           "corrupt zip member: CRC-32 mismatch"])

    def test_h13h_zip_cut_before_its_directory_reads_what_it_can_but_no_lzma_member(self):
        """A partial download: deflate members before the cut are read as before (through their
        local headers); an LZMA/XZ member is named and not read, since without the directory
        its dictionary could not be bounded (fuzz_archive_reader: such a zip made libarchive
        allocate 1 GiB)."""
        import zipfile
        sample = os.path.join(REAL, "iansherr__claude-code-log",
                              "-Users-dain-workspace-claude-code-log-sample")
        sids = ["07f2e15c-a38b-454b-9148-60edc06de401", "12a546d1-83a7-49a6-abba-5400db340b43"]
        sink = self.sink()
        for method, name in [(zipfile.ZIP_DEFLATED, "cut-deflate"), (zipfile.ZIP_LZMA, "cut-lzma")]:
            z = os.path.join(self.tmp, name + ".zip")
            with zipfile.ZipFile(z, "w", method) as zf:
                for sid in sids:
                    zf.write(os.path.join(sample, sid + ".jsonl"), f"proj/{sid}.jsonl")
            with open(z, "r+b") as f:
                f.truncate(os.path.getsize(z) - 200)  # into the central directory
            rc, r, err = self.sync_loud([z], sink.traces_url, db=self.db(name + ".db"), timeout=120)
            if method == zipfile.ZIP_DEFLATED:  # both members are whole before the cut
                self.assertEqual(rc, 0, err[-2000:])
                self.assertEqual(r["files_updated"], 2, r)
                self.assertGreater(r["spans_synced"], 0, r)
                continue
            self.assertEqual(rc, 1, err[-2000:])
            self.assertEqual(r["spans_synced"], 0, r)
            for sid in sids:
                self.assertIn(f"{z}!proj/{sid}.jsonl: truncated or corrupt archive member: member "
                              "of a zip without a readable central directory compressed with "
                              "method 14 (LZMA, XZ, PPMd, ...): not read", err)
