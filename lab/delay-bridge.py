#!/usr/bin/env python3
"""A wire with latency: forwards Ethernet frames between pairs of interfaces after a fixed
delay, in both directions.

The lab's kernels have no `tc netem`, so `punch-lab up --delay MS` puts this on each
core <-> router link (frames stay frames: ARP, IP, everything passes unchanged). The links
it bridges must not hand it offloaded frames (larger than the MTU, or with a checksum left
to the hardware): punch-lab turns TSO, GSO and TX checksumming off on the interfaces that
transmit into it.

Usage: delay-bridge.py MS IFACE_A:IFACE_B [IFACE_A:IFACE_B ...]
Runs until killed. Frames are kept in order per direction; at most MAX_QUEUED wait at once
(beyond that, new frames are dropped, as a full router queue would).
"""
import heapq
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAX_FRAME = 65535
MAX_QUEUED = 100_000


def open_raw(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    delay = float(sys.argv[1]) / 1000.0
    if not 0 <= delay <= 10:
        sys.exit("delay-bridge: MS must be between 0 and 10000")
    peer = {}
    for spec in sys.argv[2:]:
        a, sep, b = spec.partition(":")
        if not sep or not a or not b:
            sys.exit(f"delay-bridge: bad pair {spec!r} (want IFACE_A:IFACE_B)")
        sa, sb = open_raw(a), open_raw(b)
        peer[sa] = sb
        peer[sb] = sa
    print("ready", flush=True)
    queue = []  # (due, seq, out socket, frame): seq keeps per-direction order
    seq = 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        ready, _, _ = select.select(list(peer), [], [], timeout)
        now = time.monotonic()
        for s in ready:
            while True:
                try:
                    frame, addr = s.recvfrom(MAX_FRAME)
                except (BlockingIOError, InterruptedError):
                    break
                # Our own sends show up as outgoing frames on the other side: skip them.
                if addr[2] == PACKET_OUTGOING or len(queue) >= MAX_QUEUED:
                    continue
                heapq.heappush(queue, (now + delay, seq, peer[s], frame))
                seq += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
            except OSError:
                pass  # a frame the link will not take (too big, link down): lost on the wire


if __name__ == "__main__":
    main()
