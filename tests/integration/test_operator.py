"""Operator experience, round two (issue 23) and typed backend options (issue 18).

Each test names the point of issue 23 it covers. The progress line under a real terminal is in
test_terminal.py (tmux), the bench page in test_bench_html.py (headless Chromium).
"""
import json
import os
import re
import shutil
import subprocess
import unittest

from harness import CHSYNC, EXAMPLES, TempTestCase, clean_env, gen, run


class ConfigAndFlagsTest(TempTestCase):
    """Point 2: settings that cannot be meant are errors; --print-config names every source.
    Issue 18: one declaration per backend type; values from any source validated."""

    def assert_usage_error(self, args, *needles, env=None):
        rc, out, err = run(args, env=env)
        self.assertEqual(rc, 2, (args, err))
        for n in needles:
            self.assertIn(n, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        return err

    def test_endpoint_without_backend_selects_otlp(self):
        c = self.print_config("--endpoint", "http://127.0.0.1:9/v1/traces")
        self.assertEqual([b["type"] for b in c["backends"]], ["otlp"])
        self.assertEqual(c["backends"][0]["endpoint"], "http://127.0.0.1:9/v1/traces")
        self.assertEqual(c["backends"][0]["sources"]["endpoint"], "flag --endpoint")
        # The endpoint really used when it comes from the environment or the default.
        c = self.print_config("--backend", "otlp",
                              env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/"))
        self.assertEqual(c["backends"][0]["endpoint"], "http://collector:4318/v1/traces")
        self.assertEqual(c["backends"][0]["sources"]["endpoint"], "env OTEL_EXPORTER_OTLP_ENDPOINT")
        c = self.print_config("--backend", "otlp")
        self.assertEqual(c["backends"][0]["endpoint"], "http://127.0.0.1:4318/v1/traces")
        self.assertEqual(c["backends"][0]["sources"]["endpoint"], "default")
        self.assertEqual(c["backends"][0]["sources"]["batch_spans"], "default")
        self.assertEqual(c["backends"][0]["batch_spans"], "512")

    def test_print_config_sources_flag_env_file_default(self):
        cfg = self.write("c.toml", '[sync]\nsettle = "7m"\n')
        c = self.print_config("--config", cfg, "--workers", "2",
                              env=clean_env(CHSYNC_MAX_MEMORY="64MiB"))
        src = c["sources"]
        self.assertEqual(src["settle"], f"file {cfg} [sync]")
        self.assertEqual(src["workers"], "flag --workers")
        self.assertEqual(src["max-memory"], "env CHSYNC_MAX_MEMORY")
        self.assertEqual(src["drain-timeout"], "default")
        self.assertEqual(c["max_memory_bytes"], 64 << 20)
        self.assertEqual(c["progress_interval_ms"], 10000)
        # Langfuse: the host from the environment, the endpoint derived from it, keys masked.
        env = clean_env(LANGFUSE_HOST="http://127.0.0.1:9", LANGFUSE_PUBLIC_KEY="pk-lf-aaaaaaaa",
                        LANGFUSE_SECRET_KEY="sk-lf-bbbbbbbbbb")
        rc, out, err = run(["sync", "--print-config", "--backend", "langfuse"], env=env)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("sk-lf-bbbbbbbbbb", out)
        b = json.loads(out)["backends"][0]
        self.assertEqual(b["endpoint"], "http://127.0.0.1:9/api/public/otel/v1/traces")
        self.assertEqual(b["sources"]["host"], "env LANGFUSE_HOST")
        self.assertEqual(b["sources"]["secret_key"], "env LANGFUSE_SECRET_KEY")
        self.assertIn("host", b["sources"]["endpoint"])

    def test_print_config_shows_every_environment_variable_of_the_help(self):
        # Every variable `sync --help` lists (OTEL_*, LANGFUSE_*, PHOENIX_*, CHSYNC_*, proxies)
        # shows up in --print-config as the source of the value it set; header values, keys
        # and passwords stay masked.
        rc, out, err = run(["sync", "--help"])
        env_section = out[out.index("\nEnvironment"):]
        names = sorted(set(re.findall(r"\b(?:OTEL|LANGFUSE|PHOENIX|CHSYNC|CH_SYNC)_[A-Z_]+\b|"
                                      r"\bCLAUDE_PROJECTS_DIR\b|\bHTTPS?_PROXY\b|\bNO_PROXY\b",
                                      env_section)))
        self.assertGreaterEqual(len(names), 25, names)
        url = "http://127.0.0.1:9"
        value = {"TIMEOUT": "2500", "COMPRESSION": "none", "HEADERS": "x-h=hv%20zq9a",
                 "CERTIFICATE": "/nonexistent.pem", "CLIENT_KEY": "/nonexistent.pem",
                 "PUBLIC_KEY": "pk-lf-zq9b", "SECRET_KEY": "sk-lf-zq9c",
                 "API_KEY": "px-zq9d", "ENVIRONMENT": "prod", "PROJECT_NAME": "proj",
                 "ATTRIBUTES": "team=ml", "SERVICE_NAME": "svc", "NO_PROXY": "localhost",
                 "CHSYNC_DB": self.db("a.db"), "CH_SYNC_DB": self.db("b.db"),
                 "STATE_URL": "postgres://u:zq9e@127.0.0.1:9/db", "CH_SYNC_BACKEND": "null",
                 "CHSYNC_BACKEND": "null", "CHSYNC_SETTLE": "0", "CLAUDE_PROJECTS_DIR": EXAMPLES}
        for name in names:
            v = next((v for k, v in value.items() if name.endswith(k)), url)
            backend = (["--backend", "otlp"] if name.startswith("OTEL_") else
                       ["--backend", "langfuse"] if name.startswith("LANGFUSE_") else
                       ["--backend", "phoenix"] if name.startswith("PHOENIX_") else
                       ["--backend", "otlp"] if name.endswith("PROXY") else [])
            rc, out, err = run(["sync", "--print-config", *backend], env=clean_env(**{name: v}))
            self.assertEqual(rc, 0, (name, err))
            self.assertIn(f'"env {name}"', out, name)
            self.assertNotIn("zq9", out, name)  # every secret value has it
        # Several OTEL_*_HEADERS entries: each a header of its own, after no --header.
        c = self.print_config("--backend", "otlp", "--header", "a=1",
                              env=clean_env(OTEL_EXPORTER_OTLP_HEADERS="k1=v1,k2=v2",
                                            OTEL_EXPORTER_OTLP_TRACES_HEADERS="k3=v3"))
        b = c["backends"][0]
        self.assertEqual([b[f"header.env.{i}"] for i in range(3)], ["k1=****", "k2=****", "k3=****"])
        self.assertEqual(b["sources"]["header.env.2"], "env OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        self.assertEqual(b["header.0"], "a=****")
        # The Langfuse batch API does not read the OTLP variables.
        c = self.print_config("--backend", "langfuse-legacy",
                              env=clean_env(OTEL_EXPORTER_OTLP_HEADERS="k1=v1"))
        self.assertNotIn("header.env.0", c["backends"][0])

    def test_otel_headers_and_resource_reach_the_wire(self):
        # What --print-config shows is what is sent (one resolution for both).
        s = self.sink("--require-header", "x-team=ml a", "--require-header", "x-b=2")
        rc, out, err = run(["sync", EXAMPLES, "--endpoint", s.traces_url, "--settle", "0",
                            "--db", self.db()],
                           env=clean_env(OTEL_RESOURCE_ATTRIBUTES="team=ml", OTEL_SERVICE_NAME="svc",
                                         OTEL_EXPORTER_OTLP_HEADERS="x-team=ml%20a",
                                         OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-b=2"))
        self.assertEqual(rc, 0, err)
        rec = s.spans()[0]
        self.assertEqual(rec["resource"]["team"], "ml")
        self.assertEqual(rec["resource"]["service.name"], "svc")

    def test_state_outage_tolerance_from_every_source(self):
        # Default: max(--lease, 10 s); then flag > CHSYNC_* > [sync] key, each shown with its source.
        c = self.print_config()
        self.assertEqual((c["state_outage_tolerance_ms"], c["sources"]["state-outage-tolerance"]),
                         (60000, "default"))  # the default lease is 60 s
        self.assertEqual(self.print_config("--lease", "3s")["state_outage_tolerance_ms"], 10000)
        self.assertEqual(self.print_config("--lease", "45s")["state_outage_tolerance_ms"], 45000)
        cfg = self.write("t.toml", '[sync]\nstate-outage-tolerance = "90s"\n')
        c = self.print_config("--config", cfg)
        self.assertEqual((c["state_outage_tolerance_ms"], c["sources"]["state-outage-tolerance"]),
                         (90000, f"file {cfg} [sync]"))
        c = self.print_config("--config", cfg,
                              env=clean_env(CHSYNC_STATE_OUTAGE_TOLERANCE="2m"))
        self.assertEqual(c["state_outage_tolerance_ms"], 120000)
        c = self.print_config("--config", cfg, "--state-outage-tolerance", "5s", "--lease", "1m",
                              env=clean_env(CHSYNC_STATE_OUTAGE_TOLERANCE="2m"))
        self.assertEqual((c["state_outage_tolerance_ms"], c["lease_ms"]), (5000, 60000))
        self.assertEqual(c["sources"]["state-outage-tolerance"], "flag --state-outage-tolerance")
        self.assert_usage_error(["sync", "--state-outage-tolerance", "500ms", "--print-config"],
                                "--state-outage-tolerance: must be at least 1s")
        self.assert_usage_error(["sync", "--print-config"], "CHSYNC_STATE_OUTAGE_TOLERANCE",
                                "invalid duration",
                                env=clean_env(CHSYNC_STATE_OUTAGE_TOLERANCE="soon"))
        rc, out, err = run(["sync", "--help"])
        self.assertRegex(out, r"--state-outage-tolerance DURATION\s+How long[^\n]*exit 3; "
                              r"default max\(--lease, 10s\)")

    def test_flag_that_does_not_apply_is_exit_2(self):
        err = self.assert_usage_error(
            ["sync", EXAMPLES, "--backend", "otlp", "--host", "http://127.0.0.1:9"],
            "--host does not apply to --backend otlp")
        self.assertIn("langfuse", err)  # says which backends take it
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "null", "--batch-spans", "5"],
                                "--batch-spans does not apply")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "langfuse-legacy", "--rate", "5/s"],
                                "--rate does not apply")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "console", "--output", "x.jsonl"],
                                "--output does not apply")
        # From the environment it is named as such.
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "console"], "CHSYNC_ENDPOINT",
                                env=clean_env(CHSYNC_ENDPOINT="http://127.0.0.1:9/v1/traces"))
        # With two backends a flag applies when either takes it (to that one:
        # test_value_for_several_backends_applies_per_backend_and_says_so).
        c = self.print_config("--backend", "console", "--backend", "otlp", "--batch-spans", "7")
        self.assertEqual(c["backends"][1]["batch_spans"], "7")

    def test_backend_specific_flags_follow_applies_to_from_every_source(self):
        # --tag becomes langfuse.trace.tags, which the OTLP encoder writes in the langfuse
        # profile only: with otlp/phoenix's own profiles it would be dropped without a word.
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otlp", "--tag", "team-a"],
                                "--tag does nothing for --backend otlp with --profile generic",
                                "--profile langfuse")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "phoenix", "--tag", "team-a"],
                                "--tag does nothing for --backend phoenix")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "langfuse", "--profile", "generic",
                                 "--tag", "t"], "--tag does nothing")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otlp", "--compression", "none",
                                 "--compression-level", "9"], "--compression-level does nothing",
                                "--compression gzip")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otlp"], "CHSYNC_TAG",
                                env=clean_env(CHSYNC_TAG="team-a"))
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "null", "--environment", "prod"],
                                "--environment does not apply to --backend null")
        # --format/--json shape console lines only.
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otlp", "--format", "json"],
                                "--format does not apply to --backend otlp")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "null"], "CHSYNC_JSON",
                                env=clean_env(CHSYNC_JSON="1"))
        # Where it does apply, it is taken (and --tag takes one value: the input stays an input).
        c = self.print_config("--backend", "otlp", "--profile", "langfuse", "--tag", "a", EXAMPLES)
        self.assertEqual(c["inputs"], [EXAMPLES])
        self.assertEqual(c["backends"][0]["tag.0"], "a")
        self.assertNotIn("tag.1", c["backends"][0])
        c = self.print_config("--include", "*.jsonl", EXAMPLES)
        self.assertEqual(c["inputs"], [EXAMPLES])
        # LANGFUSE_TRACING_ENVIRONMENT is a Langfuse variable: a generic collector does not read it.
        c = self.print_config("--backend", "otlp", env=clean_env(LANGFUSE_TRACING_ENVIRONMENT="prod"))
        self.assertNotIn("environment", c["backends"][0])
        # Named instances: lists are arrays, and the same rules hold for their keys.
        cfg = self.write("i.toml", '[backends.lf]\ntype = "langfuse"\nhost = "http://127.0.0.1:9"\n'
                                   'tag = ["team-a", "laptop"]\n'
                                   '[backends.o]\ntype = "otlp"\ntag = ["team-a"]\n'
                                   '[backends.n]\ntype = "null"\nenvironment = "prod"\n'
                                   '[backends.e]\ntype = "otlp"\nendpoint = ["http://127.0.0.1:9"]\n')
        env = clean_env(LANGFUSE_PUBLIC_KEY="pk", LANGFUSE_SECRET_KEY="sk")
        c = self.print_config("--config", cfg, "--backend", "lf", env=env)
        b = c["backends"][0]
        self.assertEqual([b["tag.0"], b["tag.1"]], ["team-a", "laptop"])
        self.assertEqual(b["sources"]["tag.0"], f"file {cfg} [backends.lf]")
        c = self.print_config("--config", cfg, "--backend", "lf", "--tag", "x", env=env)
        self.assertEqual(c["backends"][0]["tag.0"], "x")  # the flag beats the instance's key
        self.assertNotIn("tag.1", c["backends"][0])
        self.assert_usage_error(["sync", "--config", cfg, "--backend", "o", "--print-config"],
                                "i.toml:7", "backends.o.tag", 'profile = "langfuse"')
        self.assert_usage_error(["sync", "--config", cfg, "--backend", "n", "--print-config"],
                                "i.toml:10", "backends.n.environment", "unknown key")
        self.assert_usage_error(["sync", "--config", cfg, "--backend", "e", "--print-config"],
                                "i.toml:13", "backends.e.endpoint", "one value")
        # --help says which backends take it, and under which condition.
        rc, out, err = run(["sync", "--help"])
        self.assertRegex(out, r"--tag TEXT[^\[]*\[otlp with --profile langfuse, langfuse, "
                              r"langfuse-legacy, phoenix with --profile langfuse\]")

    def test_value_for_several_backends_applies_per_backend_and_says_so(self):
        """A backend value that some of the chosen backends take and others do not: taken by
        those, dropped (back to their own value) by the others, and said at start-up and in
        --print-config per backend. None of them taking it stays exit 2 (above)."""
        env = clean_env(LANGFUSE_PUBLIC_KEY="pk", LANGFUSE_SECRET_KEY="sk")
        c = self.print_config("--backend", "otlp", "--backend", "langfuse", "--tag", "team-a",
                              env=env)
        otlp, lf = c["backends"]
        self.assertEqual(lf["tag.0"], "team-a")
        self.assertEqual(lf["not_applied"], {})
        self.assertNotIn("tag.0", otlp)  # what otlp shows is what it sends
        self.assertNotIn("tag.0", otlp["sources"])
        self.assertEqual(otlp["not_applied"],
                         {"tag": "flag --tag: needs --profile langfuse (has generic, default)"})
        c = self.print_config("--backend", "console", "--backend", "otlp", "--batch-spans", "7")
        self.assertEqual(c["backends"][0]["not_applied"],
                         {"batch-spans": "flag --batch-spans: console has no --batch-spans"})
        self.assertEqual(c["backends"][1]["batch_spans"], "7")
        # A condition on the instance's own value: gzip level with compression = "none" keeps
        # its default there; from the environment the source is named.
        cfg = self.write("n.toml", '[backends.plain]\ntype = "otlp"\ncompression = "none"\n')
        c = self.print_config("--config", cfg, "--backend", "plain", "--backend", "otlp",
                              env=clean_env(CHSYNC_COMPRESSION_LEVEL="9"))
        plain, otlp = c["backends"]
        self.assertEqual((plain["compression_level"], plain["sources"]["compression_level"]),
                         ("1", "default"))
        self.assertEqual(plain["not_applied"]["compression-level"],
                         f"env CHSYNC_COMPRESSION_LEVEL: needs --compression gzip (has none, "
                         f"file {cfg} [backends.plain])")
        self.assertEqual(otlp["compression_level"], "9")

        # One destination for several backends is exit 2: a full --endpoint beats --host, so
        # Langfuse's spans and credentials went to the OTLP collector.
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otlp", "--endpoint",
                                 "http://127.0.0.1:9/v1/traces", "--backend", "langfuse", "--host",
                                 "http://127.0.0.1:8"],
                                "--endpoint would send --backend otlp, langfuse to the same place",
                                "[backends.NAME]", env=env)
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otlp", "--backend", "phoenix"],
                                "env CHSYNC_ENDPOINT (--endpoint) would send --backend otlp, "
                                "phoenix", env=clean_env(CHSYNC_ENDPOINT="http://127.0.0.1:9/"))
        # Within one backend too: a full --endpoint is used as is, a --host beside it did nothing.
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "langfuse", "--endpoint",
                                 "http://127.0.0.1:9/x", "--host", "http://127.0.0.1:8"],
                                "--host does nothing for --backend langfuse beside --endpoint",
                                env=env)
        c = self.print_config("--backend", "langfuse", "--endpoint", "http://127.0.0.1:9/x",
                              env=dict(env, LANGFUSE_HOST="http://127.0.0.1:8"))  # ambient: fine
        self.assertEqual(c["backends"][0]["endpoint"], "http://127.0.0.1:9/x")
        c = self.print_config("--backend", "console", "--backend", "otlp", "--endpoint",
                              "http://127.0.0.1:9/v1/traces")
        self.assertEqual(c["backends"][1]["endpoint"], "http://127.0.0.1:9/v1/traces")
        # A real run: the notice at start-up, the tag on Langfuse's spans only. (The OTLP
        # endpoint is the instance's own: --endpoint would apply to langfuse too.)
        a, b = self.sink(), self.sink()
        two = self.write("two.toml", f'[backends.o]\ntype = "otlp"\nendpoint = "{a.traces_url}"\n')
        rc, out, err = run(["sync", EXAMPLES, "--config", two, "--backend", "o",
                            "--backend", "langfuse", "--host", b.url, "--tag", "team-a",
                            "--settle", "0", "--db", self.db()], env=env)
        self.assertEqual(rc, 0, err)
        self.assertIn("--tag applies to --backend langfuse only, not to o (o: needs "
                      "--profile langfuse (has generic, default))", err)
        # Once, and only for the value otlp would take: --host is plainly langfuse's.
        self.assertEqual(err.count("applies to --backend"), 1, err)

        def tags(sink):
            out = set()
            for sp in sink.spans():
                v = (sp.get("attributes") or {}).get("langfuse.trace.tags")
                out.update(json.loads(v) if isinstance(v, str) else v or [])  # a JSON array
            return out
        self.assertTrue(a.spans() and b.spans())
        self.assertEqual(tags(a), set())
        self.assertIn("team-a", tags(b))
        # --log-format json: typed fields; from the environment the variable is named.
        rc, out, err = run(["sync", EXAMPLES, "--config", two, "--backend", "o",
                            "--backend", "langfuse", "--host", b.url, "--settle", "0",
                            "--db", self.db("j.db"), "--log-format", "json"],
                           env=dict(env, CHSYNC_TAG="team-b"))
        self.assertEqual(rc, 0, err)
        notes = [o for o in map(json.loads, err.splitlines()) if o.get("event") ==
                 "value_not_applied"]
        self.assertEqual(len(notes), 1, err)
        self.assertEqual({k: notes[0][k] for k in ("level", "flag", "source", "applies_to",
                                                    "not_applied_to")},
                         {"level": "warn", "flag": "tag", "source": "env CHSYNC_TAG",
                          "applies_to": "langfuse", "not_applied_to": "o"})
        self.assertIn("CHSYNC_TAG (--tag) applies to", notes[0]["msg"])

    def test_unknown_keys_and_flags_say_did_you_mean(self):
        cfg = self.write("typo.toml", '[sync]\nsetle = "0"\n')
        self.assert_usage_error(["sync", "--config", cfg, "--print-config"],
                                "typo.toml:2", "sync.setle", "did you mean 'settle'")
        cfg = self.write("typo2.toml",
                         '[backends.c]\ntype = "otlp"\nendpont = "http://127.0.0.1:9/v1/traces"\n')
        self.assert_usage_error(["sync", "--config", cfg, "--backend", "c", "--print-config"],
                                "typo2.toml:3", "backends.c.endpont", "did you mean 'endpoint'")
        cfg = self.write("typo3.toml", '[backends.c]\ntype = "otlpp"\n')
        self.assert_usage_error(["sync", "--config", cfg, "--backend", "c", "--print-config"],
                                "did you mean 'otlp'")
        self.assert_usage_error(["sync", EXAMPLES, "--endpont", "http://x"], "did you mean --endpoint")
        self.assert_usage_error(["sync", EXAMPLES, "--backend", "otel"], "unknown backend 'otel'")

    def test_backend_values_are_typed_and_validated_from_every_source(self):
        cfg = self.write("r.toml", '[backends.c]\ntype = "otlp"\nrate = "5000spans/s"\n'
                                   'batch_bytes = "1MiB"\ntimeout = "2s"\n')
        c = self.print_config("--config", cfg, "--backend", "c")
        b = c["backends"][0]
        self.assertEqual(b["rate"], "5000spans/s")       # spans, not requests
        self.assertEqual(b["batch_bytes"], str(1 << 20))
        self.assertEqual(b["timeout"], "2000")
        self.assertEqual(b["sources"]["rate"], f"file {cfg} [backends.c]")
        bad = self.write("bad.toml", '[backends.c]\ntype = "otlp"\nbatch_spans = "many"\n')
        self.assert_usage_error(["sync", "--config", bad, "--backend", "c", "--print-config"],
                                "bad.toml:3", "backends.c.batch_spans", "many")
        self.assert_usage_error(["sync", "--backend", "otlp", "--print-config"], "CHSYNC_BATCH_BYTES",
                                env=clean_env(CHSYNC_BATCH_BYTES="huge"))
        self.assert_usage_error(["sync", "--backend", "otlp", "--print-config"],
                                "OTEL_EXPORTER_OTLP_TIMEOUT",
                                env=clean_env(OTEL_EXPORTER_OTLP_TIMEOUT="soon"))
        self.assert_usage_error(["sync", "--backend", "otlp", "--compression", "zip", "--print-config"],
                                "--compression", "gzip, none")
        sync_bad = self.write("sb.toml", '[sync]\nsettle = "later"\n')
        self.assert_usage_error(["sync", "--config", sync_bad, "--print-config"], "sb.toml:2",
                                "sync.settle")
        # The rate really is spans per second on the wire: 30 spans/s for 1 s of sending.
        s = self.sink()
        cfg = self.write("rate.toml", f'[backends.c]\ntype = "otlp"\nendpoint = "{s.traces_url}"\n'
                                      'rate = "20spans/s"\nbatch_spans = "5"\n')
        d = os.path.join(self.tmp, "g")
        gen(d, "300K", 3)
        rc, out, err = run(["sync", d, "--config", cfg, "--backend", "c", "--settle", "0",
                            "--db", self.db(), "--report", os.path.join(self.tmp, "r.json")])
        self.assertEqual(rc, 0, err)
        with open(os.path.join(self.tmp, "r.json")) as f:
            rep = json.load(f)
        secs = rep["duration_ms"] / 1000
        # At 20 spans/s (not 20 requests/s = 100 spans/s) the run takes spans/20 seconds.
        self.assertGreater(secs, rep["spans_synced"] / 20 * 0.7, rep)


