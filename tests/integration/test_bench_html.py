"""`chsync bench` (issue 23 points 7 and 11): honest numbers against a dead endpoint, and the HTML
page rendered in headless Chromium (screenshot decoded and checked not blank)."""
import json
import os
import re
import time
import unittest

from harness import EXAMPLES, TempTestCase, chromium, clean_env, read_png, run, screenshot


class BenchHonestyTest(TempTestCase):
    """Point 7: a dead endpoint is reported as such."""

    def test_dead_endpoint_leads_with_errors_stops_early_exit_3(self):
        url = self.refused_url()  # held for the test: no other test's sink can take the port
        t0 = time.time()
        rc, out, err = run(["bench", "--endpoint", url, "--rate", "100/s", "--duration", "20s",
                            "--batch-spans", "64", "-q", "--report", os.path.join(self.tmp, "r.json"),
                            EXAMPLES])
        took = time.time() - t0
        self.assertEqual(rc, 3, out + err)
        self.assertLess(took, 15, "stops early instead of failing for the whole --duration")
        lines = out.splitlines()
        self.assertRegex(lines[3], r"^errors: (\d+) of \1 requests failed \(100\.0%\), refused \1")
        self.assertIn("stopped early", out)
        self.assertRegex(out, r"achieved\s+0\.0 requests/s")
        self.assertRegex(out, r"sent \(accepted\)\s+0 ")
        rep = json.load(open(os.path.join(self.tmp, "r.json")))
        self.assertEqual(rep["error_rate"], 1)
        self.assertTrue(rep["stopped_early"])
        self.assertEqual(rep["latency_ms"]["count"], 0)
        self.assertEqual(rep["rate"]["achieved"], 0)
        self.assertEqual(rep["bytes"]["sent"], 0)

    def test_failed_requests_stay_out_of_latency_and_throughput(self):
        s = self.sink("--fail-rate", "0.5", "--fail-status", "400", "--seed", "3")
        rc, out, err = run(["bench", "--endpoint", s.traces_url, "--rate", "40/s", "--duration", "2s",
                            "--batch-spans", "64", "-q", "--report", os.path.join(self.tmp, "r.json"),
                            EXAMPLES])
        self.assertEqual(rc, 1, out + err)
        rep = json.load(open(os.path.join(self.tmp, "r.json")))
        self.assertEqual(rep["latency_ms"]["count"], rep["requests"]["ok"])
        self.assertGreater(rep["errors"]["http"], 0)
        self.assertAlmostEqual(rep["rate"]["achieved"], rep["requests"]["ok"] / rep["elapsed_s"], 1)


@unittest.skipUnless(chromium(), "chromium not installed (scripts/install-deps)")
class BenchHtmlTest(TempTestCase):
    """Point 11: the page renders, its numbers match the terminal, and it has what load-testing
    users expect."""

    def test_page_renders_and_matches_report(self):
        s = self.sink("--latency-ms", "5", "--stall-ms", "300", "--stall-rate", "0.05", "--seed", "1")
        html = os.path.join(self.tmp, "bench.html")
        rc, out, err = run(["bench", "--endpoint", s.traces_url, "--rate", "40/s", "--duration", "3s",
                            "--batch-spans", "64", "--id-salt", "salty", "-q", "--html", html,
                            "--report", os.path.join(self.tmp, "r.json"), EXAMPLES])
        self.assertEqual(rc, 0, out + err)
        rep = json.load(open(os.path.join(self.tmp, "r.json")))
        page = open(html).read()
        # The same numbers as the terminal and the JSON report.
        p50 = re.search(r"p50\s+([\d.]+)", out).group(1)
        self.assertIn(f"<td>p50</td><td>{p50}</td>", page)
        self.assertEqual(f"{rep['latency_ms']['p50']:.3f}", p50)
        for needle in ('id="percentile-chart"', "99.99%", 'class="target"', "target 40 requests/s",
                       'id="status-table"', "<td>HTTP 200</td>", "<td>min</td>", "<td>mean</td>",
                       "<td>id salt</td><td>salty</td>", "<td>date</td>", "<td>chsync</td>", "ms (log)",
                       "width:100%"):
            self.assertIn(needle, page)
        self.assertRegex(page, r"\d+(\.\d+)? (KiB|MiB) / ")  # human units
        self.assertNotRegex(page, r'<svg[^>]* width="1000"')   # no fixed-size charts
        # Axes end just above the data (a nice number), not at twice it.
        chart = re.search(r'<svg id="throughput-chart".*?</svg>', page, re.S).group(0)
        ticks = [float(t[:-1]) * 1000 if t.endswith("k") else float(t)
                 for t in re.findall(r'text-anchor="end">([\d.]+k?)</text>', chart)]
        peak = max(sec["ok"] for sec in rep["timeline"])
        self.assertLess(max(ticks), max(peak, 40) * 1.6, ticks)

        png = os.path.join(self.tmp, "bench.png")
        screenshot(html, png, 1280, 2400)
        width, height, bpp, rows = read_png(png)
        self.assertGreaterEqual(width, 1000)
        colours, dark, coloured = set(), 0, 0
        for row in rows[::4]:
            for x in range(0, width * bpp, bpp * 4):
                px = row[x:x + 3]
                colours.add(px)
                if max(px) < 100:
                    dark += 1  # text and axes
                if max(px) - min(px) > 80:
                    coloured += 1  # chart lines
        self.assertGreater(len(colours), 20, "the screenshot is blank")
        self.assertGreater(dark, 500)
        self.assertGreater(coloured, 50)


if __name__ == "__main__":
    unittest.main()
