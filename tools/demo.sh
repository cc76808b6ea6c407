#!/bin/sh
# `make run`: the meter's main job on a built-in default, no setup needed.
# Generates a small deterministic trace, replays it through the whole meter (angel-ctld
# starting angel-capd, angel-procd, angel-netd) and exports IPFIX to angel-sink on
# loopback, which prints a summary: flows, packets, top flows.
set -eu
BIN=${1:-build/bin}
BIN=$(cd "$BIN" && pwd)
WORK=$(mktemp -d /tmp/angel-demo.XXXXXX)
SINK_PID=""
cleanup() {
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
    rm -rf "$WORK"
    rm -f /dev/shm/angel.demo-$$
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/demo.conf" <<CONF
# Built-in demo configuration: replay to a local angel-sink.
instance = "demo-$$";
runtime_dir = "$WORK/run";
classifier = { host = "127.0.0.1"; port = $PORT; };
CONF

echo "== 1. generating a deterministic trace: 200000 packets, 5000 flows (IPv4+IPv6, VLAN, IMIX)"
"$BIN/angel-gen-trace" --out "$WORK/demo.pcap" --packets 200000 --flows 5000

echo "== 2. angel-sink listening on 127.0.0.1:$PORT (the classifier's side)"
"$BIN/angel-sink" --listen "127.0.0.1:$PORT" --summary --idle 3 > "$WORK/summary.txt" 2> "$WORK/sink.err" &
SINK_PID=$!
sleep 0.3

echo "== 3. the meter: angel-ctld -f -c demo.conf --replay demo.pcap"
"$BIN/angel-ctld" -f -c "$WORK/demo.conf" --replay "$WORK/demo.pcap"

echo "== 4. what the classifier received (angel-sink summary)"
wait "$SINK_PID" || true
SINK_PID=""
cat "$WORK/summary.txt"
