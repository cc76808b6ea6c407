#!/usr/bin/env python3
"""Independent reference implementation of the ANGEL flow ID (docs/flow-id.md).

Python 3, standard library only, written from the document (not from the C++ code), so that
the classifier or a second meter can check that it computes the same IDs as angel-procd.

  flow_id_reference.py                      print the published test vectors (Markdown table)
  flow_id_reference.py --machine            the same vectors, one '|'-separated line each
                                            (read by tests/unit/flow_key_test.cpp)
  flow_id_reference.py KEYHEX PROTO SRC SPORT DST DPORT
                                            the flow ID of one packet's 5-tuple
"""
import ipaddress
import sys

MASK64 = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & MASK64


def siphash24(key16: bytes, msg: bytes) -> int:
    """SipHash-2-4 as described by Aumasson and Bernstein (2012); returns the 64-bit value."""
    assert len(key16) == 16
    k0 = int.from_bytes(key16[:8], "little")
    k1 = int.from_bytes(key16[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def sipround():
        v[0] = (v[0] + v[1]) & MASK64; v[1] = _rotl(v[1], 13); v[1] ^= v[0]; v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & MASK64; v[3] = _rotl(v[3], 16); v[3] ^= v[2]
        v[0] = (v[0] + v[3]) & MASK64; v[3] = _rotl(v[3], 21); v[3] ^= v[0]
        v[2] = (v[2] + v[1]) & MASK64; v[1] = _rotl(v[1], 17); v[1] ^= v[2]; v[2] = _rotl(v[2], 32)

    # Pad: the tail bytes, zeros, and len mod 256 as the last byte of the last 8-byte word.
    padded = msg + bytes((-len(msg) - 1) % 8) + bytes([len(msg) & 0xFF])
    for i in range(0, len(padded), 8):
        m = int.from_bytes(padded[i:i + 8], "little")
        v[3] ^= m
        sipround(); sipround()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def serialize(proto, src, sport, dst, dport):
    """Canonical order, then: version, proto, port_lo BE, port_hi BE, addr_lo, addr_hi."""
    a = ipaddress.ip_address(src)
    b = ipaddress.ip_address(dst)
    if a.version != b.version:
        raise ValueError("addresses of different families")
    ab, bb = a.packed, b.packed  # 4 bytes for IPv4, 16 for IPv6, network order
    if (ab, sport) > (bb, dport):  # lower address first; equal addresses: lower port first
        ab, bb, sport, dport = bb, ab, dport, sport
    return (bytes([a.version, proto]) + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
            + ab + bb)


def flow_id(key_hex: str, proto, src, sport, dst, dport) -> int:
    key = bytes.fromhex(key_hex)
    if len(key_hex) != 32 or len(key) != 16:
        raise ValueError("flow.id_key must be exactly 32 hex digits")
    return siphash24(key, serialize(proto, src, sport, dst, dport)) & 0xFFFFFFFF


PAPER_KEY = "000102030405060708090a0b0c0d0e0f"
OTHER_KEY = "5a3e9c7d21f04b86a1d2c3e4f5061728"

# name, key, proto, src, sport, dst, dport
VECTORS = [
    ("ipv4-tcp", PAPER_KEY, 6, "198.18.0.1", 49152, "198.19.0.2", 443),
    ("ipv4-tcp-reversed", PAPER_KEY, 6, "198.19.0.2", 443, "198.18.0.1", 49152),
    ("ipv4-udp-same-endpoints", PAPER_KEY, 17, "198.18.0.1", 49152, "198.19.0.2", 443),
    ("ipv4-tcp-other-key", OTHER_KEY, 6, "198.18.0.1", 49152, "198.19.0.2", 443),
    ("ipv4-icmp-no-ports", PAPER_KEY, 1, "198.18.0.1", 0, "198.19.0.2", 0),
    ("ipv4-equal-addrs", PAPER_KEY, 17, "198.18.0.5", 5000, "198.18.0.5", 80),
    ("ipv4-equal-addrs-swapped-ports", PAPER_KEY, 17, "198.18.0.5", 80, "198.18.0.5", 5000),
    ("ipv6-tcp", PAPER_KEY, 6, "2001:db8:1::20", 443, "2001:db8::10", 55555),
    ("ipv6-tcp-reversed", PAPER_KEY, 6, "2001:db8::10", 55555, "2001:db8:1::20", 443),
    ("ipv6-udp-same-endpoints", PAPER_KEY, 17, "2001:db8:1::20", 443, "2001:db8::10", 55555),
]


def self_test():
    # Official SipHash-2-4 vectors (paper, appendix A): key 00..0f, message 00 01 .. (n-1).
    key = bytes(range(16))
    assert siphash24(key, b"") == 0x726FDB47DD0E0E31
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5


def main(argv):
    self_test()
    if len(argv) == 7:
        key_hex, proto, src, sport, dst, dport = argv[1:]
        i = flow_id(key_hex, int(proto), src, int(sport), dst, int(dport))
        print(f"{i} 0x{i:08x}")
        return 0
    machine = argv[1:] == ["--machine"]
    if not machine and len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 64
    if not machine:
        print("| name | key | proto | src | sport | dst | dport | serialized | ID | ID hex |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    for name, key_hex, proto, src, sport, dst, dport in VECTORS:
        ser = serialize(proto, src, sport, dst, dport).hex()
        i = flow_id(key_hex, proto, src, sport, dst, dport)
        fields = [name, key_hex, str(proto), src, str(sport), dst, str(dport), ser, str(i),
                  f"0x{i:08x}"]
        if machine:
            print("|".join(fields))
        else:
            print("| " + " | ".join(f"`{f}`" if n in (1, 7) else f for n, f in enumerate(fields))
                  + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