class HelpTest(TempTestCase):
    """Point 6: grouped flags with types and defaults, the environment, command suggestions."""

    def assert_help(self, command, groups, lines):
        """`chsync COMMAND --help` exits 0, shows every group heading and matches every line
        pattern; returns the text."""
        rc, out, err = run([command, "--help"])
        self.assertEqual(rc, 0, err)
        for group in groups:
            self.assertIn(group, out)
        for pattern in lines:
            self.assertRegex(out, pattern)
        return out

    def test_sync_help_groups_types_defaults_environment(self):
        out = self.assert_help(
            "sync",
            ("Input:", "State:", "Backend:", "TLS:", "Retry:", "Output and logging:", "Scale-out"),
            (r"--drain-timeout DURATION\s+[^\n]*default 30s",
             r"--progress-interval DURATION\s+[^\n]*default 10s",
             r"--batch-bytes SIZE\s+[^\n]*default 4MiB",
             r"--max-in-flight N\s+[^\n]*default 16 \(langfuse-legacy: 4\)",
             r"-w,--workers N\s+Mapper threads",
             r"--host URL\s+[^\n]*\[langfuse, langfuse-legacy, phoenix\]"))
        for var in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "PHOENIX_API_KEY",
                    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "CHSYNC_<FLAG>"):
            self.assertIn(var, out)
        self.assertNotIn("seed", out.lower())
        self.assertNotIn("ch sync", out)
        rc, out, err = run(["--help"])
        self.assertNotIn("ch sync", out)
        self.assertNotRegex(out, r"--(settle|drain-timeout|progress-interval|max-memory|batch-bytes|"
                                 r"timeout|lease|rate|retry-max) TEXT")

    def test_bench_help_grouped_like_sync(self):
        out = self.assert_help(
            "bench",
            ("Input:", "Load:", "Backend:", "TLS:", "Output and logging:", "Environment:",
             "Exit codes:"),
            (r"--duration DURATION\s+[^\n]*default 30s", r"--rate RATE\s",
             r"--batch-bytes SIZE\s+[^\n]*default 4MiB",
             r"--max-in-flight N\s+[^\n]*default 1000", r"--io-threads N\s+[^\n]*default 2",
             r"--log-format text\|json"))
        self.assertNotIn("UINT", out)  # every value has its type
        self.assertNotRegex(out, r"--(duration|ramp|timeout|rate|generate|max-memory|batch-bytes|"
                                 r"endpoint|host|report|html|ca-file) TEXT")
        for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "LANGFUSE_PUBLIC_KEY", "PHOENIX_API_KEY"):
            self.assertIn(var, out)
        self.assertRegex(out, r"3 no request\s+was accepted")
        # And what it says does not apply is refused.
        for args, needle in ((["--host", "http://127.0.0.1:9"], "--host does not apply to --backend otlp"),
                             (["--ramp", "2s"], "--ramp does not apply without --rate"),
                             (["--max-in-flight", "5"], "--max-in-flight does not apply"),
                             (["--self", "--rate", "5/s"], "--rate does not apply to bench --self")):
            rc, out, err = run(["bench", EXAMPLES, "--duration", "1s", *args])
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(needle, err)

    def test_no_command_help_and_suggestions(self):
        rc, out, err = run([])
        self.assertEqual(rc, 2)
        self.assertIn("sync", err)
        self.assertIn("Usage", err)
        rc, out, err = run(["help"])
        self.assertEqual(rc, 0)
        self.assertIn("Usage", out)
        rc, out, err = run(["help", "sync"])
        self.assertEqual(rc, 0)
        self.assertIn("--endpoint", out)
        rc, out, err = run(["synk"])
        self.assertEqual(rc, 2)
        self.assertIn("did you mean 'sync'", err)

    def test_sync_status_takes_db_after_status(self):
        db = self.db()
        rc, out, err = run(["sync", EXAMPLES, "--backend", "null", "--settle", "0", "--db", db])
        self.assertEqual(rc, 0, err)
        rc1, out1, err1 = run(["sync", "status", "--db", db, "--json"])
        self.assertEqual(rc1, 0, err1)
        rc2, out2, err2 = run(["sync", "--db", db, "status", "--json"])
        self.assertEqual(rc2, 0, err2)
        self.assertEqual(json.loads(out1), json.loads(out2))
        self.assertTrue(json.loads(out1)["exists"])


