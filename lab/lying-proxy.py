#!/usr/bin/env python3
"""A rendezvous server that lies about keys, for the lab's trust tests: a UDP proxy in
front of a real punch server that forwards everything both ways, but rewrites the peer's
key in every introduction (`Introduce` frames) it passes to a client.

Usage: lying-proxy.py LISTEN_IP LISTEN_PORT SERVER_IP SERVER_PORT SECONDS

Each client gets its own upstream socket (the server sees the proxy's address for it).
Runs for SECONDS, then prints one JSON line: datagrams forwarded each way and keys swapped.
"""
import json
import select
import socket
import sys
import time

from punchwire import FRAME_TAG, read_varint as varint

INTRODUCE = 3
FAKE_KEY = bytes([0x66] * 32)
MAX_CLIENTS = 64


def swap_key(data):
    """The datagram with the introduced peer's key replaced, or None if it is not an
    introduction. Layout (postcard): tag, version, variant, txn, session, initiator,
    then the peer: name (length, bytes), key (32 bytes), ..."""
    if len(data) < 4 or data[0] != FRAME_TAG:
        return None
    v = varint(data, 2)
    if v is None or v[0] != INTRODUCE:
        return None
    i = v[1]
    for _ in range(2):  # txn, session
        v = varint(data, i)
        if v is None:
            return None
        i = v[1]
    i += 1  # initiator
    v = varint(data, i)
    if v is None:
        return None
    i = v[1] + v[0]  # name
    if i + 32 > len(data):
        return None
    return data[:i] + FAKE_KEY + data[i + 32:]


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    lip, lport, sip, sport, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind((lip, lport))
    upstream = {}  # client address -> socket toward the server
    client_of = {}  # socket -> client address
    stats = {"to_server": 0, "to_clients": 0, "keys_swapped": 0}
    print("ready", file=sys.stderr, flush=True)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        ready, _, _ = select.select([front] + list(client_of), [], [], 0.2)
        for s in ready:
            data, addr = s.recvfrom(4096)
            if s is front:
                up = upstream.get(addr)
                if up is None:
                    if len(upstream) >= MAX_CLIENTS:
                        continue
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.bind((lip, 0))
                    upstream[addr] = up
                    client_of[up] = addr
                up.sendto(data, (sip, sport))
                stats["to_server"] += 1
            else:
                swapped = swap_key(data)
                if swapped is not None:
                    data = swapped
                    stats["keys_swapped"] += 1
                front.sendto(data, client_of[s])
                stats["to_clients"] += 1
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
