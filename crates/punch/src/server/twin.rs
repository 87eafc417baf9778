//! The server's sockets on its primary address: the receiving sockets, one per worker,
//! and their send-only twins.
//!
//! Each time the kernel frees a datagram a socket sent, it wakes whoever waits on that
//! socket (it may be writable again). A socket the runtime polls for reading always has
//! a waiter, its epoll entry, so a server that answers from its receiving socket pays a
//! wake-up per answer: on loopback, where an answer is freed as soon as it is delivered,
//! that was 7-8 % of the server's CPU per STUN request. So every receiving socket gets a
//! twin, bound to the same address and port with `SO_REUSEPORT`, that only sends and is
//! never polled: nobody waits on it, and a freed answer wakes no one. Answers and relayed
//! trains leave from the twin, with the same source address and port as before.
//!
//! All of them form one reuseport group, the receiving sockets first. A classic BPF
//! program on the group, attached to the first receiving socket before it is bound, picks
//! the socket for every arriving datagram: with one worker the first; with several, one
//! of the receiving sockets by a hash of the sender's address and port, so a client's
//! datagrams all reach the same worker. Twins are never picked, and neither is a socket
//! that joins the group later. A socket that has a program before its bind founds a
//! group of its own: the kernel refuses it a port that another group (another server of
//! the same user with `SO_REUSEPORT`) holds, as it refuses a port held by a plain socket,
//! so a port in use is refused rather than shared.
//!
//! Where the program cannot be attached (another OS, a kernel without it) there are no
//! twins: one plain socket, or for several workers sockets spread by the kernel's own
//! hash, their port first bound without `SO_REUSEPORT` so that a port in use is refused.
//! The alternate sockets of RFC 5780 (a handful of requests per client) have no twins.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

/// A receiving socket and its send-only twin, if it has one.
pub(super) type Pair = (std::net::UdpSocket, Option<std::net::UdpSocket>);

/// Binds `listen` (`[::]` falls back to IPv4 on a host without IPv6) as `workers`
/// receiving sockets (at least one), each with its send-only twin where the steering
/// program can be attached.
pub(super) fn bind_group(listen: SocketAddr, workers: usize) -> io::Result<Vec<Pair>> {
    use crate::socket::family::or_ipv4;
    let workers = workers.max(1);
    let Some(first) = or_ipv4(listen, |a| steered(a, workers))? else {
        return unsteered(listen, workers);
    };
    let addr = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut receivers = vec![std::net::UdpSocket::from(first)];
    for _ in 1..workers {
        receivers.push(bind_reuse_port(addr)?);
    }
    // Bound after every receiving socket: the program counts on the receivers holding the
    // group's first places.
    Ok(receivers
        .into_iter()
        .map(|r| {
            let twin = bind_reuse_port(addr)
                .inspect_err(|e| debug!(error = %e, "no send-only socket"))
                .ok();
            (r, twin)
        })
        .collect())
}

/// Without the program: one plain socket, or `workers` sharing the port through
/// `SO_REUSEPORT` after a plain bind proved it free (and chose it, for port 0).
fn unsteered(listen: SocketAddr, workers: usize) -> io::Result<Vec<Pair>> {
    let first = crate::socket::family::bind_udp_or_ipv4(listen)?;
    if workers == 1 {
        return Ok(vec![(first, None)]);
    }
    // The port chosen (for port 0) and the family bound (an IPv4 fallback for `[::]`).
    let addr = first.local_addr()?;
    drop(first);
    (0..workers)
        .map(|_| Ok((bind_reuse_port(addr)?, None)))
        .collect()
}

/// A socket bound to `addr` with `SO_REUSEPORT` and the program steering the group's
/// datagrams to its `workers` first sockets, or none if the program cannot be attached.
fn steered(addr: SocketAddr, workers: usize) -> io::Result<Option<Socket>> {
    let s = reuse_port_socket(addr)?;
    if let Err(e) = steer(&s, workers) {
        debug!(error = %e, "no send-only sockets: cannot steer the port's datagrams");
        return Ok(None);
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(Some(s))
}

/// A UDP socket for `addr`'s family with `SO_REUSEPORT`, not yet bound (dual-stack for
/// `[::]`).
fn reuse_port_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if crate::socket::family::is_dual_stack_any(addr) {
        s.set_only_v6(false)?;
    }
    s.set_reuse_port(true)?;
    Ok(s)
}

