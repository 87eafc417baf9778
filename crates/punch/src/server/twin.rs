//! Send-only twins of the server's receiving sockets.
//!
//! Each time the kernel frees a datagram a socket sent, it wakes whoever waits on that
//! socket (it may be writable again). A socket the runtime polls for reading always has
//! a waiter, its epoll entry, so a server that answers from its receiving socket pays a
//! wake-up per answer: on loopback, where an answer is freed as soon as it is delivered,
//! that was 7-8 % of the server's CPU per STUN request. So the primary address's receiving
//! socket gets a twin, bound to the same address and port with `SO_REUSEPORT`, that only
//! sends and is never polled: nobody waits on it, and a freed answer wakes no one.
//! Answers and relayed trains leave from the twin, with the same source address and port
//! as before.
//!
//! A classic BPF program on the port's reuseport group, attached to the receiving socket
//! before it is bound, gives every arriving datagram to the group's first socket, the
//! receiving one: the twin never receives. A socket that has a program before its bind
//! founds a group of its own: the kernel refuses it a port that another group (another
//! server of the same user with `SO_REUSEPORT`) holds, as it refuses a port held by a
//! plain socket, so a port in use is still refused rather than shared.
//!
//! Only where an address has one receiving socket (`--workers 1`, the default): with
//! several, the kernel's hash spreads clients over them, and a program would have to redo
//! that hash; they send from their own sockets. Where the program cannot be attached
//! (another OS, a kernel without it) there is no twin either. The alternate sockets of
//! RFC 5780 (a handful of requests per client) have none.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

/// Binds `listen` (`[::]` falls back to IPv4 on a host without IPv6) as the receiving
/// socket, steered to take every datagram sent to its port, and its send-only twin; where
/// the steering cannot be attached, a plain socket and no twin.
pub(super) fn bind_pair(
    listen: SocketAddr,
) -> io::Result<(std::net::UdpSocket, Option<std::net::UdpSocket>)> {
    use crate::socket::family::{bind_udp_or_ipv4, or_ipv4};
    let Some(recv) = or_ipv4(listen, steered)? else {
        return Ok((bind_udp_or_ipv4(listen)?, None));
    };
    let twin = recv
        .local_addr()
        .and_then(|a| {
            a.as_socket()
                .ok_or_else(|| io::ErrorKind::InvalidData.into())
        })
        .and_then(bind_reuse_port)
        .inspect_err(|e| debug!(error = %e, "no send-only socket"))
        .ok();
    Ok((recv.into(), twin))
}

/// A socket bound to `addr` with `SO_REUSEPORT` and the steering program, or none if the
/// program cannot be attached.
fn steered(addr: SocketAddr) -> io::Result<Option<Socket>> {
    let s = reuse_port_socket(addr)?;
    if let Err(e) = steer_to_first(&s) {
        debug!(error = %e, "no send-only socket: cannot steer the port's datagrams");
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
pub(super) fn bind_reuse_port(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = reuse_port_socket(addr)?;
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Attaches, to the reuseport group `socket` will found when bound, a program that
/// picks the group's first socket (index 0) for every datagram.
#[cfg(target_os = "linux")]
fn steer_to_first(socket: &Socket) -> io::Result<()> {
    use nix::libc::{sock_filter, sock_fprog, BPF_K, BPF_RET};
    use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};
    // One instruction: return 0, the index of the socket to take the datagram.
    let mut program = [sock_filter {
        code: (BPF_RET | BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    setsockopt(socket, AttachReusePortCbpf, &fprog).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn steer_to_first(_: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "steering a reuseport group needs Linux",
    ))
}
