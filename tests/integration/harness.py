"""Helpers for integration tests: run the real chsync binary against a real chsync-sink.

Every network test binds 127.0.0.1 only, uses a free port chosen by the sink (--listen
127.0.0.1:0 + --port-file), bounds every wait with a timeout, and kills what it started.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.request
import zlib

BUILD = os.environ.get("CHSYNC_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
BUILD = os.path.abspath(BUILD)
SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# CHSYNC_BIN runs the tests against another chsync binary (the TSan build in .ci/run) while the
# sink and the generator still come from CHSYNC_BUILD_DIR.
CHSYNC = os.path.abspath(os.environ.get("CHSYNC_BIN") or os.path.join(BUILD, "chsync"))
SINK = os.path.join(BUILD, "chsync-sink")
GEN = os.path.join(BUILD, "chsync-gen")
REAL = os.path.join(SRC, "tests", "data", "real")
# Under ASan/UBSan memory and time are inflated several times: tests keep every functional
# assertion but skip the speed and RSS bounds, which are checked on the release build.
SANITIZED = bool(os.environ.get("CHSYNC_TEST_SANITIZED"))
EXAMPLES = os.path.join(SRC, "examples", "projects")
# .ci/run sets it: nothing may be skipped (tests/support/run_unittest.py fails skips).
REQUIRE_ALL = os.environ.get("CHSYNC_REQUIRE_ALL") == "1"


def have_tool(name):
    """Whether a CLI tool a test uses for some variants is on PATH. Under CHSYNC_REQUIRE_ALL=1 a
    missing one is an error, not a silently dropped variant (scripts/install-deps has them)."""
    if shutil.which(name):
        return True
    if REQUIRE_ALL:
        raise RuntimeError(f"CHSYNC_REQUIRE_ALL=1 but {name} is not installed")
    return False


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "LANGFUSE_", "CHSYNC_", "CH_SYNC_", "CLAUDE_"))}
    env.update(extra)
    return env


class Sink:
    """A chsync-sink process on a free loopback port."""

    def __init__(self, workdir, *args, timeout=10):
        self.workdir = workdir
        self.port_file = os.path.join(workdir, f"sink-{time.time_ns()}.port")
        self.record = os.path.join(workdir, f"sink-{time.time_ns()}.jsonl")
        self.args = list(args)
        self._log = open(os.path.join(workdir, "sink.log"), "ab")
        self.proc = subprocess.Popen(
            [SINK, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
             "--record", self.record, *self.args],
            stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.time() + timeout
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError(f"chsync-sink exited with {self.proc.returncode}")
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("chsync-sink did not start")
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self):
        return self.url + "/v1/traces"

    def stats(self):
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as r:
            return json.loads(r.read())

    def control(self, **settings):
        req = urllib.request.Request(self.url + "/control", data=json.dumps(settings).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read()

    def spans(self):
        """Recorded spans. Polled while the sink still appends: a last line without its newline
        is being written and is left for the next call (a complete line must parse)."""
        out = []
        if not os.path.exists(self.record):
            return out
        with open(self.record) as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                line = line.strip()
                if line:
                    out.append(json.loads(line))
        return out

    def span_ids(self):
        """Recorded span ids (lower-case hex), read one record at a time so a large run does not
        grow this process (see DeliveryTest.expected_ids)."""
        out = []
        if not os.path.exists(self.record):
            return out
        with open(self.record) as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                if line.strip():
                    out.append(json.loads(line)["span_id"].lower())
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def run(args, timeout=120, env=None, input=None, check_rc=None):
    p = subprocess.run([CHSYNC, *args], capture_output=True, timeout=timeout,
                       env=env or clean_env(), input=input)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if check_rc is not None and p.returncode != check_rc:
        raise AssertionError(f"chsync {' '.join(args)} exited {p.returncode}, wanted {check_rc}\n"
                             f"stderr:\n{err[-4000:]}")
    return p.returncode, out, err


def json_spans(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def gen(outdir, size="2M", seed=1, *extra):
    p = subprocess.run([GEN, "--out", outdir, "--bytes", size, "--seed", str(seed), *extra],
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode())
    return json.loads(p.stdout)


def counts_by_kind(console_spans):
    """What the generator's manifest counts, recounted from console JSON spans (dry run or
    --backend console): model responses, tool calls, user turns (a "pseudo_turn" trace holds
    what comes before a session's first prompt), system events."""
    return {"api_responses": sum(1 for s in console_spans if s["kind"] == "generation"),
            "tool_uses": sum(1 for s in console_spans if s["kind"] == "span" and s.get("tool_name")),
            "prompts": sum(1 for s in console_spans if s["kind"] == "trace"
                           and not (s.get("metadata") or {}).get("pseudo_turn")),
            "system_events": sum(1 for s in console_spans if s["kind"] == "event")}


def assert_matches_manifest(test, console_spans, manifest, label=""):
    """The independent oracle for "nothing lost": chsync-gen counts what it writes (api
    responses, tool uses, user prompts) without any chsync code, so a mapper bug that drops
    spans in the dry run and in the delivery alike still fails here."""
    want = {k: manifest[k] for k in ("api_responses", "tool_uses", "prompts", "system_events")}
    test.assertGreater(want["api_responses"], 0, "empty manifest")
    test.assertEqual(counts_by_kind(console_spans), want, f"spans vs chsync-gen manifest {label}")


class TempTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="chsync-it-")
        self.sinks = []

    def tearDown(self):
        for s in self.sinks:
            s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sink(self, *args):
        s = Sink(self.tmp, *args)
        self.sinks.append(s)
        return s

    def refused_url(self, path="/v1/traces"):
        """A loopback URL whose connections are refused, for the test's whole life: the port is
        held by a bound socket that never listens (a connect gets RST). A port found free and then
        closed could be taken meanwhile by a sink of a test running beside this one."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        return f"http://127.0.0.1:{s.getsockname()[1]}{path}"

    def db(self, name="state.db"):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        """Writes text to a file of the test's temporary folder; returns its path."""
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def print_config(self, *args, env=None):
        """`chsync sync --print-config ARGS` as parsed JSON (exit 0 asserted)."""
        rc, out, err = run(["sync", "--print-config", *args], env=env)
        self.assertEqual(rc, 0, err)
        return json.loads(out)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def chromium():
    """Headless Chromium's binary (scripts/install-deps installs it), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html, png, width, height, timeout=180):
    """Renders a local HTML file in headless Chromium into the PNG file `png`, no network beyond
    the file itself; AssertionError with Chromium's stderr when it wrote nothing. --no-sandbox:
    CI runs as root, where Chromium's sandbox refuses to start."""
    with tempfile.TemporaryDirectory(prefix="chsync-chromium-") as profile:
        p = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={png}", "file://" + html],
            capture_output=True, timeout=timeout)
    if not os.path.exists(png):
        raise AssertionError("chromium wrote no screenshot: "
                             + p.stderr.decode(errors="replace")[-2000:])


def read_png(path):
    """(width, height, bytes per pixel, rows of bytes) of an 8-bit RGB/RGBA non-interlaced PNG
    (what Chromium writes), decoded with zlib only: no imaging library is needed."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 3
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        off = y * (stride + 1)
        ftype, line = raw[off], bytearray(raw[off + 1:off + 1 + stride])
        for i in range(stride):  # undo the row filter (PNG specification, section 9)
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows
