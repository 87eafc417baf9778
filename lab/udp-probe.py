#!/usr/bin/env python3
"""udp-probe: a tiny UDP tool for the punch NAT lab (standard library only).

Subcommands (every one is bounded in time; nothing runs forever):

  listen [--echo] [--timeout S] [--count N] [--ready PATH] IP:PORT...
      Bind one socket per IP:PORT, print `ready`, then one line per datagram:
      `recv LOCAL_IP:PORT FROM_IP:PORT TEXT`.  With --echo it is a reflector
      (a poor man's STUN server with RFC 5780 CHANGE-REQUEST): a datagram
      `req ID [via IP:PORT]` is answered with `seen ID FROM_IP:PORT`, sent from
      the bound socket IP:PORT named by `via` (default: the receiving socket).
      --ready PATH writes `ready` to PATH (e.g. a FIFO) once bound.

  send [--bind [IP:]PORT] [--ttl N] [--msg TEXT] [--wait S] [--count N] IP:PORT...
      Send TEXT from one socket to each destination, then print what comes
      back within S seconds: `recv FROM TEXT` or, for ICMP errors (IP_RECVERR),
      `icmp TYPE FROM_ROUTER for DEST` (TYPE e.g. time-exceeded, port-unreachable).
      Stops early after N replies/errors (default: wait the full S).

  nat-test --srv IP1 --srv2 IP2 [--port P1] [--port2 P2] [--base-port N] [--timeout S]
      Client side of the lab's NAT check against `listen --echo` bound on
      IP1:P1 IP1:P2 IP2:P1 IP2:P2.  The host always sends first. Prints
      KEY=VALUE lines: map1..map3 (mapped address seen by IP1:P1, IP1:P2,
      IP2:P1 from one socket), mapping (endpoint-independent,
      address-dependent, address-and-port-dependent), preserved (mapped port ==
      local port), and filtering probes, each from a fresh local port, each
      `yes` if the reply reached the host:
        f_port        request to IP1:P1, answered from IP1:P2
        f_addr        request to IP1:P1, answered from IP2:P1
        f_known       host first talked to IP2:P1; request to IP1:P1, answered from IP2:P1
        f_known_port  host first talked to IP2:P1; request to IP1:P1, answered from IP2:P2
      plus filtering (endpoint-independent / address-dependent /
      address-and-port-dependent) derived from f_addr and f_port.

Exit status: 0 on success, 1 on a usage or socket error, 2 when nat-test could
not reach the server at all.
"""

import argparse
import errno
import os
import select
import socket
import struct
import sys
import time

SO_EE_ORIGIN_ICMP = 2
ICMP_NAMES = {
    (3, 0): "net-unreachable",
    (3, 1): "host-unreachable",
    (3, 3): "port-unreachable",
    (3, 13): "admin-prohibited",
    (11, 0): "time-exceeded",
}
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)


def parse_addr(text, default_ip="0.0.0.0"):
    """`IP:PORT`, `PORT` or `:PORT` -> (ip, port)."""
    if ":" in text:
        ip, _, port = text.rpartition(":")
        ip = ip or default_ip
    else:
        ip, port = default_ip, text
    return ip, int(port)


def fmt(addr):
    return "%s:%d" % (addr[0], addr[1])


def udp_socket(bind=("0.0.0.0", 0), ttl=None, recverr=False):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if ttl is not None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    if recverr:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    sock.bind(bind)
    sock.setblocking(False)
    return sock


def read_errqueue(sock):
    """One ICMP error from the socket's error queue, or None."""
    try:
        data, anc, _flags, dest = sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
    except (BlockingIOError, InterruptedError):
        return None
    for level, kind, cdata in anc:
        if level == socket.IPPROTO_IP and kind == IP_RECVERR and len(cdata) >= 16:
            _err, origin, typ, code, _pad, _info, _d = struct.unpack("=IBBBBII", cdata[:16])
            offender = None
            if len(cdata) >= 24:
                fam, _port = struct.unpack("=HH", cdata[16:20])
                if fam == socket.AF_INET:
                    offender = socket.inet_ntoa(cdata[20:24])
            if origin == SO_EE_ORIGIN_ICMP:
                name = ICMP_NAMES.get((typ, code), "icmp-%d/%d" % (typ, code))
                return name, offender, dest, data
    return None


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cmd_listen(args):
    socks = {}
    for spec in args.addrs:
        addr = parse_addr(spec)
        socks[addr] = udp_socket(addr)
    by_fd = {s.fileno(): (a, s) for a, s in socks.items()}
    out("ready")
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")
    poll = select.poll()
    for fd in by_fd:
        poll.register(fd, select.POLLIN)
    deadline = time.monotonic() + args.timeout
    seen = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or (args.count and seen >= args.count):
            return 0
        for fd, _ev in poll.poll(left * 1000):
            local, sock = by_fd[fd]
            try:
                data, src = sock.recvfrom(65535)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            seen += 1
            text = data.decode("utf-8", "replace").strip()
            if not args.quiet:
                out("recv %s %s %s" % (fmt(local), fmt(src), text))
            if args.echo:
                words = text.split()
                if len(words) >= 2 and words[0] == "req":
                    reply_sock = sock
                    if len(words) == 4 and words[2] == "via":
                        via = parse_addr(words[3])
                        reply_sock = socks.get(via, sock)
                    try:
                        reply_sock.sendto(("seen %s %s" % (words[1], fmt(src))).encode(), src)
                    except OSError as e:
                        out("error sending to %s: %s" % (fmt(src), e))


