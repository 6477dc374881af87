#!/usr/bin/env python3
"""Runs a command and samples its memory and input rate over time (bench/e2e).

    bench/sample_run.py --csv OUT.csv [--interval 0.1] -- COMMAND ARGS...

Every INTERVAL seconds it reads /proc/PID/status (VmRSS) and /proc/PID/io (rchar: bytes the
process read through read()/pread(), i.e. the archive plus the state database) and writes
`t_s,rss_mb,read_mb,read_mb_per_s` to the CSV. On exit it prints one line to stdout:
`peak_rss_mb=X samples=N wall_s=W` and returns the command's exit code. stdout of the command
goes to /dev/null; its stderr is passed through.

    bench/sample_run.py --svg OUT.svg --title T A.csv [B.csv ...]

draws RSS and read rate over time of one or more CSVs as a self-contained SVG (no plotting
library needed).
"""
import argparse
import subprocess
import sys
import time


def read_proc(pid):
    rss_kb = rchar = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    rchar = int(line.split()[1])
                    break
    except (OSError, ValueError):
        return None
    if rss_kb is None or rchar is None:
        return None
    return rss_kb, rchar


def sample(cmd, csv_path, interval):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    rows = []
    peak_kb = 0
    last_t, last_r = 0.0, 0
    while p.poll() is None:
        got = read_proc(p.pid)
        if got:
            rss_kb, rchar = got
            t = time.monotonic() - t0
            rate = (rchar - last_r) / 1e6 / (t - last_t) if t > last_t else 0.0
            rows.append((t, rss_kb / 1024, rchar / 1e6, rate))
            peak_kb = max(peak_kb, rss_kb)
            last_t, last_r = t, rchar
        time.sleep(interval)
    wall = time.monotonic() - t0
    with open(csv_path, "w") as f:
        f.write("t_s,rss_mb,read_mb,read_mb_per_s\n")
        for r in rows:
            f.write(f"{r[0]:.3f},{r[1]:.1f},{r[2]:.1f},{r[3]:.1f}\n")
    print(f"peak_rss_mb={peak_kb / 1024:.1f} samples={len(rows)} wall_s={wall:.2f}")
    return p.returncode


def load_csv(path):
    out = []
    with open(path) as f:
        next(f)
        for line in f:
            t, rss, _, rate = (float(x) for x in line.strip().split(","))
            out.append((t, rss, rate))
    return out


def svg(paths, out, title):
    W, H, L, R, T, B = 900, 520, 70, 70, 40, 50
    series = [(p, load_csv(p)) for p in paths]
    tmax = max((s[-1][0] for _, s in series if s), default=1.0) or 1.0
    rmax = max((r for _, s in series for _, r, _ in s), default=1.0) * 1.1 or 1.0
    qmax = max((q for _, s in series for _, _, q in s), default=1.0) * 1.1 or 1.0
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    x = lambda t: L + (W - L - R) * t / tmax
    y = lambda v, m: H - B - (H - T - B) * v / m
    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    e.append(f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>')
    e.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
    e.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
    e.append(f'<line x1="{W - R}" y1="{T}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
    for i in range(6):
        t = tmax * i / 5
        e.append(f'<text x="{x(t):.0f}" y="{H - B + 18}" text-anchor="middle">{t:.0f} s</text>')
        v = rmax * i / 5
        e.append(f'<text x="{L - 6}" y="{y(v, rmax) + 4:.0f}" text-anchor="end">{v:.0f}</text>')
        q = qmax * i / 5
        e.append(f'<text x="{W - R + 6}" y="{y(q, qmax) + 4:.0f}">{q:.0f}</text>')
    e.append(f'<text x="15" y="{H / 2}" transform="rotate(-90 15 {H / 2})" '
             f'text-anchor="middle">RSS MB (solid)</text>')
    e.append(f'<text x="{W - 12}" y="{H / 2}" transform="rotate(90 {W - 12} {H / 2})" '
             f'text-anchor="middle">read MB/s (dashed)</text>')
    for i, (p, s) in enumerate(series):
        c = colors[i % len(colors)]
        rss = " ".join(f"{x(t):.1f},{y(r, rmax):.1f}" for t, r, _ in s)
        rate = " ".join(f"{x(t):.1f},{y(q, qmax):.1f}" for t, _, q in s)
        e.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{rss}"/>')
        e.append(f'<polyline fill="none" stroke="{c}" stroke-width="1" stroke-dasharray="4 3" '
                 f'points="{rate}"/>')
        name = p.rsplit("/", 1)[-1].removesuffix(".csv")
        e.append(f'<text x="{L + 10}" y="{T + 16 + 16 * i}" fill="{c}">{name}</text>')
    e.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(e) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv")
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--svg")
    ap.add_argument("--title", default="chsync: RSS and read rate over time")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    rest = a.rest[1:] if a.rest and a.rest[0] == "--" else a.rest
    if a.svg:
        svg(rest, a.svg, a.title)
        return 0
    if not a.csv or not rest:
        ap.error("--csv OUT -- COMMAND... or --svg OUT CSV...")
    return sample(rest, a.csv, a.interval)


if __name__ == "__main__":
    sys.exit(main())
