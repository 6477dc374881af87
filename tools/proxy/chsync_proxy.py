#!/usr/bin/env python3
"""chsync-proxy: a small forward proxy for tests (HTTP absolute-form requests and CONNECT
tunnels), so chsync's HTTP_PROXY / HTTPS_PROXY support is exercised end to end.

  chsync_proxy.py --listen 127.0.0.1:0 --port-file F [--log FILE] [--require-auth user:pass]

Binds loopback only. Each connection is handled by one asyncio task; the log file gets one line
per request ("CONNECT host:port" or "POST http://host:port/path") so tests can assert that the
traffic really went through the proxy. Stops on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import base64
import os
import signal


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


class Proxy:
    def __init__(self, log_path, auth):
        self.log_path = log_path
        self.auth = auth

    def log(self, line):
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(line + "\n")

    async def read_head(self, reader):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return method, target, version, headers, head

    def authorized(self, headers):
        if not self.auth:
            return True
        want = "Basic " + base64.b64encode(self.auth.encode()).decode()
        return headers.get("proxy-authorization") == want

    async def handle(self, reader, writer):
        try:
            method, target, version, headers, head = await self.read_head(reader)
            if not self.authorized(headers):
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                self.log(f"CONNECT {target}")
                up_r, up_w = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
                return
            # Absolute-form request: forward this one and everything after it on the connection
            # to the same origin (keep-alive clients reuse the proxy connection).
            if not target.startswith("http://"):
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            rest = target[len("http://"):]
            hostport, _, path = rest.partition("/")
            host, _, port = hostport.partition(":")
            self.log(f"{method} {target}")
            up_r, up_w = await asyncio.open_connection(host, int(port or 80))
            first = head.replace(target.encode(), ("/" + path).encode(), 1)
            up_w.write(first)
            await up_w.drain()
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            try:
                writer.close()
            except Exception:
                pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--require-auth")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("chsync-proxy binds loopback only")
    proxy = Proxy(a.log, a.require_auth)
    server = await asyncio.start_server(proxy.handle, host, int(port))
    real_port = server.sockets[0].getsockname()[1]
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(real_port))
    os.rename(tmp, a.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
