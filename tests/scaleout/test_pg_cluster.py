"""PgCluster (pg_cluster.py) itself: a private PostgreSQL starts, answers SQL, runs beside a second
one on another port, and leaves nothing behind when stopped. Skipped, with the reason, only when
PostgreSQL cannot run here (binaries missing, no `postgres` user as root, no shared memory)."""
import os
import socket
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import pg_cluster  # noqa: E402
from pg_cluster import start_or_skip  # noqa: E402


def port_open(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PgClusterTest(unittest.TestCase):
    def setUp(self):
        ok, reason = pg_cluster.available()
        if not ok and os.environ.get("CHSYNC_REQUIRE_PG") != "1":
            self.skipTest(reason)
        self.clusters = []

    def tearDown(self):
        for c in self.clusters:
            c.stop()

    def start(self, **kw):
        c = start_or_skip(**kw)
        self.clusters.append(c)
        return c

    def test_start_query_stop(self):
        pg = self.start()
        self.assertTrue(pg.running)
        self.assertEqual(pg.url, f"postgresql://postgres@127.0.0.1:{pg.port}/chsync")
        self.assertEqual(pg.psql("SELECT 1"), [["1"]])
        self.assertEqual(pg.scalar("SELECT current_database()"), "chsync")
        major = int(pg.scalar("SHOW server_version_num")) // 10000
        if pg.bindir.startswith("/usr/lib/postgresql/"):
            self.assertEqual(str(major), pg.bindir.split("/")[4], "server is not from bindir")
        # Test speed settings, loopback only, room for many workers.
        self.assertEqual(pg.scalar("SHOW fsync"), "off")
        self.assertEqual(pg.scalar("SHOW synchronous_commit"), "off")
        self.assertEqual(pg.scalar("SHOW full_page_writes"), "off")
        self.assertEqual(pg.scalar("SHOW listen_addresses"), "127.0.0.1")
        self.assertEqual(pg.scalar("SHOW max_connections"), "200")
        # Several columns, NULL, several rows.
        self.assertEqual(pg.psql("SELECT 1, NULL, 'a' UNION ALL SELECT 2, 3, 'b' ORDER BY 1"),
                         [["1", "", "a"], ["2", "3", "b"]])
        with self.assertRaises(RuntimeError):
            pg.psql("SELECT * FROM no_such_table")
        base, port = pg.base, pg.port
        self.assertTrue(os.path.isdir(os.path.join(pg.datadir, "base")))
        pg.stop()
        self.assertFalse(os.path.exists(base), "stop() must remove the data directory")
        self.assertFalse(port_open(port), "the server must be gone after stop()")
        pg.stop()  # idempotent

    def test_two_clusters_at_once(self):
        a = self.start()
        b = self.start()
        self.assertNotEqual(a.port, b.port)
        self.assertNotEqual(a.datadir, b.datadir)
        a.psql("CREATE TABLE only_in_a(x int); INSERT INTO only_in_a VALUES (7)")
        self.assertEqual(a.scalar("SELECT x FROM only_in_a"), "7")
        self.assertEqual(b.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"),
                         "0")
        b.stop()
        self.assertEqual(a.psql("SELECT 1"), [["1"]], "stopping one cluster must not touch the other")

    def test_durable_mode_and_extra_database(self):
        pg = self.start(fast=False, settings={"shared_buffers": "32MB"})
        self.assertEqual(pg.scalar("SHOW fsync"), "on")
        self.assertEqual(pg.scalar("SHOW synchronous_commit"), "on")
        self.assertEqual(pg.scalar("SHOW shared_buffers"), "32MB")
        url = pg.createdb("other")
        self.assertTrue(url.endswith(f":{pg.port}/other"))
        self.assertEqual(pg.scalar("SELECT current_database()", db="other"), "other")

    def test_context_manager(self):
        with start_or_skip() as pg:
            base = pg.base
            self.assertEqual(pg.psql("SELECT 1"), [["1"]])
        self.assertFalse(os.path.exists(base))


if __name__ == "__main__":
    unittest.main()