class FailureReasonTest(TempTestCase):
    """Point 1: the reason of a failure is shown (progress, summary, -v), and where dead letters are.
    Point 3: a 404 on a path without /v1/traces suggests it."""

    def test_rejection_reason_in_summary_and_dead_letter_path(self):
        s = self.sink("--reject-all", "400")
        d = os.path.join(self.tmp, "g")
        gen(d, "200K", 2)
        rc, out, err = run(["sync", d, "--backend", "otlp", "--endpoint", s.traces_url, "--settle", "0",
                            "--db", self.db(), "-v"])
        self.assertEqual(rc, 1, err)
        self.assertIn("HTTP 400: injected fault", err)
        # A 400 is a rejection too (issue 20: spans_rejected counts every span the backend refused).
        self.assertRegex(err, r"backend otlp: 0 spans sent, \d+ dead, \d+ rejected; last error: HTTP 400")
        self.assertIn("dead-letters", err)
        self.assertIn("replay-dead-letters", err)
        self.assertRegex(err, r"otlp\[otlp\]: request failed: HTTP 400")   # -v logs each failure

    def test_404_suggests_v1_traces(self):
        s = self.sink()
        rc, out, err = run(["sync", EXAMPLES, "--endpoint", s.url + "/", "--settle", "0",
                            "--db", self.db(), "--retry-max-elapsed", "2s"])
        self.assertEqual(rc, 3, err)
        self.assertIn(f"did you mean {s.url}/v1/traces?", err)


