"""chsync bench against chsync-sink: latency accuracy, rate accuracy, no coordinated omission,
report keys, id salting and the HTML report (issue 12). Runtime: about 30 s."""
import os
import re
import shutil
import unittest

from harness import SANITIZED, REAL, TempTestCase, chromium, load_json, read_png, run, screenshot

NUMERIC_KEYS = [("latency_ms", "p50"), ("latency_ms", "p90"), ("latency_ms", "p99"),
                ("latency_ms", "p999"), ("latency_ms", "max"), ("rate", "target"),
                ("rate", "achieved"), ("bytes", "raw"), ("bytes", "sent"), ("errors", "total")]


class BenchTest(TempTestCase):
    def bench(self, sink, *args, check_rc=0, timeout=60):
        report = os.path.join(self.tmp, f"bench-{len(os.listdir(self.tmp))}.json")
        rc, out, err = run(["bench", "--quiet", "--endpoint", sink.traces_url, "--report", report,
                            *args], timeout=timeout, check_rc=check_rc)
        return load_json(report), out

    def test_p50_matches_injected_latency(self):
        # 200 ms held by the sink, 10 requests/s (2 in flight, under the default cap of 8). The
        # lower bound holds in every run: the injected wait is always part of a latency. The
        # upper one (1.5x) is about what is timed (a unit mix-up, timing the wrong thing), not
        # about the box: loopback, scheduling and a generator running behind its schedule come
        # on top: 11-12 ms of p50 over a 20 ms injection, 6-20 ms over 100 ms, at load 17 on the
        # 2-core box (20 ms at 1.5x failed three runs in a row). It must hold in one of up to
        # three runs.
        latency_ms = 200.0
        sink = self.sink("--latency-ms", str(int(latency_ms)), "--no-decode")
        seen = []
        for _ in range(3):
            rep, out = self.bench(sink, "--rate", "10/s", "--duration", "3s", "--batch-spans", "10",
                                  REAL)
            p50 = rep["latency_ms"]["p50"]
            seen.append(p50)
            self.assertGreaterEqual(p50, latency_ms - 0.1, out)
            self.assertIn("p99.9", out)
            if SANITIZED or p50 <= latency_ms * 1.5:
                break
        else:
            self.fail(f"p50 over 1.5 x {latency_ms} ms in three runs: {seen}\n{out}")

    def test_fixed_rate_is_achieved(self):
        sink = self.sink("--no-decode")
        rep, out = self.bench(sink, "--rate", "50/s", "--duration", "4s", "--batch-spans", "20", REAL)
        self.assertEqual(rep["rate"]["unit"], "requests/s")
        self.assertEqual(rep["rate"]["target"], 50)
        self.assertAlmostEqual(rep["rate"]["achieved"], 50, delta=1.0, msg=out)
        # The sink's own count agrees (open loop: every intended request is sent).
        self.assertAlmostEqual(sink.stats()["requests_total"] / 4.0, 50, delta=1.0)
        self.assertEqual(rep["status_codes"], {"200": 200})
        self.assertEqual(len(rep["timeline"]), 4)
        for sec in rep["timeline"]:
            self.assertEqual(sec["requests"], 50)

    def test_spans_rate_and_ramp(self):
        sink = self.sink("--no-decode")
        rep, _ = self.bench(sink, "--rate", "2000spans/s", "--ramp", "2s", "--duration", "3s",
                            "--batch-spans", "50", REAL)
        self.assertEqual(rep["rate"]["unit"], "spans/s")
        tl = rep["timeline"]
        # Linear ramp over 2 s: the first second carries about a quarter of the plateau.
        self.assertLess(tl[0]["spans"], tl[2]["spans"] * 0.5)
        self.assertAlmostEqual(tl[2]["spans"], 2000, delta=150)

    def test_stall_shows_in_open_loop_latencies(self):
        # One connection's worth of capacity (--concurrency 1 caps in-flight requests) and a sink
        # that holds 1% of requests for 1 s: an open-loop bench keeps its schedule and charges the
        # wait to every request queued behind a stall; a closed loop just sends fewer requests.
        sink = self.sink("--stall-ms", "1000", "--stall-rate", "0.01", "--seed", "3", "--no-decode")
        rep, out = self.bench(sink, "--rate", "50/s", "--concurrency", "1", "--duration", "4s",
                              "--batch-spans", "10", REAL)
        stalls = sink.stats()["faults_injected"]["stalls"]
        self.assertGreaterEqual(stalls, 1)
        self.assertEqual(rep["requests"]["sent"], 200, out)  # nothing omitted
        self.assertLessEqual(stalls / 200, 0.05)
        self.assertGreaterEqual(rep["latency_ms"]["p99"], 900, out)
        self.assertGreaterEqual(rep["latency_ms"]["max"], 1000, out)
        # Far more requests were slow than were stalled.
        self.assertGreaterEqual(rep["latency_ms"]["p90"], 100, out)

        sink.control(**{"clear-stats": True})
        closed, out2 = self.bench(sink, "--concurrency", "1", "--duration", "3s", "--batch-spans",
                                  "10", REAL)
        self.assertEqual(closed["mode"], "closed")
        self.assertLess(closed["latency_ms"]["p90"], 100, out2)  # the closed loop hides the wait

    def test_report_keys_and_id_salt(self):
        sink = self.sink()
        args = ["--rate", "10/s", "--duration", "1s", "--batch-spans", "512", REAL]
        rep, _ = self.bench(sink, "--id-salt", "alpha", *args)
        for a, b in NUMERIC_KEYS:
            self.assertIsInstance(rep[a][b], (int, float), f"{a}.{b}")
            self.assertNotIsInstance(rep[a][b], bool)
        self.assertEqual(rep["input"]["id_salt"], "alpha")
        self.assertGreater(rep["bytes"]["raw"], rep["bytes"]["sent"])  # gzip
        self.assertIsInstance(rep["status_codes"], dict)
        self.assertIsInstance(rep["timeline"], list)
        first = sink.spans()
        ids_a = {(s["trace_id"], s["span_id"]) for s in first}
        self.assertTrue(ids_a)
        # Parent links are re-salted consistently: every parent is a span of the run.
        span_ids = {s["span_id"] for s in first}
        parents = {s["parent_span_id"] for s in first if s["parent_span_id"]}
        self.assertLessEqual(len(parents - span_ids), len(parents) // 100 + 1)

        sink2 = self.sink()
        self.bench(sink2, "--id-salt", "alpha", *args)
        self.assertEqual({(s["trace_id"], s["span_id"]) for s in sink2.spans()}, ids_a)

        sink3 = self.sink()
        self.bench(sink3, "--id-salt", "beta", *args)
        ids_b = {(s["trace_id"], s["span_id"]) for s in sink3.spans()}
        self.assertTrue(ids_b)
        self.assertFalse(ids_a & ids_b)
        self.assertFalse({s for _, s in ids_a} & {s for _, s in ids_b})

    def test_loops_with_new_salt(self):
        sink = self.sink()
        rep, _ = self.bench(sink, "--id-salt", "x", "--rate", "40/s", "--duration", "1s",
                            "--batch-spans", "512", REAL)
        self.assertGreaterEqual(rep["input"]["loops"], 2)
        st = sink.stats()
        self.assertEqual(st["spans_duplicate"], 0)  # a second pass has fresh ids
        self.assertEqual(st["spans_unique"], rep["spans"]["sent"])

    def test_html_report(self):
        sink = self.sink("--latency-ms", "5", "--no-decode")
        html = os.path.join(self.tmp, "bench.html")
        self.bench(sink, "--rate", "20/s", "--duration", "3s", "--batch-spans", "20", "--html",
                   html, REAL)
        with open(html) as f:
            page = f.read()
        self.assertIn("<svg", page)
        for series in ("series-p50", "series-p99", "series-accepted", "series-spans"):
            self.assertIn(series, page)
        self.assertNotIn("<script", page)
        self.assertNotIn("http://", page.replace("http://www.w3.org/2000/svg", "").replace(
            sink.traces_url, ""))
        # What a browser renders: headless Chromium (scripts/install-deps) screenshots the page
        # and every chart series must show up in the pixels in its own stroke colour.
        colours = dict(re.findall(r'class="series-([\w-]+)"[^>]*?stroke="#([0-9a-fA-F]{6})"', page))
        for series in ("p50", "p99", "accepted", "spans"):
            self.assertIn(series, colours, "series without a stroke colour in the SVG")
        if not chromium():
            self.skipTest("chromium not installed (scripts/install-deps): rendering not checked")
        png = os.path.join(self.tmp, "bench.png")
        screenshot(html, png, 1100, 2200, timeout=120)
        keep = os.environ.get("CHSYNC_BENCH_SCREENSHOT")
        if keep:
            shutil.copy(png, keep)
        width, height, bpp, rows = read_png(png)
        pixels = [tuple(row[x:x + 3]) for row in rows for x in range(0, width * bpp, bpp)]
        self.assertEqual((width, height), (1100, 2200))
        counts = {}
        for px in pixels:
            counts[px] = counts.get(px, 0) + 1
        white = counts.get((255, 255, 255), 0)
        self.assertLess(white, 0.97 * width * height, "the page rendered (nearly) blank")
        for series, hexrgb in colours.items():
            rgb = tuple(int(hexrgb[i:i + 2], 16) for i in (0, 2, 4))
            self.assertGreater(counts.get(rgb, 0), 50,
                               f"series {series} (#{hexrgb}) is not visible in the screenshot")

    def test_self_mode(self):
        rc, out, err = run(["bench", "--self", "--quiet", REAL], timeout=60, check_rc=0)
        self.assertIn("spans mapped", out)
        self.assertIn("blocked ms", out)

    def test_usage_errors(self):
        rc, _, err = run(["bench", "--rate", "fast", REAL])
        self.assertEqual(rc, 2)
        self.assertIn("--rate", err)
        rc, _, err = run(["bench", "--endpoint", "http://127.0.0.1:9/v1/traces"])
        self.assertEqual(rc, 2)
        self.assertIn("INPUT", err)


if __name__ == "__main__":
    unittest.main()
