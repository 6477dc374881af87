"""Backend variants (issue 8): OTLP JSON vs protobuf, attribute profiles, Langfuse (OTel and legacy
batch API), Phoenix, and several backends in one run, against real chsync-sink processes on
127.0.0.1."""
import base64
import json
import os
import shutil
import subprocess
import time
import unittest

from harness import (CHSYNC, EXAMPLES, REAL, TempTestCase, clean_env, gen, json_spans, load_json,
                     run)

SESSION = os.path.join(
    REAL, "iansherr__claude-code-log", "-Users-dain-workspace-claude-code-log-sample",
    "fe869ecb-c176-478f-9734-7e4b8ef12cff.jsonl")

CONTENT_KEYS = {
    "generic": {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments",
                "gen_ai.tool.call.result"},
    "langfuse": {"langfuse.observation.input", "langfuse.observation.output",
                 "langfuse.trace.input", "langfuse.trace.output"},
    "phoenix": {"input.value", "output.value"},
}
# docs/mapping.md "Backend profiles": the kind key each profile's target reads.
KIND_KEYS = {
    "generic": ("langfuse.observation.type", "openinference.span.kind", "gen_ai.provider.name"),
    "langfuse": ("langfuse.observation.type",),
    "phoenix": ("openinference.span.kind",),
}