class NothingHappenedTest(TempTestCase):
    """Point 8: each "nothing happened" case is explained in one line; per-backend summary."""

    def test_empty_dir_non_transcript_txt_and_held_turns(self):
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty)
        rc, out, err = run(["sync", empty, "--backend", "null", "--db", self.db()])
        self.assertEqual(rc, 0, err)
        self.assertIn(f"no transcript files (*.jsonl) found in {empty}", err)
        other = os.path.join(self.tmp, "other")
        os.makedirs(other)
        with open(os.path.join(other, "x.jsonl"), "w") as f:
            f.write('{"hello": "world"}\n{"a": 1}\n')
        rc, out, err = run(["sync", other, "--backend", "null", "--settle", "0", "--db", self.db("b.db")])
        self.assertIn("no Claude Code transcript entries", err)
        txt = os.path.join(self.tmp, "notes.txt")
        with open(txt, "w") as f:
            f.write("hello\n")
        rc, out, err = run(["sync", txt, "--backend", "null", "--db", self.db("c.db")])
        self.assertIn("notes.txt", err)
        self.assertRegex(err, r"not a transcript file|unsupported|not read")
        # A fresh file: held turns mention --settle.
        fresh = os.path.join(self.tmp, "fresh")
        shutil.copytree(EXAMPLES, fresh)
        for root, _, files in os.walk(fresh):
            for name in files:
                os.utime(os.path.join(root, name))  # modified just now: still being written
        rc, out, err = run(["sync", fresh, "--backend", "null", "--db", self.db("d.db")])
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"\d+ turns held back: .*--settle 10m.*--settle 0")

    def test_two_backends_summarised_separately(self):
        ok = self.sink()
        bad = self.sink("--reject-all", "400")
        cfg = os.path.join(self.tmp, "two.toml")
        with open(cfg, "w") as f:
            f.write(f'[backends.good]\ntype = "otlp"\nendpoint = "{ok.traces_url}"\n'
                    f'[backends.bad]\ntype = "otlp"\nendpoint = "{bad.traces_url}"\n')
        rc, out, err = run(["sync", EXAMPLES, "--config", cfg, "--backend", "good", "--backend", "bad",
                            "--settle", "0", "--db", self.db()])
        self.assertEqual(rc, 1, err)
        good = re.search(r"backend good: (\d+) spans sent", err)
        badm = re.search(r"backend bad: 0 spans sent, (\d+) dead", err)
        self.assertTrue(good and badm, err)
        self.assertEqual(int(good.group(1)), int(badm.group(1)))