def cmd_send(args):
    sock = udp_socket(parse_addr(args.bind), ttl=args.ttl, recverr=True)
    for spec in args.dests:
        sock.sendto(args.msg.encode(), parse_addr(spec))
    out("sent %s ttl=%s to %s" % (fmt(sock.getsockname()), args.ttl or "default", " ".join(args.dests)))
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
    deadline = time.monotonic() + args.wait
    got = 0
    while not (args.count and got >= args.count):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for _fd, ev in poll.poll(left * 1000):
            if ev & select.POLLERR:
                err = read_errqueue(sock)
                if err:
                    got += 1
                    name, offender, dest, _ = err
                    out("icmp %s %s for %s" % (name, offender, fmt(dest) if dest else "?"))
                    continue
            try:
                data, src = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                continue  # pending socket error already reported via the error queue
            got += 1
            out("recv %s %s" % (fmt(src), data.decode("utf-8", "replace").strip()))
    return 0


class Case:
    """One socket, a list of steps; each step is a request that may need an answer."""

    def __init__(self, name, port, steps):
        self.name = name
        self.sock = udp_socket(("0.0.0.0", port))
        self.steps = steps  # list of (req_id, to, via, must_answer)
        self.answers = {}  # req_id -> mapped address text
        self.stage = 0  # index of the first step not yet released
        self.last_sent = {}

    def release(self, now):
        """Send every step up to (and including) the first one that must be answered."""
        while self.stage < len(self.steps):
            req_id, _to, _via, must = self.steps[self.stage]
            self.send(req_id, now)
            self.stage += 1
            if must:
                return

    def send(self, req_id, now):
        for rid, to, via, _m in self.steps:
            if rid == req_id:
                msg = "req %s" % rid + (" via %s" % fmt(via) if via else "")
                self.sock.sendto(msg.encode(), to)
                self.last_sent[rid] = now

    def blocked(self):
        """The step we wait for before releasing more, if any."""
        if self.stage == 0:
            return None
        rid, _to, _via, must = self.steps[self.stage - 1]
        return rid if must and rid not in self.answers else None


