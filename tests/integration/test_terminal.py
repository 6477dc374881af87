"""The live progress line in a real terminal (issue 23 points 1 and 4): tmux at 80 columns.

tmux gives the process a real pty of a known size and lets the test read the screen as a user
sees it (capture-pane), resize it, and check that redraws stay on one line. Each test uses its
own tmux server socket (-L) and kills it at the end.
"""
import os
import re
import shutil
import subprocess
import time
import unittest

from harness import CHSYNC, TempTestCase, clean_env, gen


class Tmux:
    def __init__(self, name, cmd, width=80, height=24, env=None):
        self.sock = f"chsync-{name}-{os.getpid()}"
        self.env = env or clean_env()
        # The shell waits after chsync so the final screen can still be read.
        subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", "new-session", "-d", "-x",
                        str(width), "-y", str(height), "-s", "t", f"{cmd}; echo EXIT=$?; sleep 60"],
                       check=True, env=self.env, timeout=10)

    def screen(self):
        p = subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p", "-t", "t"],
                           capture_output=True, timeout=10, env=self.env)
        return p.stdout.decode("utf-8", "replace")

    def resize(self, width, height=24):
        subprocess.run(["tmux", "-L", self.sock, "resize-window", "-t", "t", "-x", str(width), "-y",
                        str(height)], check=True, timeout=10, env=self.env)

    def wait_for(self, pattern, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.screen()
            if re.search(pattern, s):
                return s
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never appeared; screen:\n{self.screen()}")

    def wait_until(self, check, timeout=60):
        """Polls the screen until check(screen) is true; returns that screen (else the last one,
        which the caller's assertions then explain)."""
        deadline = time.time() + timeout
        s = self.screen()
        while not check(s) and time.time() < deadline:
            time.sleep(0.2)
            s = self.screen()
        return s

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10,
                       env=self.env)


@unittest.skipUnless(shutil.which("tmux"), "tmux not installed (scripts/install-deps)")
class ProgressLineTest(TempTestCase):
    def start(self, name, cmd, width=80):
        t = Tmux(name, cmd, width=width, env=clean_env(TERM="xterm"))
        self.addCleanup(t.kill)
        return t

    def progress_lines(self, screen):
        return [l for l in screen.splitlines() if re.search(r"\d+/\d+ files|spans", l)
                and "chsync:" not in l]

    def test_fits_80_columns_redraws_in_place_and_follows_resizes(self):
        d = os.path.join(self.tmp, "g")
        gen(d, "12M", 6)
        s = self.sink("--latency-ms", "60", "--no-decode")
        cmd = (f"{CHSYNC} sync {d} --backend otlp --endpoint {s.traces_url} --batch-spans 32 "
               f"--max-in-flight 1 --settle 0 --db {self.db()}")
        t = self.start("fit", cmd)
        t.wait_for(r"sending")
        time.sleep(1.5)  # several redraws
        screen = t.screen()
        lines = self.progress_lines(screen)
        self.assertEqual(len(lines), 1, "one line, redrawn in place:\n" + screen)
        self.assertLessEqual(len(lines[0].rstrip()), 79, lines[0])
        self.assertRegex(lines[0], r"^sending  \d+%  ")
        self.assertRegex(lines[0], r"[\d.k]+ spans  [\d.k]+/s")
        self.assertRegex(lines[0], r"\d+ in flight")
        # Narrower window: the line shrinks to fit at the next redraw (every 250 ms; waited for
        # rather than slept on, a loaded box may redraw late).
        t.resize(50)

        def fits(screen):
            lines = self.progress_lines(screen)
            return len(lines) == 1 and len(lines[0].rstrip()) <= 49
        screen = t.wait_until(fits, timeout=30)
        lines = self.progress_lines(screen)
        self.assertEqual(len(lines), 1, screen)
        self.assertLessEqual(len(lines[0].rstrip()), 49, lines[0])
        self.assertTrue(lines[0].startswith("sending"), lines[0])

    def test_retrying_shows_state_and_last_error_not_eta(self):
        d = os.path.join(self.tmp, "g")
        gen(d, "1M", 2)
        s = self.sink("--fail-first", "100000", "--fail-status", "503")
        cmd = (f"{CHSYNC} sync {d} --backend otlp --endpoint {s.traces_url} --settle 0 "
               f"--retry-initial 100ms --retry-max 300ms --retry-max-elapsed 8s --db {self.db()}")
        t = self.start("retry", cmd)
        # The first retrying line may be drawn before the error it shows is known: wait for one
        # with both, instead of sleeping and hoping (the run gives up after 8 s).
        screen = t.wait_for(r"(?m)^retrying.*otlp: HTTP 503", timeout=30)
        lines = self.progress_lines(screen)
        self.assertEqual(len(lines), 1, screen)
        line = lines[0]
        self.assertLessEqual(len(line.rstrip()), 79, line)
        self.assertTrue(line.startswith("retrying"), line)
        self.assertRegex(line, r"retries \d+")
        self.assertIn("otlp: HTTP 503", line)
        self.assertNotIn("ETA", line)
        # After giving up: the summary names the reason, the line is gone.
        screen = t.wait_for(r"EXIT=3", timeout=40)
        self.assertIn("HTTP 503", screen)


if __name__ == "__main__":
    unittest.main()
