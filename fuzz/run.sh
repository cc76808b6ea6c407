#!/bin/sh
# Runs the parser fuzzer for a bounded time: fuzz/run.sh BINARY SECONDS
# Seeds fuzz/corpus/ (gitignored) from the frames of ../shared/pcaps first; exits non-zero when
# the fuzzer finds a crash (the reproducer is left in $ARTIFACTS).
set -eu
bin=${1:?usage: fuzz/run.sh BINARY SECONDS}
seconds=${2:?usage: fuzz/run.sh BINARY SECONDS}
here=$(cd "$(dirname "$0")" && pwd)
pcaps=${ANGEL_PCAPS:-$here/../../shared/pcaps}
corpus=$here/corpus
artifacts=${ARTIFACTS:-${TMPDIR:-/tmp}/angel-fuzz-artifacts}
mkdir -p "$corpus" "$artifacts"

if [ -d "$pcaps" ]; then
    python3 - "$pcaps" "$corpus" <<'PY'
"""Writes fuzzer seeds from classic pcap files: one file per distinct frame, whose first byte is
the link type's index in kLinktypes of fuzz/parser_fuzz.cpp, followed by the captured bytes.
pcapng and unreadable files are skipped (libpcap-level robustness is not the parser's job).
arguments: PCAP_DIR CORPUS_DIR"""
import hashlib
import os
import struct
import sys

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]  # same order as parser_fuzz.cpp
PER_FILE = 64      # frames taken from each capture: variety over volume
MAX_FRAME = 4096   # longer frames add nothing the parser looks at


def frames(path):
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < 24:
        return None, []
    magic = data[:4]
    if magic in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1'):
        endian = '<'
    elif magic in (b'\xa1\xb2\xc3\xd4', b'\xa1\xb2\x3c\x4d'):
        endian = '>'
    else:
        return None, []  # pcapng or not a capture
    linktype = struct.unpack(endian + 'I', data[20:24])[0] & 0xFFFF
    out, pos = [], 24
    while pos + 16 <= len(data) and len(out) < PER_FILE:
        caplen = struct.unpack(endian + 'I', data[pos + 8:pos + 12])[0]
        pos += 16
        if caplen > len(data) - pos:
            break
        out.append(data[pos:pos + min(caplen, MAX_FRAME)])
        pos += caplen
    return linktype, out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    written = 0
    for root, _, names in sorted(os.walk(src)):
        for name in sorted(names):
            linktype, frs = frames(os.path.join(root, name))
            if linktype not in LINKTYPES:
                continue
            prefix = bytes([LINKTYPES.index(linktype)])
            for fr in frs:
                seed = prefix + fr
                out = os.path.join(dst, 'seed-' + hashlib.sha1(seed).hexdigest())
                if not os.path.exists(out):
                    with open(out, 'wb') as f:
                        f.write(seed)
                    written += 1
    print(f'fuzz/run.sh: {written} new seeds in {dst}')


if __name__ == '__main__':
    main()
PY
else
    echo "fuzz/run.sh: no $pcaps, fuzzing without seeds" >&2
fi

echo "fuzz/run.sh: $bin for ${seconds}s, corpus $corpus, crash reproducers in $artifacts"
exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus"
