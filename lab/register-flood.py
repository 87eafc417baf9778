#!/usr/bin/env python3
"""A registration flood at a punch server: N distinct clients (names and keys) from one
host, spread over many source ports, for the lab's abuse tests.

Usage: register-flood.py HOST PORT CLIENTS RATE [SOCKETS]

Each client registers as a real one does (wire version 2): an unsigned `Register`, then,
when the server's `Challenge` comes back, the same registration signed with the client's
Ed25519 key over the challenge's nonce. (A key pair is made only for a client that gets
a challenge: the first request's key is never checked, and key generation is the
script's costly part.) First requests go out at RATE per second from
SOCKETS UDP sockets; the script answers challenges as they arrive, waits a second for late
answers, and prints one JSON line: sent (first requests), challenged, signed (second
requests), registered, refused, seconds. Seeded, bounded in time.
"""
import json
import random
import select
import socket
import sys
import time

import punchwire as pw


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
    pending = set()  # txns sent and not answered with a registration or a refusal
    counts = {"challenged": 0, "signed": 0, "registered": 0, "refused": 0}

    def name(txn):
        return f"flood-{txn - 1:06d}"

    def drain(wait):
        ready, _, _ = select.select(socks, [], [], wait)
        for s in ready:
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                p = pw.parse(data)
                if p is None:
                    continue
                _, variant, txn, _ = p
                if variant == pw.CHALLENGE and txn in pending:
                    counts["challenged"] += 1
                    _, nonce = pw.challenge_nonce(data)
                    sk, pk = pw.signing_key(rng.randbytes(32))
                    try:
                        s.sendto(pw.register(txn, name(txn), sk, pk, nonce), (host, port))
                        counts["signed"] += 1
                    except OSError:
                        pass
                elif variant == pw.REGISTERED and txn in pending:
                    pending.discard(txn)
                    counts["registered"] += 1
                elif variant == pw.ERROR and txn in pending:
                    pending.discard(txn)
                    counts["refused"] += 1

    start = time.monotonic()
    sent = errors = 0
    while sent < clients:
        due = min(clients, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            txn = sent + 1
            pending.add(txn)
            try:
                first = pw.register(txn, name(txn), None, rng.randbytes(32))
                socks[sent % nsock].sendto(first, (host, port))
            except OSError:
                errors += 1
            sent += 1
        drain(0.001)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        drain(0.05)
    print(json.dumps({"sent": sent, **counts, "send_errors": errors,
                      "seconds": round(time.monotonic() - start - 1.0, 2)}), flush=True)


if __name__ == "__main__":
    main()