class BackendsTest(TempTestCase):
    # ---- helpers ----
    def corpus(self):
        """A copy of the examples (small, several sessions, subagents) plus one real session."""
        d = os.path.join(self.tmp, "corpus")
        if not os.path.exists(d):
            shutil.copytree(EXAMPLES, d)
            os.makedirs(os.path.join(d, "real"))
            shutil.copyfile(SESSION, os.path.join(d, "real", os.path.basename(SESSION)))
        return d

    def console(self, inputs, *extra):
        rc, out, err = run(["sync", inputs, "--backend", "console", "--format", "json",
                            "--settle", "0", "--dry-run", "--quiet", *extra], timeout=120)
        self.assertIn(rc, (0, 1), err[-2000:])
        return {s["id"]: s for s in json_spans(out)}

    def sync(self, inputs, *args, env=None, db=None, timeout=120):
        report = os.path.join(self.tmp, f"report-{time.time_ns()}.json")
        rc, out, err = run(["sync", inputs, "--settle", "0", "--db", db or self.db(),
                            "--report", report, "--quiet", *args], timeout=timeout,
                           env=env or clean_env())
        return rc, (load_json(report) if os.path.exists(report) else None), err

    def by_id(self, sink):
        recs = {}
        for s in sink.spans():
            self.assertNotIn(s["span_id"], recs, "span received twice")
            recs[s["span_id"]] = s
        return recs

    def assert_no_errors(self, sink):
        st = sink.stats()
        bad = {k: v for k, v in st["requests_by_status"].items() if not k.startswith("2")}
        self.assertEqual(bad, {}, st)
        self.assertEqual(st["spans_duplicate"], 0)
        return st

    # ---- 1. OTLP JSON ----
    def test_json_and_protobuf_carry_the_same_spans(self):
        d = self.corpus()
        expected = self.console(d)
        pb, js = self.sink(), self.sink()
        for s, enc, db in ((pb, "protobuf", "pb.db"), (js, "json", "js.db")):
            rc, r, err = self.sync(d, "--backend", "otlp", "--endpoint", s.traces_url,
                                   "--otlp-encoding", enc, "--batch-spans", "50", db=self.db(db))
            self.assertEqual(rc, 0, err[-2000:])
            self.assertEqual(r["spans_synced"], len(expected))
            self.assert_no_errors(s)  # JSON passes the sink's strict validation (else 400)
        a, b = self.by_id(pb), self.by_id(js)
        self.assertEqual(set(a), set(expected))
        self.assertEqual(set(b), set(expected))
        self.assertTrue(all(r["encoding"] == "json" for r in b.values()))
        for sid, ra in a.items():
            rb = dict(b[sid])
            ra = dict(ra)
            for k in ("encoding", "request"):
                ra.pop(k, None)
                rb.pop(k, None)
            self.assertEqual(set(ra), set(rb), sid)
            for k in ra:
                self.assertEqual(ra[k], rb[k], f"span {sid} field {k}")

    def test_compression_level_changes_the_body_not_the_spans(self):
        d = self.corpus()
        expected = self.console(d)
        sent = {}
        for level in ("1", "9"):
            s = self.sink()
            rc, r, err = self.sync(d, "--backend", "otlp", "--endpoint", s.traces_url,
                                   "--compression-level", level, db=self.db(f"l{level}.db"))
            self.assertEqual(rc, 0, err[-2000:])
            self.assert_no_errors(s)  # gzip bodies the sink decodes
            self.assertEqual(set(self.by_id(s)), set(expected))
            sent[level] = (r["bytes_sent"], r["bytes_encoded"])
        self.assertEqual(sent["1"][1], sent["9"][1])  # same encoded bodies
        self.assertLess(sent["9"][0], sent["1"][0])  # level 9 compresses them smaller
        rc, out, err = run(["sync", d, "--backend", "otlp", "--endpoint", "http://127.0.0.1:9/",
                            "--compression-level", "13", "--dry-run"])
        self.assertEqual(rc, 2, err)
        self.assertIn("--compression-level", err)

    # ---- 2. profiles ----
    def test_profiles_put_content_once_and_metadata_everywhere(self):
        d = self.corpus()
        expected = self.console(d)
        gens = {k: v for k, v in expected.items() if v["kind"] == "generation"}
        self.assertGreater(len(gens), 5)
        for profile in ("generic", "langfuse", "phoenix"):
            s = self.sink()
            rc, r, err = self.sync(d, "--backend", "otlp", "--endpoint", s.traces_url,
                                   "--profile", profile, db=self.db(f"{profile}.db"))
            self.assertEqual(rc, 0, err[-2000:])
            recs = self.by_id(s)
            self.assertEqual(set(recs), set(expected))
            other = set().union(*(v for k, v in CONTENT_KEYS.items() if k != profile))
            with_content = 0
            for sid, rec in recs.items():
                attrs = rec["attributes"]
                for k in KIND_KEYS[profile]:
                    self.assertIn(k, attrs, f"{profile}: {sid} lacks {k}")
                if profile != "generic":  # the others send only what their target reads
                    self.assertFalse([k for k in attrs if k.startswith("chsync.")], sid)
                self.assertFalse(other & set(attrs),
                                 f"{profile}: {sid} carries another profile's content keys "
                                 f"{other & set(attrs)}")
                span = expected[sid]
                oi_messages = any(k.startswith("llm.input_messages.") or
                                  k.startswith("llm.output_messages.") for k in attrs)
                if CONTENT_KEYS[profile] & set(attrs) or (profile == "phoenix" and oi_messages):
                    with_content += 1
                if span["kind"] == "generation" and profile == "generic":
                    self.assertEqual(attrs["gen_ai.operation.name"], "chat")
                    self.assertEqual(attrs["openinference.span.kind"], "LLM")
                    self.assertEqual(attrs["langfuse.observation.type"], "generation")
                    if span["model"]:
                        for k in ("gen_ai.request.model", "llm.model_name",
                                  "langfuse.observation.model.name"):
                            self.assertEqual(attrs[k], span["model"], k)
                    if span["tokens_in"] or span["tokens_out"]:
                        self.assertEqual(attrs["gen_ai.usage.input_tokens"], span["tokens_in"])
                        self.assertEqual(attrs["gen_ai.usage.output_tokens"], span["tokens_out"])
                        self.assertEqual(attrs["llm.token_count.prompt"], span["tokens_in"])
                        self.assertEqual(attrs["llm.token_count.completion"], span["tokens_out"])
                        self.assertEqual(attrs["llm.token_count.total"],
                                         span["tokens_in"] + span["tokens_out"])
                if span["kind"] == "generation" and profile != "generic":
                    key = "llm.model_name" if profile == "phoenix" else "langfuse.observation.model.name"
                    if span["model"]:
                        self.assertEqual(attrs[key], span["model"], key)
                if span["kind"] == "trace" and profile == "langfuse" and span["input"]:
                    # Langfuse copies trace I/O from the root observation: sent once, there.
                    self.assertNotIn("langfuse.trace.input", attrs)
                    self.assertNotIn("langfuse.trace.output", attrs)
                    self.assertIn("langfuse.observation.input", attrs)
            self.assertGreater(with_content, len(recs) // 2, profile)

    # ---- 3. Langfuse OTel endpoint ----
    def test_langfuse_auth_header_and_size_limit(self):
        d = os.path.join(self.tmp, "big")
        gen(d, "12M", 3)
        expected = self.console(d)
        s = self.sink("--require-basic-auth", "pk-lf-1:sk-lf-2",
                      "--require-header", "x-langfuse-ingestion-version=4",
                      "--max-body-bytes", "4500000")
        env = clean_env(LANGFUSE_HOST=s.url, LANGFUSE_PUBLIC_KEY="pk-lf-1",
                        LANGFUSE_SECRET_KEY="sk-lf-2")
        # Ask for huge batches: the langfuse backend must still stay under the server's limit.
        rc, r, err = self.sync(d, "--backend", "langfuse", "--batch-bytes", "64MiB",
                               "--batch-spans", "1000000", "--compression", "none", env=env)
        self.assertEqual(rc, 0, err[-2000:])
        st = self.assert_no_errors(s)
        self.assertNotIn("413", st["requests_by_status"])
        self.assertEqual(set(self.by_id(s)), set(expected))
        self.assertGreater(st["bytes_received_decoded"], 4500000, "corpus too small to test the cap")
        self.assertLessEqual(st["bytes_received_decoded"] / st["requests_total"], 4500000)
        self.assertTrue(all(r["scope"]["name"] for r in s.spans()))
        # Wrong key: 401 is fatal (exit 3), nothing marked.
        env["LANGFUSE_SECRET_KEY"] = "wrong"
        rc, r, err = self.sync(d, "--backend", "langfuse", env=env, db=self.db("other.db"))
        self.assertEqual(rc, 3, err[-2000:])

    def test_langfuse_trace_name_environment_tags_release(self):
        d = self.corpus()
        expected = self.console(d)
        s = self.sink()
        env = clean_env(LANGFUSE_HOST=s.url, LANGFUSE_PUBLIC_KEY="pk", LANGFUSE_SECRET_KEY="sk",
                        LANGFUSE_TRACING_ENVIRONMENT="from-env")
        rc, r, err = self.sync(d, "--backend", "langfuse", "--trace-name", "cc-import",
                               "--environment", "staging", "--tag", "team-a", "--tag", "team-a",
                               env=env)
        self.assertEqual(rc, 0, err[-2000:])
        recs = self.by_id(s)
        self.assertEqual(set(recs), set(expected))
        roots = 0
        for sid, rec in recs.items():
            # the flag wins over LANGFUSE_TRACING_ENVIRONMENT; chsync's version is not `version`
            self.assertEqual(rec["resource"]["deployment.environment.name"], "staging")
            self.assertNotIn("service.version", rec["resource"])
            attrs, span = rec["attributes"], expected[sid]
            if span["parent_id"] is None:
                roots += 1
                self.assertEqual(attrs["langfuse.trace.name"], "cc-import")
                self.assertEqual(json.loads(attrs["langfuse.trace.tags"]), ["claude-code", "team-a"])
                self.assertIn("session.id", attrs)
                if "cc_version" in span["metadata"]:
                    self.assertEqual(attrs["langfuse.release"], span["metadata"]["cc_version"])
            else:  # trace-level keys only on roots: one trace update per trace
                self.assertFalse([k for k in attrs if k.startswith("langfuse.trace.") or
                                  k in ("session.id", "user.id")], sid)
        self.assertGreater(roots, 0)
        # Settings that cannot be meant: exit 2 before any work.
        for bad in (["--environment", "Prod!"], ["--environment", "langfuse-x"], ["--trace-name", ""]):
            rc, _, err = self.sync(d, "--backend", "langfuse", *bad, env=env)
            self.assertEqual(rc, 2, (bad, err[-500:]))
        rc, _, err = self.sync(d, "--backend", "phoenix", "--host", s.url, "--otlp-encoding", "json")
        self.assertEqual(rc, 2, err[-500:])
        self.assertIn("protobuf", err)

    # ---- 4. Langfuse legacy batch API ----
    def legacy_sync(self, sink, d, *extra, db=None):
        env = clean_env(LANGFUSE_HOST=sink.url, LANGFUSE_PUBLIC_KEY="pk",
                        LANGFUSE_SECRET_KEY="sk")
        return self.sync(d, "--backend", "langfuse-legacy", "--retry-initial", "100ms",
                         "--retry-max", "500ms", "--batch-spans", "40", *extra, env=env, db=db)

    def legacy_obs(self, sink):
        obs, traces = {}, {}
        for e in sink.spans():
            self.assertEqual(e["encoding"], "langfuse-legacy")
            if e["type"] == "trace-create":
                traces.setdefault(e["body_id"], []).append(e)
            else:
                obs.setdefault(e["body_id"], []).append(e)
        return obs, traces

    def test_langfuse_legacy_per_event_5xx_is_retried(self):
        d = self.corpus()
        expected = self.console(d)
        s = self.sink("--require-basic-auth", "pk:sk", "--legacy-event-fail-rate", "0.2",
                      "--legacy-event-fail-status", "500")
        rc, r, err = self.legacy_sync(s, d)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(r["spans_synced"], len(expected))
        st = s.stats()
        self.assertGreater(st["faults_injected"]["legacy_event_failures"], 0)
        self.assertEqual(st["legacy_events_duplicate"], 0, "a retry re-sent an accepted event")
        obs, traces = self.legacy_obs(s)
        self.assertEqual(set(obs), set(expected))
        # every root gets a trace-create: turn roots and unlinked subagents (no parent)
        roots = {v["trace_id"] for v in expected.values() if v["parent_id"] is None}
        self.assertEqual(set(traces), roots)
        kinds = {"generation": "generation-create", "event": "event-create"}
        for sid, evs in obs.items():
            self.assertEqual(len(evs), 1, sid)
            e, span = evs[0], expected[sid]
            self.assertEqual(e["type"], kinds.get(span["kind"], "span-create"))
            self.assertEqual(e["trace_id"], span["trace_id"])
            self.assertEqual(e["parent_observation_id"] or None, span["parent_id"])
            body = e["body"]
            self.assertTrue(body["startTime"].endswith("Z"))
            if span["kind"] == "generation":
                if span["model"]:
                    self.assertEqual(body["model"], span["model"])
                if span["tokens_in"] or span["tokens_out"]:
                    u = body["usageDetails"]
                    self.assertNotIn("total", u)
                    self.assertEqual(u["output"], span["tokens_out"])
                    self.assertEqual(sum(v for k, v in u.items() if k != "output"),
                                     span["tokens_in"])
            if span["is_error"]:
                self.assertEqual(body.get("level"), "ERROR")
        # Rerun: nothing new; the same export gives the same envelope ids (dedupe on the server).
        n = st["requests_total"]
        rc, r, err = self.legacy_sync(s, d)
        self.assertEqual((rc, r["spans_synced"], r["requests"]), (0, 0, 0), err[-2000:])
        self.assertEqual(s.stats()["requests_total"], n)
        s2 = self.sink()
        rc, r, err = self.legacy_sync(s2, d, db=self.db("again.db"))
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual({e["event_id"] for e in s.spans()}, {e["event_id"] for e in s2.spans()})

    def test_langfuse_legacy_per_event_4xx_is_dead_lettered(self):
        d = self.corpus()
        expected = self.console(d)
        s = self.sink("--legacy-event-fail-rate", "0.2", "--legacy-event-fail-status", "400")
        rc, r, err = self.legacy_sync(s, d)
        self.assertEqual(rc, 1, err[-2000:])
        dead = set()
        with open(os.path.join(self.tmp, "state.dead-letters.jsonl")) as f:
            for line in f:
                rec = json.loads(line)
                self.assertEqual(rec["status"], 400)
                body = json.loads(base64.b64decode(rec["body_b64"]))
                self.assertTrue(body["batch"])
                dead |= set(rec["span_ids"])
        self.assertTrue(dead)
        self.assertEqual(r["dead_letters"], len(dead))
        self.assertEqual(r["spans_synced"] + len(dead), len(expected))
        obs, _ = self.legacy_obs(s)
        self.assertTrue((set(expected) - dead) <= set(obs), "a delivered span is missing")
        self.assertEqual(s.stats()["legacy_events_duplicate"], 0)
        # Dead spans are marked: a rerun sends nothing.
        rc, r, err = self.legacy_sync(s, d)
        self.assertEqual((r["spans_synced"], r["requests"]), (0, 0), err[-2000:])

    # ---- 5. Phoenix ----
    def test_phoenix_protobuf_project_and_content(self):
        d = self.corpus()
        expected = self.console(d)
        s = self.sink("--protobuf-only")
        rc, r, err = self.sync(d, "--backend", "phoenix", "--host", s.url + "/",
                               "--project-name", "my-proj")
        self.assertEqual(rc, 0, err[-2000:])
        self.assert_no_errors(s)
        recs = self.by_id(s)
        self.assertEqual(set(recs), set(expected))
        for sid, rec in recs.items():
            self.assertEqual(rec["encoding"], "protobuf")
            self.assertEqual(rec["resource"]["openinference.project.name"], "my-proj")
            span = expected[sid]
            attrs = rec["attributes"]
            self.assertIn("metadata", attrs, sid)  # one JSON object
            json.loads(attrs["metadata"])
            if span["kind"] == "generation":  # chat view: OpenInference messages
                if span["input"]:
                    self.assertIn("llm.input_messages.0.message.role", attrs, sid)
                if span["output"]:
                    self.assertEqual(attrs["llm.output_messages.0.message.role"], "assistant")
                continue
            if span["input"]:
                self.assertIn("input.value", attrs, sid)
            if span["output"] or span["tool_result"]:
                self.assertIn("output.value", attrs, sid)

    # ---- 6. several backends ----
    def test_two_backends_one_failing_does_not_block_the_other(self):
        d = os.path.join(self.tmp, "multi")
        gen(d, "3M", 5)
        expected = self.console(d)
        self.assertGreater(len(expected), 400)
        good = self.sink()
        bad = self.sink("--fail-rate", "1.0", "--fail-status", "503")
        cfg = os.path.join(self.tmp, "chsync.toml")
        with open(cfg, "w") as f:
            f.write(f'[backends.good]\ntype = "otlp"\nendpoint = "{good.traces_url}"\n'
                    f'headers = {{ x-which = "good" }}\n\n'
                    f'[backends.bad]\ntype = "otlp"\nendpoint = "{bad.traces_url}"\n')
        report = os.path.join(self.tmp, "multi-report.json")
        args = [CHSYNC, "sync", d, "--config", cfg, "--backend", "good", "--backend", "bad",
                "--settle", "0", "--db", self.db(), "--report", report, "--quiet",
                "--retry-max-elapsed", "2m", "--retry-initial", "200ms", "--retry-max", "1s",
                "--batch-spans", "20", "--max-in-flight", "2"]
        log = open(os.path.join(self.tmp, "multi.log"), "wb")
        t0 = time.time()
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=clean_env())
        try:
            good_done = None
            while time.time() - t0 < 20:
                if good_done is None and len(good.spans()) >= len(expected):
                    good_done = time.time() - t0
                if p.poll() is not None:
                    break
                time.sleep(0.2)
            bad.control(**{"fail-rate": 0.0})
            rc = p.wait(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
        with open(os.path.join(self.tmp, "multi.log"), "rb") as f:
            errtext = f.read().decode("utf-8", "replace")
        self.assertEqual(rc, 0, errtext[-2000:])
        self.assertIsNotNone(good_done, "the healthy backend was held back by the failing one")
        self.assertLess(good_done, 12)
        self.assertGreater(bad.stats()["faults_injected"]["status_5xx"], 0)
        for s in (good, bad):
            ids = [r["span_id"] for r in s.spans()]
            self.assertEqual(len(ids), len(set(ids)), "a span arrived twice")
            self.assertEqual(set(ids), set(expected))
        r = load_json(report)
        self.assertEqual(r["spans_synced"], 2 * len(expected))
        n_good, n_bad = good.stats()["requests_total"], bad.stats()["requests_total"]
        rc2, r2, err = self.sync(d, "--config", cfg, "--backend", "good", "--backend", "bad")
        self.assertEqual((rc2, r2["spans_synced"], r2["requests"]), (0, 0, 0), err[-2000:])
        self.assertEqual(good.stats()["requests_total"], n_good)
        self.assertEqual(bad.stats()["requests_total"], n_bad)


if __name__ == "__main__":
    unittest.main()
