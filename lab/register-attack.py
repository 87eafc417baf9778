#!/usr/bin/env python3
"""Replayed, forged and old-version registrations at a punch server, for the lab's trust
tests. Runs in the server's namespace, next to the server.

Usage: register-attack.py SERVER_IP PORT ATTACK_IP NAME SECONDS

1. Captures, off the wire (an AF_PACKET socket, as an on-path attacker would), the first
   signed `Register` of NAME (a non-zero nonce) that reaches SERVER_IP:PORT.
2. Replays it three times from ATTACK_IP (another address): each must be answered with a
   `Challenge`, never `Registered`.
3. Forges it twice over the nonce of that challenge (valid for ATTACK_IP): with the
   captured, now wrong, signature and with zeroes; each must be refused `BadSignature`.
4. Sends an old client's (wire version 1) registration of NAME: it must get a version-1
   `Error` that says to upgrade.

Prints one JSON line with what was sent and what came back. Gives up after SECONDS.
"""
import json
import socket
import sys
import time

import punchwire as pw

ETH_P_IP = 0x0800


def capture(server_ip, port, name, deadline):
    """(payload, source) of NAME's first signed registration to server_ip:port."""
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sniff.settimeout(0.2)
    want = socket.inet_aton(server_ip)
    needle = pw.varint(len(name.encode())) + name.encode()
    while time.monotonic() < deadline:
        try:
            pkt = sniff.recv(65535)
        except socket.timeout:
            continue
        if len(pkt) < 28 or pkt[9] != 17 or pkt[16:20] != want:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        udp = pkt[ihl:]
        if len(udp) < 8 or int.from_bytes(udp[2:4], "big") != port:
            continue
        data = udp[8:]
        p = pw.parse(data)
        if p is None or p[0] != pw.WIRE_VERSION or p[1] != pw.REGISTER:
            continue
        if not p[3].startswith(needle) or len(data) < 80 or data[-80:-64] == pw.NO_NONCE:
            continue
        src = (socket.inet_ntoa(pkt[12:16]), int.from_bytes(udp[0:2], "big"))
        return data, src
    return None, None


def ask(sock, server, frame, wait=1.0):
    """Send `frame` and return the first answer (or None)."""
    sock.sendto(frame, server)
    sock.settimeout(wait)
    try:
        return sock.recv(2048)
    except socket.timeout:
        return None


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    server_ip, port, attack_ip, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    deadline = time.monotonic() + float(sys.argv[5])
    report = {"captured": None}
    captured, src = capture(server_ip, port, name, deadline)
    if captured is None:
        print(json.dumps(report), flush=True)
        return
    report["captured"] = f"{src[0]}:{src[1]}"
    server = (server_ip, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((attack_ip, 0))
    report["attacker"] = "%s:%d" % sock.getsockname()

    replays, challenged, registered, nonce = 3, 0, 0, None
    for _ in range(replays):
        answer = ask(sock, server, captured)
        c = pw.challenge_nonce(answer or b"")
        if c is not None:
            challenged += 1
            nonce = c[1]
        elif answer and (pw.parse(answer) or (0, -1))[1] == pw.REGISTERED:
            registered += 1
    report.update(replays=replays, replay_challenged=challenged, replay_registered=registered)

    forged, refused, accepted = 0, 0, 0
    if nonce is not None:
        for sig in (captured[-64:], bytes(64)):
            frame = captured[:-80] + nonce + sig
            forged += 1
            answer = ask(sock, server, frame) or b""
            e = pw.error(answer)
            if e is not None and e[2] == pw.ERROR_BAD_SIGNATURE:
                refused += 1
            elif (pw.parse(answer) or (0, -1))[1] == pw.REGISTERED:
                accepted += 1
    report.update(forged=forged, forged_refused=refused, forged_registered=accepted)

    rest = pw.parse(captured)[3]
    n = pw.read_varint(rest, 0)
    key = rest[n[1] + n[0]:n[1] + n[0] + 32]  # after the name
    answer = ask(sock, server, pw.legacy_register(77, name, key)) or b""
    e = pw.error(answer)
    report["legacy"] = None if e is None else {
        "version": e[0], "txn": e[1], "code": e[2], "reason": e[3]}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
