"""A small HTTP/1.1-aware fault-injecting TCP proxy for the faults suite (127.0.0.1 only).

The sink (tools/sink) injects status faults, latency, stalls and resets *after* reading a whole
request; what it cannot do is fail a request at other points of the exchange. This proxy sits
between chsync and chsync-sink, parses request boundaries (Content-Length; chsync never sends
chunked bodies) and applies, per request, one of:

  pass                 forward the request, relay the answer
  reset-before-body    read the headers, then RST the client: nothing reaches the sink
                       (the outcome is known to be "not delivered" -> zero duplicates allowed)
  reset-after-request  forward the request, let the sink answer, drop the answer and RST the
                       client (ambiguous outcome -> duplicates allowed, counted)
  half-open            read the request, forward nothing, never answer, never close
                       (a peer that vanished without FIN/RST; the client's timeout must fire)
  slow                 read the request body at `bandwidth` bytes/s (slow reader, backpressure)

A fault applies to a request when `rng.random() < rate` and fewer than `max_faults` were
injected. Runs in threads of the test process; `proxy.mode/rate/...` can be changed live.
"""
import random
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port, mode="pass", rate=1.0, max_faults=None, bandwidth=256 * 1024,
                 seed=13):
        self.upstream_port = upstream_port
        self.mode, self.rate, self.max_faults, self.bandwidth = mode, rate, max_faults, bandwidth
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults = 0
        self.requests = 0
        self.connections = 0
        self._socks = []
        self._stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    @property
    def traces_url(self):
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def stop(self):
        self._stop.set()
        self._t.join(timeout=5)
        self.lsock.close()
        with self.lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _pick(self):
        with self.lock:
            self.requests += 1
            if self.mode == "pass":
                return "pass"
            if self.max_faults is not None and self.faults >= self.max_faults:
                return "pass"
            if self.rng.random() < self.rate:
                self.faults += 1
                return self.mode
            return "pass"

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._socks.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _rst(sock):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass

    @staticmethod
    def _read_head(sock, buf):
        while b"\r\n\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                return None, buf
            buf += d
        i = buf.index(b"\r\n\r\n") + 4
        return buf[:i], buf[i:]

    @staticmethod
    def _content_length(head):
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                return int(v.strip())
        return 0

    def _read_body(self, sock, buf, n, slow):
        chunk = 4096
        while len(buf) < n:
            if slow:
                time.sleep(chunk / self.bandwidth)
            d = sock.recv(chunk if slow else 65536)
            if not d:
                return None, buf
            buf += d
        return buf[:n], buf[n:]

    def _serve(self, c):
        c.settimeout(60)
        up = None
        buf = b""
        try:
            while not self._stop.is_set():
                head, buf = self._read_head(c, buf)
                if head is None:
                    return
                fault = self._pick()
                if fault == "reset-before-body":
                    self._rst(c)
                    return
                body, buf = self._read_body(c, buf, self._content_length(head), fault == "slow")
                if body is None:
                    return
                if fault == "half-open":
                    while not self._stop.is_set():  # hold it open, say nothing
                        time.sleep(0.1)
                    return
                if up is None:
                    up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60)
                up.sendall(head + body)
                rbuf = b""
                rhead, rbuf = self._read_head(up, rbuf)
                if rhead is None:
                    self._rst(c)
                    return
                rbody, rbuf = self._read_body(up, rbuf, self._content_length(rhead), False)
                if fault == "reset-after-request":
                    self._rst(c)
                    return
                c.sendall(rhead + (rbody or b""))
        except OSError:
            return
        finally:
            if up is not None:
                up.close()
            try:
                c.close()
            except OSError:
                pass
