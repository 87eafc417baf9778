#!/usr/bin/env python3
"""A garbage flood at a punch server, for the lab's abuse tests.

Usage: flood.py HOST PORT SECONDS RATE [TCP_ASSIST_PORT]

Sends RATE datagrams per second for SECONDS to HOST:PORT over UDP, cycling through kinds
of nonsense a server on the open internet receives, and meanwhile opens TCP connections to
the main (and assist) port that send junk and hang up. Prints one JSON line at the end
with what was sent per kind. Deterministic (seeded), bounded in time.
"""
import json
import random
import socket
import struct
import sys
import time

MAGIC = 0x2112A442
FRAME_TAG = 0x2A


def stun_header(msg_type, length, txn):
    return struct.pack(">HHI", msg_type, length, MAGIC) + txn


def kinds(rng):
    """Generators of one datagram each, by name."""

    def random_bytes():
        return rng.randbytes(rng.randint(1, 1400))

    def truncated_stun():
        # Claims attributes it does not carry.
        full = stun_header(0x0001, 4 * rng.randint(1, 60), rng.randbytes(12))
        return full[: rng.randint(1, 20)] if rng.random() < 0.5 else full

    def oversized_stun():
        # Larger than any datagram the server reads whole.
        body = rng.randbytes(4000)
        return stun_header(0x0001, len(body) & 0xFFFC, rng.randbytes(12)) + body

    def wrong_lengths():
        n = rng.randint(0, 200)
        body = rng.randbytes(n)
        claimed = rng.choice([n + 4, max(n - 4, 0), n + 1, 0xFFFF])
        return stun_header(0x0001, claimed & 0xFFFF, rng.randbytes(12)) + body

    def hostile_attributes():
        attrs = b""
        for _ in range(rng.randint(1, 90)):
            t = rng.choice([0x0001, 0x0020, 0x0003, 0x8028, 0x0006, 0x0014, rng.randint(0, 0xFFFF)])
            value = rng.randbytes(rng.randint(0, 12))
            claimed = rng.choice([len(value), len(value) + 8, 0xFFFF, 0])
            attrs += struct.pack(">HH", t, claimed & 0xFFFF) + value
            attrs += b"\0" * ((4 - len(value) % 4) % 4)
            if len(attrs) > 1300:
                break
        return stun_header(rng.choice([0x0001, 0x0101, 0x0111, 0x0011]), len(attrs) & 0xFFFF, rng.randbytes(12)) + attrs

    def frame_junk():
        version = rng.choice([1, 1, 1, 0, 2, 255])
        return bytes([FRAME_TAG, version]) + rng.randbytes(rng.randint(0, 1198))

    def quic_junk():
        first = 0xC0 | rng.randint(0, 0x3F)
        version = rng.choice([b"\0\0\0\1", rng.randbytes(4)])
        return bytes([first]) + version + rng.randbytes(rng.randint(20, 1300))

    def hi():
        return b"<Hi!>"

    return {
        "random": random_bytes,
        "stun_truncated": truncated_stun,
        "stun_oversized": oversized_stun,
        "stun_wrong_length": wrong_lengths,
        "stun_hostile_attributes": hostile_attributes,
        "frame_junk": frame_junk,
        "quic_junk": quic_junk,
        "hi": hi,
    }


def tcp_junk(host, port, rng):
    try:
        s = socket.create_connection((host, port), timeout=0.2)
        s.sendall(rng.randbytes(rng.randint(1, 3000)))
        s.close()
        return True
    except OSError:
        return False


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    host, port, seconds, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    assist = int(sys.argv[5]) if len(sys.argv) > 5 else None
    if not (0 < seconds <= 600 and 0 < rate <= 1_000_000):
        sys.exit("flood.py: SECONDS in (0, 600], RATE in (0, 1000000]")
    rng = random.Random(5780)
    gens = kinds(rng)
    names = list(gens)
    sent = {n: 0 for n in names}
    errors = 0
    tcp = 0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    start = time.monotonic()
    end = start + seconds
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        # Keep to RATE: send what is due, then sleep a little.
        due = int((now - start) * rate)
        while i < due:
            name = names[i % len(names)]
            try:
                s.sendto(gens[name](), (host, port))
                sent[name] += 1
            except OSError:
                errors += 1  # a full socket buffer, or the server's port unreachable for now
            i += 1
            if i % 500 == 0:
                for p in [port] + ([assist] if assist else []):
                    tcp += tcp_junk(host, p, rng)
        time.sleep(0.001)
    print(json.dumps({"udp_sent": sent, "udp_errors": errors, "tcp_junk_connections": tcp,
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)


if __name__ == "__main__":
    main()
