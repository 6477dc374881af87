"""Faults checklist, bad input: #17 huge lines, #18 non-UTF-8 bytes and lone surrogates,
#19 truncated / corrupt archives, #20 missing and non-monotonic timestamps."""
import datetime
import json
import os
import subprocess
import time
import unittest

from faultlib import CHSYNC, FaultCase, InputCase, json_spans, old_mtime, own_tests, run, ti


def load_tests(loader, tests, pattern):
    return own_tests(loader, InputFaults, InputDeliveryFaults)


class InputFaults(InputCase, ti.MemoryTest):
    """Cases already covered by tests/integration/test_inputs.py, under the faults label."""

    def test_17a_huge_line_over_the_limit_skipped_in_bounded_memory(self):
        ti.MemoryTest.test_100mb_line_over_the_limit_is_skipped_in_bounded_memory(self)

    def test_18a_invalid_utf8_replaced_and_counted(self):
        ti.BadInputTest.test_invalid_utf8_is_replaced_and_counted(self)

    def test_19a_cut_tar_exports_members_before_the_damage(self):
        ti.BadInputTest.test_cut_tar_exports_members_before_the_damage(self)

    def test_19b_truncated_gzip(self):
        ti.BadInputTest.test_truncated_gzip(self)


class InputDeliveryFaults(FaultCase):
    """The same inputs end to end through the OTLP exporter and the sink's validation."""

    def proj(self, name="proj"):
        d = os.path.join(self.tmp, "in", name)
        os.makedirs(d, exist_ok=True)
        return d

    def test_17b_20mb_line_truncated_delivered(self):
        d = self.proj()
        f = os.path.join(d, "h17.jsonl")
        lines = ti.session_lines("h17", n_turns=3)
        lines[2] = ti.entry("h17", "h17-u1", "q" * (20 << 20), ts="2025-03-01T10:01:00.000Z",
                            parent="h17-a0")
        with open(f, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        sink = self.sink()
        rc, r, err = self.sync(d, sink)
        self.assertEqual(rc, 0, err)
        self.assertLess(r["peak_rss_kb"], 400 * 1024)
        self.assert_exactly_once(sink, self.expected_ids(d))
        vals = [v for s in sink.spans() for v in s["attributes"].values()
                if isinstance(v, str) and "qqqqqqqq" in v]
        self.assertTrue(vals, "the huge prompt's span carries (truncated) content")
        for v in vals:
            self.assertLessEqual(len(v.encode()), 64 * 1024 + 1024, "truncated per policy")

    def test_18b_bad_utf8_and_lone_surrogates_do_not_fail_the_batch(self):
        d = self.proj()
        lines = ti.session_lines("u18", n_turns=4, text="cafe")
        raw = ("\n".join(lines) + "\n").encode()
        raw = raw.replace(b"cafe 0", b"caf\xff\xfe 0", 1)
        raw = raw.replace(b"cafe 1", b"caf\\ud800 1", 1)         # lone high surrogate
        raw = raw.replace(b"cafe 2", b"caf\\udc00\\ud83d 2", 1)  # reversed pair
        raw = raw.replace(b"cafe 3", b"caf\xc3 3", 1)            # cut multi-byte sequence
        with open(os.path.join(d, "u18.jsonl"), "wb") as fh:
            fh.write(raw)
        sink = self.sink()  # protobuf strings must be valid UTF-8: the sink rejects others (400)
        rc, r, err = self.sync(d, sink, "--batch-spans", "100000")
        self.assertIn(rc, (0, 1), err)
        self.assertEqual(r["dead_letters"], 0, "one bad byte failed a batch")
        self.assertEqual(sink.stats()["requests_by_status"].get("400", 0), 0)
        self.assertGreaterEqual(r["bad_lines"].get("utf8", 0), 1)
        self.assert_exactly_once(sink, self.expected_ids(d))
        texts = json.dumps([s["attributes"] for s in sink.spans()], ensure_ascii=False)
        self.assertIn("caf\ufffd", texts)

    # A member cut in the middle of a tar must not be recorded complete: once the archive is
    # repaired, the spans after the damage are sent (and only those).
    def test_19c_cut_tar_then_repaired_sends_only_the_rest(self):
        g = self.gen_dir("2M", 19)
        full = os.path.join(self.tmp, "full.tar")
        subprocess.run(["tar", "-cf", full, "-C", g, "projects"], check=True, timeout=60)
        with open(full, "rb") as fh:
            data = fh.read()
        a = os.path.join(self.tmp, "backup.tar")
        used = len(data.rstrip(b"\0"))
        with open(a, "wb") as fh:
            fh.write(data[: used // 2 + 1000])
        sink = self.sink()
        rc, r, err = self.sync_loud(a, sink.traces_url)
        self.assertEqual(rc, 1, err)
        self.assertIn(a, err)
        first = set(self.sink_ids(sink))
        self.assertGreater(len(first), 0)
        with open(a, "wb") as fh:  # repaired: the whole archive at the same path
            fh.write(data)
        expected = self.expected_ids(a)
        rc, r, err = self.sync(a, sink)
        self.assertEqual(rc, 0, err)
        print(f"\n  #19c: first {len(first)}, first-expected {len(first - expected)}, "
              f"synced {r['spans_synced']}, expected-first {len(expected - first)}", end=" ")
        got = set(self.sink_ids(sink))
        self.assertEqual(len(expected - got), 0,
                         f"{len(expected - got)} spans of the repaired archive never sent")
        self.assertEqual(r["spans_synced"], len(expected - first))
        self.assert_exactly_once(sink, expected)

    def t20_input(self):
        d = self.proj()
        lines = ti.session_lines("t20", n_turns=5)
        objs = [json.loads(l) for l in lines]
        del objs[0]["timestamp"]                                # missing on the first prompt
        objs[3]["timestamp"] = "2025-03-01T09:00:00.000Z"       # reply before its prompt
        objs[4]["timestamp"] = "not a time"                     # unparsable
        del objs[7]["timestamp"]                                # missing on a reply
        objs[8]["timestamp"] = "2024-01-01T00:00:00.000Z"       # jumps back a year
        f = os.path.join(d, "t20.jsonl")
        with open(f, "w") as fh:
            fh.write("\n".join(json.dumps(o) for o in objs) + "\n")
        old_mtime(f)
        return d

    def test_20_missing_and_non_monotonic_timestamps_deterministic(self):
        d = self.t20_input()
        outs = []
        for i in range(2):
            if i:
                time.sleep(1.1)  # a now() fallback would differ
            rc, out, err = run(["sync", d, "--backend", "console", "--format", "json",
                                "--settle", "0", "--dry-run", "--quiet"])
            self.assertIn(rc, (0, 1), err)
            outs.append(out)
        self.assertEqual(outs[0], outs[1], "two runs over the same input differ")
        spans = json_spans(outs[0])
        self.assertGreater(len(spans), 0)
        # Console JSON times are RFC 3339 strings; every span has both, and none may be "now"
        # (a now() fallback for a missing timestamp would differ between runs and backends).
        now = time.time()
        now_ns = time.time_ns()
        checked = 0
        for s in spans:
            for k in ("start_time", "end_time"):
                t = datetime.datetime.fromisoformat(s[k].replace("Z", "+00:00")).timestamp()
                self.assertGreater(abs(now - t), 7 * 86400,
                                   f"{k} {s[k]} of {s.get('name')} is close to now: a now() fallback")
                checked += 1
        self.assertEqual(checked, 2 * len(spans))
        # Delivered twice into fresh states: the same ids and times at the sink.
        recs = []
        for i in range(2):
            sink = self.sink()
            rc, r, err = self.sync(d, sink, db=self.db(f"s{i}.db"))
            self.assertIn(rc, (0, 1), err)
            recs.append(sorted((s["span_id"], s["start_unix_nano"], s["end_unix_nano"])
                               for s in sink.spans()))
        self.assertEqual(recs[0], recs[1])
        for _, start, end in recs[0]:
            self.assertGreater(abs(now_ns - int(start)), 7 * 86400 * 10**9)
            self.assertGreater(abs(now_ns - int(end)), 7 * 86400 * 10**9)

    # A prompt without a timestamp once gave its turn start_time 0 (1970): the receiver answered
    # 400 and all 10 spans were dead-lettered. The mapper now takes the file's first known time.
    def test_20b_spans_with_missing_timestamps_are_delivered(self):
        d = self.t20_input()
        rc, out, err = run(["sync", d, "--backend", "console", "--format", "json",
                            "--settle", "0", "--dry-run", "--quiet"])
        expected = {s["id"] for s in json_spans(out)}
        self.assertEqual(len(expected), 10)
        sink = self.sink()
        rc, r, err = self.sync(d, sink)
        self.assertEqual(rc, 0, err)
        self.assert_exactly_once(sink, expected)


if __name__ == "__main__":
    unittest.main()
