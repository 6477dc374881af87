"""Networks users have (issue 8): HTTP_PROXY (absolute-form), HTTPS_PROXY (CONNECT tunnel, TLS
end to end with the origin), NO_PROXY, and proxy authentication."""
import json
import os
import ssl
import subprocess
import urllib.request
import sys
import time
import unittest

from harness import EXAMPLES, SRC, TempTestCase, clean_env, run

PROXY = os.path.join(SRC, "tools", "proxy", "chsync_proxy.py")


class ProxyTest(TempTestCase):
    def start_proxy(self, *args):
        port_file = os.path.join(self.tmp, f"proxy-{time.time_ns()}.port")
        log = os.path.join(self.tmp, f"proxy-{time.time_ns()}.log")
        p = subprocess.Popen([sys.executable, PROXY, "--listen", "127.0.0.1:0", "--port-file",
                              port_file, "--log", log, *args])
        self.addCleanup(lambda: (p.terminate(), p.wait(timeout=10)))
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            self.assertIsNone(p.poll(), "proxy exited")
            self.assertLess(time.time(), deadline, "proxy did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            port = int(f.read())
        return f"http://127.0.0.1:{port}", log

    def proxy_log(self, log):
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return [l.strip() for l in f if l.strip()]

    def sync(self, endpoint, env, *extra):
        return run(["sync", EXAMPLES, "--backend", "otlp", "--endpoint", endpoint, "--settle", "0",
                    "--db", self.db(f"s{time.time_ns()}.db"), "--retry-max-elapsed", "5s",
                    "--retry-initial", "50ms", *extra], env=env, timeout=120)

    def test_http_through_proxy(self):
        s = self.sink()
        proxy, log = self.start_proxy()
        rc, out, err = self.sync(s.traces_url, clean_env(HTTP_PROXY=proxy))
        self.assertEqual(rc, 0, err)
        lines = self.proxy_log(log)
        self.assertTrue(lines, "requests went through the proxy")
        self.assertTrue(all(l.startswith("POST http://127.0.0.1:") for l in lines), lines)
        self.assertGreater(s.stats()["spans_unique"], 100)

    def test_no_proxy_bypasses(self):
        s = self.sink()
        proxy, log = self.start_proxy()
        rc, out, err = self.sync(s.traces_url, clean_env(HTTP_PROXY=proxy, NO_PROXY="localhost,127.0.0.1"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.proxy_log(log), [])
        self.assertGreater(s.stats()["spans_unique"], 100)

    def test_https_through_connect_tunnel(self):
        cert = os.path.join(self.tmp, "cert.pem")
        key = os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        s = self.sink("--tls-cert", cert, "--tls-key", key)
        proxy, log = self.start_proxy()
        url = f"https://127.0.0.1:{s.port}/v1/traces"
        rc, out, err = self.sync(url, clean_env(HTTPS_PROXY=proxy), "--ca-file", cert)
        self.assertEqual(rc, 0, err)
        lines = self.proxy_log(log)
        self.assertTrue(lines and all(l == f"CONNECT 127.0.0.1:{s.port}" for l in lines), lines)
        ctx = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"https://127.0.0.1:{s.port}/stats", context=ctx, timeout=5) as r:
            stats = json.loads(r.read())
        self.assertGreater(stats["spans_unique"], 100)

    def test_proxy_authentication(self):
        s = self.sink()
        proxy, log = self.start_proxy("--require-auth", "alice:s3cret")
        authed = proxy.replace("http://", "http://alice:s3cret@")
        rc, out, err = self.sync(s.traces_url, clean_env(HTTP_PROXY=authed))
        self.assertEqual(rc, 0, err)
        self.assertGreater(s.stats()["spans_unique"], 100)
        self.assertNotIn("s3cret", err)


if __name__ == "__main__":
    unittest.main()