def cmd_nat_test(args):
    s1 = (args.srv, args.port)
    s1p = (args.srv, args.port2)
    s2 = (args.srv2, args.port)
    s2p = (args.srv2, args.port2)
    base = args.base_port
    cases = [
        Case("map", base, [("m1", s1, None, False), ("m2", s1p, None, False), ("m3", s2, None, False)]),
        Case("f_port", base + 1, [("fp", s1, s1p, False)]),
        Case("f_addr", base + 2, [("fa", s1, s2, False)]),
        Case("f_known", base + 3, [("kp", s2, None, True), ("fk", s1, s2, False)]),
        Case("f_known_port", base + 4, [("kq", s2, None, True), ("fq", s1, s2p, False)]),
    ]
    by_fd = {c.sock.fileno(): c for c in cases}
    poll = select.poll()
    for fd in by_fd:
        poll.register(fd, select.POLLIN)
    start = time.monotonic()
    for c in cases:
        c.release(start)
    # Preconditions (answers to must-answer steps) may take a retransmit; the
    # filtering verdict waits `timeout` after the last step was released.
    deadline = start + args.timeout
    hard_deadline = start + args.timeout + 2.0
    while True:
        now = time.monotonic()
        waiting = [c for c in cases if c.blocked() or c.stage < len(c.steps)]
        if now >= hard_deadline or (now >= deadline and not waiting):
            break
        if all(len(c.answers) == len(c.steps) for c in cases):
            break
        # retransmit unanswered, released requests every RETRANSMIT seconds
        for c in cases:
            for rid, _to, _via, _m in c.steps[: c.stage]:
                if rid not in c.answers and now - c.last_sent[rid] >= args.retransmit:
                    c.send(rid, now)
        for fd, _ev in poll.poll(min(args.retransmit, max(0.0, hard_deadline - now)) * 1000):
            c = by_fd[fd]
            try:
                data, _src = c.sock.recvfrom(2048)
            except OSError:
                continue
            words = data.decode("utf-8", "replace").split()
            if len(words) == 3 and words[0] == "seen":
                c.answers.setdefault(words[1], words[2])
                if c.blocked() is None and c.stage < len(c.steps):
                    c.release(time.monotonic())
                    deadline = max(deadline, time.monotonic() + args.timeout)
    res = {c.name: c for c in cases}
    m = res["map"].answers
    if not m:
        out("error=no answer from %s" % fmt(s1))
        return 2
    maps = [m.get(k, "none") for k in ("m1", "m2", "m3")]
    for i, v in enumerate(maps, 1):
        out("map%d=%s" % (i, v))
    if "none" in maps:
        mapping = "incomplete"
    elif maps[0] == maps[1] == maps[2]:
        mapping = "endpoint-independent"
    elif maps[0] == maps[1]:
        mapping = "address-dependent"
    else:
        mapping = "address-and-port-dependent"
    out("mapping=%s" % mapping)
    out("public=%s" % maps[0])
    out("preserved=%s" % ("yes" if maps[0].endswith(":%d" % base) else "no"))
    verdict = {}
    for name, rid, pre in (("f_port", "fp", None), ("f_addr", "fa", None),
                           ("f_known", "fk", "kp"), ("f_known_port", "fq", "kq")):
        answers = res[name].answers
        if pre and pre not in answers:
            verdict[name] = "precondition-failed"
        else:
            verdict[name] = "yes" if rid in answers else "no"
        out("%s=%s" % (name, verdict[name]))
    if verdict["f_addr"] == "yes":
        filtering = "endpoint-independent"
    elif verdict["f_port"] == "yes":
        filtering = "address-dependent"
    else:
        filtering = "address-and-port-dependent"
    out("filtering=%s" % filtering)
    return 0


def main():
    p = argparse.ArgumentParser(prog="udp-probe.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    lp = sub.add_parser("listen", help="bind and print (or reflect) datagrams")
    lp.add_argument("addrs", nargs="+", metavar="IP:PORT")
    lp.add_argument("--echo", action="store_true", help="answer `req ID [via IP:PORT]`")
    lp.add_argument("--timeout", type=float, default=30.0, help="exit after S seconds (default 30)")
    lp.add_argument("--count", type=int, default=0, help="exit after N datagrams")
    lp.add_argument("--ready", metavar="PATH", help="write `ready` to PATH once bound")
    lp.add_argument("--quiet", action="store_true", help="do not print received datagrams")
    lp.set_defaults(func=cmd_listen)

    sp = sub.add_parser("send", help="send from a chosen port and print replies/ICMP errors")
    sp.add_argument("dests", nargs="+", metavar="IP:PORT")
    sp.add_argument("--bind", default="0", metavar="[IP:]PORT", help="local address (default any:0)")
    sp.add_argument("--ttl", type=int, help="IP TTL of the datagrams")
    sp.add_argument("--msg", default="hello", help="payload text")
    sp.add_argument("--wait", type=float, default=1.0, help="seconds to wait for replies (default 1)")
    sp.add_argument("--count", type=int, default=0, help="stop after N replies/errors")
    sp.set_defaults(func=cmd_send)

    np_ = sub.add_parser("nat-test", help="classify mapping and filtering against `listen --echo`")
    np_.add_argument("--srv", required=True)
    np_.add_argument("--srv2", required=True)
    np_.add_argument("--port", type=int, default=3478)
    np_.add_argument("--port2", type=int, default=3479)
    np_.add_argument("--base-port", type=int, default=40000)
    np_.add_argument("--timeout", type=float, default=0.5,
                     help="how long a filtering probe waits for its answer (default 0.5)")
    np_.add_argument("--retransmit", type=float, default=0.15)
    np_.set_defaults(func=cmd_nat_test)

    args = p.parse_args()
    try:
        return args.func(args)
    except OSError as e:
        sys.stderr.write("udp-probe: %s\n" % e)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