/// A non-blocking UDP socket bound to `addr` with `SO_REUSEPORT`: a twin, or one of
/// several workers' sockets on one address.
fn bind_reuse_port(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = reuse_port_socket(addr)?;
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Attaches, to the reuseport group `socket` will found when bound, [`program`]`(workers)`.
#[cfg(target_os = "linux")]
fn steer(socket: &Socket, workers: usize) -> io::Result<()> {
    use nix::libc::sock_fprog;
    use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};
    let mut program = program(workers);
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    setsockopt(socket, AttachReusePortCbpf, &fprog).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn steer(_: &Socket, _: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "steering a reuseport group needs Linux",
    ))
}

/// The reuseport program: its result is the index, in the group, of the socket that takes
/// the datagram. One worker: always 0. Several: a hash of the sender's address and port,
/// modulo `workers` (written by hand: no crate builds classic BPF, and the kernel's own
/// hash, which it falls back to for an index past the group's end, would spread datagrams
/// over the twins too).
///
/// The kernel runs it with the packet's data at the UDP payload; the IP header is read at
/// `SKF_NET_OFF`. IPv4: the source address at 12, the source port just after the header
/// (4 x IHL bytes). IPv6 (a dual-stack socket sees both): the source address at 8..24,
/// the port at 40 (a datagram with extension headers hashes on other bytes, the same for
/// every datagram of that sender). A load past the packet's end ends the program with 0.
#[cfg(target_os = "linux")]
fn program(workers: usize) -> Vec<nix::libc::sock_filter> {
    use nix::libc::{
        sock_filter, BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP,
        BPF_K, BPF_LD, BPF_LDX, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_RET, BPF_RSH,
        BPF_ST, BPF_TAX, BPF_W, BPF_X, BPF_XOR, SKF_NET_OFF,
    };
    let op = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let net = |offset: i32| (SKF_NET_OFF + offset) as u32;
    if workers <= 1 {
        return vec![op(BPF_RET | BPF_K, 0)];
    }
    let xor_x = op(BPF_ALU | BPF_XOR | BPF_X, 0);
    let tax = op(BPF_MISC | BPF_TAX, 0);
    let mut p = vec![
        // 0-2: the IP version, the high nibble of the first byte.
        op(BPF_LD | BPF_B | BPF_ABS, net(0)),
        op(BPF_ALU | BPF_RSH | BPF_K, 4),
        // IPv6: skip the 7 IPv4 instructions that follow.
        jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 7, 0),
        // 3-9 IPv4: address ^ port.
        op(BPF_LD | BPF_W | BPF_ABS, net(12)),
        op(BPF_ST, 0),
        op(BPF_LDX | BPF_B | BPF_MSH, net(0)),
        op(BPF_LD | BPF_H | BPF_IND, net(0)),
        op(BPF_LDX | BPF_MEM, 0),
        xor_x,
        // Over the IPv6 instructions to the mix.
        op(BPF_JMP | BPF_JA, 13),
        // 10-22 IPv6: the address's four words ^ port.
        op(BPF_LD | BPF_W | BPF_ABS, net(8)),
        tax,
    ];
    for word in [12, 16, 20] {
        p.extend([op(BPF_LD | BPF_W | BPF_ABS, net(word)), xor_x, tax]);
    }
    p.extend([
        op(BPF_LD | BPF_H | BPF_ABS, net(40)),
        xor_x,
        // 23-26: mix (Fibonacci hashing: the high half of a multiply by 2^32 / phi), pick.
        op(BPF_ALU | BPF_MUL | BPF_K, 0x9e37_79b1),
        op(BPF_ALU | BPF_RSH | BPF_K, 16),
        op(BPF_ALU | BPF_MOD | BPF_K, workers as u32),
        op(BPF_RET | BPF_A, 0),
    ]);
    p
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};

    /// Which of `receivers` got each of `clients`' datagrams (read without waiting), and
    /// how many each twin got.
    fn drain(pairs: &[Pair], clients: &[UdpSocket]) -> (HashMap<SocketAddr, Vec<usize>>, usize) {
        let mut got: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        let mut at_twins = 0;
        let mut buf = [0u8; 64];
        for (i, (r, t)) in pairs.iter().enumerate() {
            while let Ok((_, from)) = r.recv_from(&mut buf) {
                // A dual-stack socket sees IPv4 senders at mapped addresses.
                let from = crate::socket::family::canonical(from);
                got.entry(from).or_default().push(i);
            }
            let twin = t.as_ref().expect("a twin");
            while twin.recv_from(&mut buf).is_ok() {
                at_twins += 1;
            }
        }
        assert!(clients
            .iter()
            .all(|c| got.contains_key(&c.local_addr().unwrap())));
        (got, at_twins)
    }

    /// Clients on `ip`, each sending `each` datagrams to `to`.
    fn send_from(
        ip: std::net::IpAddr,
        to: SocketAddr,
        clients: usize,
        each: usize,
    ) -> Vec<UdpSocket> {
        let socks: Vec<UdpSocket> = (0..clients)
            .map(|_| UdpSocket::bind((ip, 0)).unwrap())
            .collect();
        for _ in 0..each {
            for s in &socks {
                s.send_to(b"x", to).unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        socks
    }

    fn spread_over_workers(listen: SocketAddr, client_ip: std::net::IpAddr) {
        const WORKERS: usize = 3;
        const CLIENTS: usize = 120;
        let pairs = bind_group(listen, WORKERS).expect("bind");
        assert_eq!(pairs.len(), WORKERS);
        let mut to = pairs[0].0.local_addr().unwrap();
        to.set_ip(client_ip);
        let clients = send_from(client_ip, to, CLIENTS, 2);
        let (got, at_twins) = drain(&pairs, &clients);
        assert_eq!(at_twins, 0, "a twin took datagrams");
        let mut per_worker = [0usize; WORKERS];
        for (from, workers) in &got {
            assert_eq!(workers.len(), 2, "{from}: {workers:?}");
            assert_eq!(
                workers[0], workers[1],
                "{from}'s datagrams went to two workers"
            );
            per_worker[workers[0]] += 1;
        }
        // 120 clients over 3 workers: each takes 40 on average; a third of that is far
        // below what a working hash gives and far above what a program stuck on one
        // socket does.
        assert!(
            per_worker.iter().all(|&n| n >= CLIENTS / WORKERS / 3),
            "clients per worker: {per_worker:?}"
        );
    }

    #[test]
    fn ipv4_clients_spread_over_the_workers_and_never_reach_a_twin() {
        spread_over_workers((Ipv4Addr::LOCALHOST, 0).into(), Ipv4Addr::LOCALHOST.into());
    }

    #[test]
    fn clients_of_either_family_spread_over_a_dual_stack_group() {
        // As `[::]` is bound: the program reads IPv6 headers, and IPv4 ones for senders
        // the socket sees at mapped addresses.
        for client in [Ipv6Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into()] {
            spread_over_workers((Ipv6Addr::UNSPECIFIED, 0).into(), client);
        }
    }

    #[test]
    fn one_worker_takes_every_datagram() {
        let pairs = bind_group((Ipv4Addr::LOCALHOST, 0).into(), 1).expect("bind");
        let to = pairs[0].0.local_addr().unwrap();
        let clients = send_from(Ipv4Addr::LOCALHOST.into(), to, 60, 1);
        let (got, at_twins) = drain(&pairs, &clients);
        assert_eq!((got.len(), at_twins), (60, 0));
    }

    #[test]
    fn a_socket_joining_later_takes_nothing() {
        let pairs = bind_group((Ipv4Addr::LOCALHOST, 0).into(), 2).expect("bind");
        let to = pairs[0].0.local_addr().unwrap();
        // Same user, SO_REUSEPORT, no program of its own: the kernel lets it join.
        let late = bind_reuse_port(to).expect("a later member of the group");
        let clients = send_from(Ipv4Addr::LOCALHOST.into(), to, 60, 1);
        let mut buf = [0u8; 8];
        assert!(
            late.recv_from(&mut buf).is_err(),
            "the late socket got a datagram"
        );
        let (got, _) = drain(&pairs, &clients);
        assert_eq!(got.len(), 60);
    }
}
