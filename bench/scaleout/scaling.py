#!/usr/bin/env python3
"""Scale-out run: 1, 2, 4, 8 `chsync sync` processes sharing one PostgreSQL state.

The sink adds --latency-ms to every request and each worker keeps --max-in-flight requests of
--batch-spans spans, so a worker is bound by backend latency, not by this machine's two cores:
the run measures how well work sharing (claims, leases, per-bundle checks, state writes) lets
throughput grow with workers. Every configuration gets a fresh database and a fresh sink; the
input is the same chsync-gen tree. Prints a Markdown table and writes JSON (--json).

  python3 bench/scaleout/scaling.py --bytes 100M --workers 1,2,4,8 --latency-ms 50
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "tests", "scaleout"))

import harness  # noqa: E402
from pg_cluster import PgCluster  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", default="100M")
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--batch-spans", type=int, default=100)
    ap.add_argument("--max-in-flight", type=int, default=1)
    ap.add_argument("--lease", default="30s")
    ap.add_argument("--durable", action="store_true", default=True,
                    help="PostgreSQL with fsync on (default; realistic)")
    ap.add_argument("--fast", dest="durable", action="store_false",
                    help="fsync off (faster, not what production runs)")
    ap.add_argument("--no-decode", action="store_true",
                    help="sink reads and discards bodies (less CPU; no duplicate count)")
    ap.add_argument("--mode", choices=["leases", "shards"], default="leases",
                    help="leases: one PostgreSQL state shared by all; shards: --shard K/N, "
                         "each with its own SQLite state (the no-database comparison)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="chsync-scaling-")
    data = os.path.join(work, "in")
    subprocess.run([harness.GEN, "--out", data, "--bytes", args.bytes, "--seed", "42"],
                   check=True, stdout=subprocess.DEVNULL)
    pg = PgCluster(fast=not args.durable, max_connections=300) if args.mode == "leases" else None
    rows = []
    try:
        for n in [int(x) for x in args.workers.split(",")]:
            db = f"scale_{n}"
            if pg:
                pg.createdb(db)
            sink = harness.Sink(work, "--latency-ms", str(args.latency_ms), "--threads", "4",
                                *(["--no-decode"] if args.no_decode else []))
            try:
                procs = []
                lsn0 = pg.scalar("SELECT pg_current_wal_lsn()") if pg else None
                t0 = time.monotonic()
                for i in range(n):
                    rep = os.path.join(work, f"r{n}-{i}.json")
                    state = (["--state", pg.url_for(db), "--worker-id", f"w{i}", "--lease",
                              args.lease] if pg else
                             ["--db", os.path.join(work, f"{db}-{i}.db"), "--shard", f"{i}/{n}"])
                    cmd = [harness.CHSYNC, "sync", data, "--backend", "otlp", "--endpoint",
                           sink.traces_url, "--settle", "0", *state, "--workers", "1",
                           "--batch-spans", str(args.batch_spans), "--max-in-flight",
                           str(args.max_in_flight), "--report", rep, "--quiet"]
                    procs.append((subprocess.Popen(cmd, env=harness.clean_env()), rep))
                rcs = [p.wait(timeout=1800) for p, _ in procs]
                secs = time.monotonic() - t0
                reps = [json.load(open(r)) for _, r in procs]
                st = sink.stats()
            finally:
                sink.stop()
            spans = sum(r["spans_synced"] for r in reps)
            pgstats = {}
            if pg:
                pgstats = {
                    "wal_bytes": int(float(pg.scalar(
                        f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')"))),
                    "spans_table_bytes": int(pg.scalar(
                        "SELECT pg_total_relation_size('chsync_spans')", db=db)),
                    "all_tables_bytes": int(pg.scalar(
                        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE "
                        "c.relname LIKE 'chsync_%' AND c.relkind = 'r'", db=db)),
                }
            row = {
                "workers": n, "seconds": round(secs, 2), "exit_codes": rcs, "spans": spans,
                "spans_per_s": round(spans / secs, 1), "requests": st["requests_total"],
                "duplicates": st["spans_duplicate"],
                "units_per_worker": [r.get("units_claimed", 0) for r in reps],
                "cpu_seconds": round(sum(r["cpu_seconds"] for r in reps), 2),
                "worker_seconds": [round(r["duration_ms"] / 1000, 2) for r in reps],
                **pgstats,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if pg:
            pg.stop()
    base = rows[0]["seconds"] if rows else 1
    print(f"\n{args.bytes} of chsync-gen input, sink latency {args.latency_ms} ms, "
          f"--batch-spans {args.batch_spans} --max-in-flight {args.max_in_flight}, "
          + (f"PostgreSQL {'durable' if args.durable else 'fsync off'}, leases\n" if args.mode == "leases"
             else "static shards, SQLite each\n"))
    print("| workers | time (s) | speed-up | spans/s | requests | duplicates | units per worker | CPU s |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['workers']} | {r['seconds']} | {base / r['seconds']:.2f}x | {r['spans_per_s']} "
              f"| {r['requests']} | {r['duplicates']} | {r['units_per_worker']} | {r['cpu_seconds']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
