#!/usr/bin/env bash
# Discover + Reader + Parser(+Mapper) throughput and peak RSS on chsync-gen archives (issue 5).
#
#   bench/inputs.sh [BUILD_DIR] [WORK_DIR]        (SIZES="200M 2G" to change the sizes)
#
# For each size: a generated tree as a directory and as .tar.zst, then
#   * baseline: `cat` of every file to /dev/null (dir) and `zstd -dc` to /dev/null (archive),
#   * chsync sync --backend null --dry-run --settle 0 (no sender, no state: Discover, Reader,
#     Parser and Mapper only; there is no mode that stops after the parser),
# reporting MB/s of JSONL bytes and peak RSS (GNU time). A scrambled .tar.zst (members shuffled,
# so bundles are incomplete for long) is run with the default --max-memory and with a small one
# that forces spooling. Numbers go to stdout as a table.
set -euo pipefail
BUILD=${1:-build}
WORK=${2:-$(mktemp -d /tmp/chsync-bench-inputs-XXXXXX)}
SIZES=${SIZES:-"200M 2G"}
CHSYNC=$BUILD/chsync
GEN=$BUILD/chsync-gen
TIME=/usr/bin/time
mkdir -p "$WORK"

secs() { python3 -c 'import sys,time; print(time.time())'; }
mbps() { python3 -c "print(f'{$1/1e6/max($2,1e-9):.0f}')"; }

printf '%-6s %-22s %10s %8s %10s %9s\n' size case bytes_MB secs MB_per_s rss_MB
for size in $SIZES; do
  dir=$WORK/dir-$size
  [ -d "$dir" ] || "$GEN" --out "$dir" --bytes "$size" --seed 42 > "$WORK/manifest-$size.json"
  bytes=$(find "$dir" -name '*.jsonl' -printf '%s\n' | awk '{s+=$1} END {printf "%d", s}')
  arch=$WORK/g-$size.tar.zst
  [ -f "$arch" ] || (cd "$dir" && tar -cf - projects | zstd -q -T2 -o "$arch")
  scr=$WORK/g-$size-scrambled.tar.zst
  if [ ! -f "$scr" ]; then
    (cd "$dir" && find projects -type f | shuf --random-source=<(yes) > "$WORK/list-$size" &&
     tar -cf - --no-recursion -T "$WORK/list-$size" | zstd -q -T2 -o "$scr")
  fi
  sync 2>/dev/null || true

  run_case() {  # name, command...
    local name=$1; shift
    local t0 t1
    t0=$(secs)
    $TIME -f %M -o "$WORK/rss" "$@" > /dev/null 2> "$WORK/err" || true
    t1=$(secs)
    local el rss
    el=$(python3 -c "print(f'{$t1-$t0:.2f}')")
    rss=$(( $(tail -1 "$WORK/rss") / 1024 ))
    printf '%-6s %-22s %10d %8s %10s %9d\n' "$size" "$name" $((bytes / 1000000)) "$el" \
      "$(mbps "$bytes" "$el")" "$rss"
  }
  # Warm the page cache once so every case reads from memory, as cat does.
  find "$dir" -type f -exec cat {} + > /dev/null
  run_case "cat dir" sh -c "find '$dir' -name '*.jsonl' -exec cat {} + > /dev/null"
  run_case "chsync dir" "$CHSYNC" sync "$dir" --backend null --dry-run --settle 0 --quiet \
    --db "$WORK/none.db" --report "$WORK/r-dir-$size.json"
  run_case "zstd -dc tar.zst" sh -c "zstd -dc '$arch' > /dev/null"
  run_case "chsync tar.zst" "$CHSYNC" sync "$arch" --backend null --dry-run --settle 0 --quiet \
    --db "$WORK/none.db" --report "$WORK/r-arch-$size.json"
  run_case "chsync scrambled" "$CHSYNC" sync "$scr" --backend null --dry-run --settle 0 \
    --quiet --db "$WORK/none.db" --report "$WORK/r-scr-$size.json"
  run_case "chsync scr 32MiB" "$CHSYNC" sync "$scr" --backend null --dry-run --settle 0 \
    --quiet --max-memory 32MiB --db "$WORK/none.db" --report "$WORK/r-scr32-$size.json"
  run_case "2nd pass (tar -t)" sh -c "zstd -dc '$scr' | tar -t > /dev/null"
done
echo "work dir: $WORK (remove when done)"
