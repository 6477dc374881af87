"""docs/deploy.md and docs/chsync-worker@.service: the systemd template unit and the timer shown in
deploy.md pass `systemd-analyze verify` (like tests/integration/test_ops.py does for
chsync.service), and the Kubernetes manifests in deploy.md are valid YAML with the flags the CLI
spec names."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import CHSYNC, SRC  # noqa: E402

DEPLOY = os.path.join(SRC, "docs", "deploy.md")
UNIT = os.path.join(SRC, "docs", "chsync-worker@.service")


def doc():
    with open(DEPLOY) as f:
        return f.read()


def blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", doc(), re.S)


class DeployDocsTest(unittest.TestCase):
    def test_worker_template_unit_and_timer_verify(self):
        sa = shutil.which("systemd-analyze")
        if not sa:
            self.skipTest("systemd-analyze not installed")
        timers = [b for b in blocks("ini") if b.startswith("# /etc/systemd/system/chsync-worker@.timer")]
        self.assertEqual(len(timers), 1, "deploy.md must show chsync-worker@.timer once")
        with open(UNIT) as f:
            unit = f.read()
        self.assertIn("--worker-id %H:%i", unit)
        self.assertIn("EnvironmentFile=/etc/chsync/worker.env", unit)
        self.assertIn("Restart=on-failure", unit)
        with tempfile.TemporaryDirectory() as d:
            # verify loads instances by path: write instance 1 of the template and of the timer.
            with open(os.path.join(d, "chsync-worker@1.service"), "w") as f:
                f.write(unit.replace("/usr/bin/chsync", CHSYNC))
            with open(os.path.join(d, "chsync-worker@1.timer"), "w") as f:
                f.write(timers[0])
            p = subprocess.run([sa, "verify", os.path.join(d, "chsync-worker@1.service"),
                                os.path.join(d, "chsync-worker@1.timer")],
                               capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertNotIn(b"chsync-worker", p.stderr)  # no warnings about our units

    def test_kubernetes_manifests_parse(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml not installed")
        kinds, args = [], []
        for b in blocks("yaml"):
            for d in yaml.safe_load_all(b):
                self.assertIsInstance(d, dict)
                kinds.append(d.get("kind"))
                stack = [d]
                while stack:
                    o = stack.pop()
                    if isinstance(o, dict):
                        for k, v in o.items():
                            (args.append(v) if k == "args" else stack.append(v))
                    elif isinstance(o, list):
                        stack.extend(o)
        self.assertIn("Job", kinds)
        self.assertIn("CronJob", kinds)
        self.assertIn("Secret", kinds)
        indexed = [a for a in args if "--shard" in a]
        self.assertEqual(len(indexed), 1)
        a = indexed[0]
        self.assertRegex(a[a.index("--shard") + 1], r"^/\d+$")
        self.assertIn("$(JOB_COMPLETION_INDEX)", a[a.index("--db") + 1])
        for a in args:
            self.assertEqual(a[0], "sync")
            if "--shard" not in a:
                self.assertIn("--lease", a)
        self.assertIn("completionMode: Indexed", doc())
        self.assertIn("CHSYNC_STATE_URL", doc())


if __name__ == "__main__":
    unittest.main()
