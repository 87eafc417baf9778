#!/usr/bin/env python3
"""A registration flood at a punch server: N distinct clients (names and keys) from one
host, spread over many source ports, for the lab's abuse tests.

Usage: register-flood.py HOST PORT CLIENTS RATE [SOCKETS]

Sends one punch `Register` frame (wire version 1) per client at RATE frames per second
from SOCKETS UDP sockets, counts the `Registered` answers, waits a second for late ones,
and prints one JSON line: sent, answered, seconds. Seeded, bounded in time.
"""
import json
import random
import select
import socket
import sys
import time

FRAME_TAG, WIRE_VERSION = 0x2A, 1
REGISTER, REGISTERED = 0, 1


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def register(txn, name, key):
    name = name.encode()
    return (bytes([FRAME_TAG, WIRE_VERSION]) + varint(REGISTER) + varint(txn)
            + varint(len(name)) + name + key + varint(0))


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    host, port, clients, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    nsock = int(sys.argv[5]) if len(sys.argv) > 5 else 500
    if not (0 < clients <= 1_000_000 and 0 < rate <= 1_000_000 and 0 < nsock <= 4096):
        sys.exit("register-flood.py: CLIENTS, RATE, SOCKETS out of range")
    rng = random.Random(8489)
    socks = []
    for _ in range(nsock):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks.append(s)
    answered = 0

    def drain(wait):
        nonlocal answered
        ready, _, _ = select.select(socks, [], [], wait)
        for s in ready:
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                if len(data) > 2 and data[0] == FRAME_TAG and data[2] == REGISTERED:
                    answered += 1

    start = time.monotonic()
    sent = errors = 0
    while sent < clients:
        due = min(clients, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            frame = register(sent + 1, f"flood-{sent:06d}", rng.randbytes(32))
            try:
                socks[sent % nsock].sendto(frame, (host, port))
            except OSError:
                errors += 1
            sent += 1
        drain(0.001)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        drain(0.05)
    print(json.dumps({"sent": sent, "answered": answered, "send_errors": errors,
                      "seconds": round(time.monotonic() - start - 1.0, 2)}), flush=True)


if __name__ == "__main__":
    main()