class JsonLogTest(TempTestCase):
    """Point 5: with --log-format json every stderr line is JSON with typed fields."""

    def test_every_line_is_json_with_typed_fields(self):
        s = self.sink("--reject-all", "400")
        d = os.path.join(self.tmp, "g")
        gen(d, "300K", 2)
        with open(os.path.join(d, "bad.jsonl"), "w") as f:
            f.write('{"type": "user", "sessionId": "s", broken\n')
        rc, out, err = run(["sync", d, "--backend", "otlp", "--endpoint", s.traces_url, "--settle", "0",
                            "--db", self.db(), "--log-format", "json", "--progress-interval", "1ms",
                            "-v"])
        self.assertEqual(rc, 1, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines)
        objs = [json.loads(l) for l in lines]  # raises on any non-JSON line
        prog = [o for o in objs if o.get("event") == "progress"]
        self.assertTrue(prog, err)
        for k in ("files_done", "bytes_read", "spans_sent", "spans_per_s", "in_flight", "retries"):
            self.assertIsInstance(prog[-1][k], (int, float), k)
        summary = [o for o in objs if o.get("event") == "summary"]
        self.assertEqual(len(summary), 1, err)
        self.assertIsInstance(summary[0]["spans_sent"], int)
        self.assertIsInstance(summary[0]["bad_lines"], int)
        backend = [o for o in objs if o.get("event") == "backend_summary"]
        self.assertEqual(backend[0]["backend"], "otlp")
        self.assertEqual(backend[0]["status"], "partial")
        self.assertIn("HTTP 400", backend[0]["error"])
        self.assertTrue(any("bad line" in o["msg"] for o in objs), err)

    def assert_json_lines(self, args, rc_expected, env=None):
        rc, out, err = run(args, env=env)
        self.assertEqual(rc, rc_expected, (args, err))
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines, args)
        return [json.loads(l) for l in lines]  # raises on any plain line

    def test_every_command_that_logs_takes_log_format_json(self):
        bad_db = os.path.join(self.tmp, "bad.db")
        with open(bad_db, "w") as f:
            f.write("not a database\n")
        for args in (["status", "--db", bad_db], ["sync", "status", "--db", bad_db],
                     ["hash", "no-line-number"], ["hash", "/nonexistent:3"],
                     ["state", "backup", "--db", self.db("s.db")], ["status", "--bogus"]):
            objs = self.assert_json_lines(args + ["--log-format", "json"], 2)
            self.assertEqual(objs[-1]["level"], "error", args)
        objs = self.assert_json_lines(["sync", "--log-format", "json", "status", "--db", bad_db], 2)
        self.assertIn("not an SQLite database", objs[0]["msg"])
        objs = self.assert_json_lines(["synk", "--log-format", "json"], 2)
        self.assertIn("did you mean 'sync'", objs[0]["msg"])
        self.assert_json_lines(["hash", "x"], 2, env=clean_env(CHSYNC_LOG_FORMAT="json"))
        # replay-dead-letters: dead letters from a 400, replayed to an endpoint that refuses.
        s = self.sink("--reject-all", "400")
        db = self.db("dl.db")
        rc, out, err = run(["sync", EXAMPLES, "--endpoint", s.traces_url, "--settle", "0", "--db", db])
        self.assertEqual(rc, 1, err)
        rc, out, err = run(["replay-dead-letters", "--db", db, "--endpoint", "http://127.0.0.1:9/v1/traces",
                            "--log-format", "json"])
        self.assertNotEqual(rc, 0, err)
        objs = [json.loads(l) for l in err.splitlines() if l.strip()]
        self.assertTrue(any(o["level"] == "error" for o in objs), err)
        # bench: its progress lines and a typed summary (the table stays on stdout). A refused
        # endpoint stops the bench early (after ~1 s here); --duration only bounds it. With 1 s,
        # TSan's chsync on a loaded box finished no request in time: error_rate 0 of 0.
        objs = self.assert_json_lines(["bench", "--generate", "300K", "--duration", "20s",
                                       "--endpoint", "http://127.0.0.1:9/v1/traces",
                                       "--log-format", "json"], 3)
        loaded = [o for o in objs if o.get("event") == "bench_loaded"]
        self.assertIsInstance(loaded[0]["spans"], int)
        summary = [o for o in objs if o.get("event") == "bench_summary"]
        self.assertEqual(summary[0]["requests_ok"], 0)
        self.assertEqual(summary[0]["error_rate"], 1)
        self.assertIn("refused", summary[0]["error"])
        self.assert_json_lines(["bench", "--self", "--generate", "300K", "--log-format", "json"], 0)
        # version logs nothing, and its help says so.
        rc, out, err = run(["--help"])
        self.assertRegex(out, r"version\s+Print version[^\n]*no --log-format")


if __name__ == "__main__":
    unittest.main()
