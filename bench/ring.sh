#!/usr/bin/env bash
# bench/ring: two processes, one shared-memory ring (issue 3). Prints records/s for 16-byte
# records through RecordRing and packets/s for 128-byte packets through PacketRing (the
# consumer reads every byte), median of RUNS runs, next to a bare batched SPSC ring measured
# in the same run as the reference.
#
#   bench/ring.sh [BIN_DIR]        BIN_DIR holding ring_tool; default: a Release build made
#                                  here in $BUILD_DIR (build-release)
#   RUNS=5 RECORDS=200M PACKETS=50M bench/ring.sh
#   RING_ARGS="--pin" bench/ring.sh      extra ring_tool options (--pin, --batch N, --spin N)
#
# Targets: >= 100 M records/s and >= 20 M packets/s. The machine has 2 cores: anything else
# running (a build, the test suite) shows in the numbers, so the load is printed with them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
if [[ -z "$bin" ]]; then
    build=${BUILD_DIR:-$here/build-release}
    cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j "$(nproc)" --target ring_tool >/dev/null
    bin=$build/bin
fi
tool=$bin/ring_tool
[[ -x "$tool" ]] || { echo "ring.sh: $tool not found (build the ring_tool target)" >&2; exit 1; }

echo "bench/ring on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
"$tool" --runs "${RUNS:-5}" --records "${RECORDS:-200M}" --packets "${PACKETS:-50M}" ${RING_ARGS:-}
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
