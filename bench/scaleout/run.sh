#!/usr/bin/env bash
# Scale-out measurements for BENCHMARKS.md: what a private PostgreSQL 15 sustains here
# (bench/pg_state_bench, durable settings) and the 1/2/4/8-worker scaling run with 50 ms and
# 200 ms of backend latency, with leases and, for comparison, with static shards (no database).
#   bash bench/scaleout/run.sh [BUILD_DIR]   (default build/; needs PostgreSQL 15 from apt)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
export CHSYNC_BUILD_DIR="$PWD/$BUILD"
out=$(mktemp -d /tmp/chsync-scaleout-XXXX)
echo "== PostgreSQL state micro-benchmarks (durable: fsync on)"
python3 - "$BUILD" <<'PY'
import os, subprocess, sys
sys.path.insert(0, "tests/scaleout"); sys.path.insert(0, "tests/integration")
from pg_cluster import PgCluster
pg = PgCluster(fast=False, max_connections=100)
try:
    env = dict(os.environ, CHSYNC_BENCH_PG_URL=pg.url)
    subprocess.run([os.path.join(sys.argv[1], "bench", "pg_state_bench"),
                    "--benchmark_filter=threads:(1|2|4|8)$", "--benchmark_min_time=2"],
                   env=env, check=True)
finally:
    pg.stop()
PY
for lat in 50 200; do
  echo "== scaling, ${lat} ms latency, leases"
  python3 bench/scaleout/scaling.py --bytes 100M --workers 1,2,4,8 --latency-ms "$lat" \
    --json "$out/leases-$lat.json"
  echo "== scaling, ${lat} ms latency, static shards"
  python3 bench/scaleout/scaling.py --bytes 100M --workers 1,2,4,8 --latency-ms "$lat" \
    --mode shards --json "$out/shards-$lat.json"
done
echo "JSON in $out"
