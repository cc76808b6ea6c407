#!/usr/bin/env bash
# `make bench`: every benchmark of the project, one after the other (see docs/benchmarks.md).
#   bench/run-all.sh [BIN]     BIN = the build's bin directory (default build/bin)
# Runs BIN/parse_bench (parser, key and flow ID per packet) if built, BIN/flow_map_tool memory
# (FlowMap bytes per live flow at 1M flows) if built, bench/ring.sh (the
# shared-memory rings) if present, and bench/replay (the whole meter against softflowd and
# nfpcapd). Exits non-zero if any of them failed.
set -uo pipefail
BIN=${1:-build/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
failed=0

echo "### $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n): $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -x "$BIN/parse_bench" ]; then
    echo; echo "### parse_bench"
    timeout 600 "$BIN/parse_bench" || { echo "parse_bench failed" >&2; failed=1; }
else
    echo; echo "### parse_bench: $BIN/parse_bench not built, skipped"
fi
if [ -x "$BIN/flow_map_tool" ]; then
    echo; echo "### flow_map_tool memory (FlowMap bytes per live flow at 1M flows)"
    timeout 300 "$BIN/flow_map_tool" memory || { echo "flow_map_tool failed" >&2; failed=1; }
fi
if [ -x "$HERE/ring.sh" ]; then
    echo; echo "### bench/ring.sh"
    timeout 900 "$HERE/ring.sh" "$BIN" || { echo "bench/ring.sh failed" >&2; failed=1; }
else
    echo; echo "### bench/ring.sh: not present, skipped"
fi
echo; echo "### bench/replay"
timeout 3600 "$HERE/replay" "$BIN" || { echo "bench/replay failed" >&2; failed=1; }
exit "$failed"
