"""Operator experience (issue 10): flags, precedence, secrets, progress, logs, report."""
import json
import os
import shutil
import subprocess
import unittest

from harness import CHSYNC, EXAMPLES, REAL, SRC, TempTestCase, clean_env, gen, json_spans, load_json, run


class CliTest(TempTestCase):
    def test_precedence_flags_over_env_over_file_over_defaults(self):
        cfg = self.write("c.toml", '[sync]\nsettle = "7m"\nworkers = 3\nmax-field-bytes = "1KiB"\n')
        c = self.print_config("--config", cfg)
        self.assertEqual(c["settle_ms"], 7 * 60000)          # file over default
        self.assertEqual(c["workers"], 3)
        self.assertEqual(c["max_field_bytes"], 1024)
        self.assertEqual(c["max_line_bytes"], 64 << 20)       # default
        self.assertEqual(c["max_spool_bytes"], 4 << 30)       # default (issue 20 #13)
        self.assertEqual(c["sources"]["max-spool"], "default")
        c = self.print_config("--config", self.write("s.toml", '[sync]\nmax-spool = "1GiB"\n'),
                              env=clean_env(CHSYNC_MAX_SPOOL="2GiB"))
        self.assertEqual(c["max_spool_bytes"], 2 << 30)       # env over file
        env = clean_env(CHSYNC_SETTLE="2m", CHSYNC_WORKERS="1")
        c = self.print_config("--config", cfg, env=env)
        self.assertEqual(c["settle_ms"], 2 * 60000)          # env over file
        self.assertEqual(c["workers"], 1)
        c = self.print_config("--config", cfg, "--settle", "0", env=env)
        self.assertEqual(c["settle_ms"], 0)                  # flag over env
        self.assertEqual(c["workers"], 1)

    def test_default_config_path_from_xdg(self):
        d = os.path.join(self.tmp, "xdg", "chsync")
        os.makedirs(d)
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write('[sync]\nsettle = "3m"\n')
        c = self.print_config(env=clean_env(XDG_CONFIG_HOME=os.path.join(self.tmp, "xdg")))
        self.assertEqual(c["settle_ms"], 3 * 60000)

    def test_named_backend_instances_and_masked_secrets(self):
        cfg = self.write("c.toml", """
[sync]
backend = ["collector", "lf"]

[backends.collector]
type = "otlp"
endpoint = "http://127.0.0.1:9/v1/traces"
headers = { Authorization = "Bearer topsecret-123456", "x-team" = "ml" }

[backends.lf]
type = "langfuse"
host = "http://127.0.0.1:9"
public_key = "pk-lf-public-abcdef"
secret_key = "sk-lf-very-secret-abcdef"
""")
        rc, out, err = run(["sync", "--config", cfg, "--print-config"])
        self.assertEqual(rc, 0, err)
        for secret in ("topsecret-123456", "sk-lf-very-secret-abcdef", "pk-lf-public-abcdef"):
            self.assertNotIn(secret, out + err)
        c = json.loads(out)
        names = [(b["instance"], b["type"]) for b in c["backends"]]
        self.assertEqual(names, [("collector", "otlp"), ("lf", "langfuse")])
        self.assertEqual(c["backends"][0]["endpoint"], "http://127.0.0.1:9/v1/traces")
        # Every header value is masked, not only those with a secret-looking name (issue 20 #10).
        self.assertIn("x-team=****", c["backends"][0].values())

    def test_config_errors_name_file_and_line(self):
        cfg = self.write("bad.toml", '[sync]\nsettle = "7m"\nworkers = = 3\n')
        rc, out, err = run(["sync", "--config", cfg, "--print-config"])
        self.assertEqual(rc, 2)
        self.assertIn("bad.toml:3", err)
        cfg = self.write("bad2.toml", '[backends.x]\nendpoint = "http://a"\n')
        rc, out, err = run(["sync", "--config", cfg, "--backend", "x", "--print-config"])
        self.assertEqual(rc, 2)
        self.assertIn("needs type", err)

    def test_bad_values_name_the_flag(self):
        cases = {("--settle", "10 minutes"): "--settle", ("--max-field-bytes", "huge"): "--max-field-bytes",
                 ("--rate", "fast"): "--rate", ("--workers", "0"): "--workers",
                 ("--format", "xml"): "--format", ("--since", "yesterday"): "--since"}
        for (flag, value), name in cases.items():
            rc, out, err = run(["sync", EXAMPLES, flag, value, "--dry-run"])
            self.assertEqual(rc, 2, (flag, value, err))
            self.assertIn(name, err)
            self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_help_on_every_subcommand(self):
        for sub in ("sync", "status", "hash", "replay-dead-letters", "state", "version"):
            rc, out, err = run([sub, "--help"])
            self.assertEqual(rc, 0, sub)
            self.assertIn("Usage", out)
        rc, out, err = run(["--help"])
        self.assertIn("Exit codes", out)

    def test_version(self):
        rc, out, err = run(["version"])
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"chsync \d+\.\d+\.\d+ \(git [0-9a-f]+|unknown")
        self.assertIn("simdjson", out)
        self.assertIn("SQLite", out)

    def test_docs_cli_md_is_the_current_help(self):
        # docs/cli.md is generated from --help; a flag changed without regenerating it fails here.
        import difflib
        import sys
        fresh = os.path.join(self.tmp, "cli.md")
        p = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "gen-cli-docs"), CHSYNC,
                            fresh], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        with open(os.path.join(SRC, "docs", "cli.md")) as f:
            committed = f.read().splitlines(keepends=True)
        with open(fresh) as f:
            current = f.read().splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(committed, current, "docs/cli.md", "--help"))
        self.assertEqual(diff, "", "docs/cli.md differs from --help; run scripts/gen-cli-docs:\n"
                         + diff[:4000])

    def test_hash_matches_the_seed_tools_own_vectors_on_every_line(self):
        # tests/data/vectors/seed-message-hash.tsv: the seed tool's own GenerateMessageHash (its Go
        # code) for every line of tests/data/real. One chsync run per file, all its lines at once.
        rows = {}
        with open(os.path.join(SRC, "tests", "data", "vectors", "seed-message-hash.tsv")) as f:
            for row in f:
                path, line, want = row.rstrip("\n").split("\t")
                rows.setdefault(path, []).append((int(line), want))
        self.assertEqual(sum(len(v) for v in rows.values()), 11506)
        checked = 0
        for path, lines in sorted(rows.items()):
            targets = [f"{os.path.join(REAL, path)}:{n}" for n, _ in lines]
            rc, out, err = run(["hash", *targets], timeout=120)
            self.assertEqual(rc, 0, f"{path}: {err}")
            got = out.split()
            self.assertEqual(len(got), len(lines), path)
            bad = [(n, want, g) for (n, want), g in zip(lines, got) if want != g]
            self.assertEqual(bad[:5], [], f"{path}: (line, seed, chsync), {len(bad)} differ")
            checked += len(got)
        self.assertEqual(checked, 11506)

    def test_hash_of_a_single_line_and_its_errors(self):
        f = os.path.join(EXAMPLES, "-path-to-Demo", "1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl")
        rc, out, err = run(["hash", f + ":3"])
        self.assertEqual(rc, 0, err)
        # The same bytes as tests/data/real/d-kimuson__claude-code-viewer/...:3 in the vectors.
        self.assertEqual(out, "91403e75bd85406160dc51227c090fe8\n")
        rc, out, err = run(["hash", f + ":3", f + ":1"])
        self.assertEqual((rc, out), (0, "91403e75bd85406160dc51227c090fe8\n"
                                         "e2d36e41616446cf46ee8222faf0801b\n"), err)
        rc, _, err = run(["hash", f + ":999999"])
        self.assertEqual(rc, 2)
        self.assertIn("fewer than 999999 lines", err)
        rc, _, err = run(["hash", f + ":0"])
        self.assertEqual(rc, 2)
        self.assertIn("bad line number", err)
        rc, _, err = run(["hash", f])
        self.assertEqual(rc, 2)
        self.assertIn("expected FILE:LINE", err)

    def test_non_tty_progress_is_plain_log_lines_and_json_logs(self):
        d = os.path.join(self.tmp, "g")
        gen(d, "3M", 5)
        rc, out, err = run(["sync", d, "--backend", "null", "--dry-run", "--settle", "0",
                            "--progress-interval", "1ms", "--workers", "1"])
        self.assertEqual(rc, 0, err)
        self.assertNotIn("\r", err)
        self.assertRegex(err, r"chsync: progress: (reading|sending|draining)  \d+%  \d+/\d+ files")
        rc, out, err = run(["sync", d, "--backend", "null", "--dry-run", "--settle", "0",
                            "--progress-interval", "1ms", "--log-format", "json", "--workers", "1"])
        self.assertEqual(rc, 0, err)
        progress = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
        self.assertTrue(progress, err)
        self.assertEqual(progress[0]["level"], "info")
        self.assertIn("ts", progress[0])

    @unittest.skipUnless(shutil.which("script"), "util-linux script(1) not installed")
    def test_progress_line_renders_in_a_pty(self):
        d = os.path.join(self.tmp, "g")
        gen(d, "20M", 6)
        sink_args = ["--latency-ms", "100", "--no-decode"]
        s = self.sink(*sink_args)
        # A known terminal size: script(1) copies the size of the terminal it runs in (none
        # under ctest: 80 columns), and a narrow one would drop fields the regex below expects.
        cmd = (f"stty cols 160 rows 40; "
               f"{CHSYNC} sync {d} --backend otlp --endpoint {s.traces_url} --batch-spans 64 "
               f"--max-in-flight 1 --settle 0 --db {self.db()} > /dev/null")
        p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                           timeout=120, env=clean_env())
        tty_out = p.stdout.decode("utf-8", "replace")
        self.assertIn("\r\x1b[K", tty_out, "live line is redrawn in place")
        self.assertRegex(tty_out, r"(reading|sending|draining)  \d+%  \d+/\d+ files  [\d.k]+ spans  "
                                  r"[\d.k]+/s  \d+ in flight")

    def test_report_numbers_match_the_sink(self):
        s = self.sink()
        report = os.path.join(self.tmp, "r.json")
        rc, out, err = run(["sync", EXAMPLES, "--backend", "otlp", "--endpoint", s.traces_url,
                            "--settle", "0", "--db", self.db(), "--report", report])
        self.assertEqual(rc, 0, err)
        r = load_json(report)
        st = s.stats()
        for key in ("schema", "files_scanned", "files_updated", "files_skipped", "spans_synced",
                    "spans_repeated", "turns_held", "requests", "retries", "dead_letters",
                    "bad_lines", "errors", "bytes_read", "duration_ms", "stages", "throughput"):
            self.assertIn(key, r)
        self.assertEqual(r["spans_synced"], st["spans_unique"])
        self.assertEqual(r["requests"], st["requests_total"])
        self.assertEqual(r["dead_letters"], 0)
        self.assertIn("(", err)  # the human summary on stderr
        self.assertIn("spans sent", err)


if __name__ == "__main__":
    unittest.main()
