"""Runs a test binary with CHSYNC_TEST_PG_URL pointing at a private, throw-away PostgreSQL
(tests/scaleout/pg_cluster.py), so value-parameterized state tests also run over PostgreSQL.

    python3 with_pg.py BINARY [ARGS...]

Exit code: the binary's. PostgreSQL unavailable: exit 77 (ctest SKIP_RETURN_CODE) with the
reason, or exit 1 when CHSYNC_REQUIRE_PG=1 or CHSYNC_REQUIRE_ALL=1 (CI) — a skip CI notices.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scaleout"))
from pg_cluster import PgCluster, PgUnavailable  # noqa: E402

SKIP = 77


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        pg = PgCluster(fast=True)
    except PgUnavailable as e:
        required = "1" in (os.environ.get("CHSYNC_REQUIRE_PG"), os.environ.get("CHSYNC_REQUIRE_ALL"))
        print(f"PostgreSQL unavailable: {e}", file=sys.stderr)
        return 1 if required else SKIP
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["CHSYNC_TEST_PG_URL"] = pg.url
        p = subprocess.run(sys.argv[1:], env=env, timeout=600, capture_output=True, text=True)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        # A filter that matched no PostgreSQL test would pass silently: refuse that.
        if p.returncode == 0 and "/postgresql" not in p.stdout:
            print("no PostgreSQL test ran", file=sys.stderr)
            return 1
        return p.returncode
    finally:
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
