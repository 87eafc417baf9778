//! Address families on our UDP sockets: binding dual-stack, and the IPv4-mapped IPv6
//! form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) a dual-stack socket sends to and receives
//! from.
//!
//! A socket bound to `[::]` takes both families (`IPV6_V6ONLY` off, RFC 3493 §5.3): one
//! socket, so one port, for IPv4 and IPv6 alike, which keeps the design's "one UDP socket
//! per client" (the NAT mapping the server observed is the one peers punch toward). The
//! rest of the program sees plain IPv4 addresses only: every address is made canonical
//! as it comes in ([`canonical`]), and put back in the socket's form as it goes out
//! ([`for_socket`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// The unspecified address of both families: what a client binds by default.
pub const DUAL_STACK_ANY: SocketAddr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
/// The IPv4 unspecified address: the fallback on hosts without IPv6.
pub const IPV4_ANY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Bind a UDP socket on `addr`, non-blocking. `[::]` (any port) is bound dual-stack.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if is_dual_stack_any(addr) {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Bind `addr`; when that is `[::]` and the host has no IPv6 at all (the family is not
/// supported), bind the IPv4 unspecified address on the same port instead.
pub fn bind_udp_or_ipv4(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    or_ipv4(addr, bind_udp)
}

/// `bind(addr)`; when `addr` is `[::]` and the host has no IPv6 at all, `bind` of the
/// IPv4 unspecified address on the same port instead.
pub fn or_ipv4<T>(addr: SocketAddr, bind: impl Fn(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    match bind(addr) {
        Err(e) if is_dual_stack_any(addr) && no_ipv6(&e) => {
            bind(SocketAddr::new(IPV4_ANY.ip(), addr.port()))
        }
        r => r,
    }
}

fn no_ipv6(e: &io::Error) -> bool {
    // EAFNOSUPPORT (97) on Linux, and the kernel's "address not available" for a host
    // booted with IPv6 disabled.
    matches!(e.raw_os_error(), Some(97))
        || matches!(
            e.kind(),
            io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
        )
}

/// True for `[::]`: a socket bound there takes both families.
pub fn is_dual_stack_any(addr: SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V6(ip) if ip.is_unspecified())
}

/// `a` with an IPv4-mapped IPv6 address as plain IPv4; anything else unchanged.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// `dest` as a socket of the given family takes it: an IPv4 address becomes
/// IPv4-mapped on an IPv6 (dual-stack) socket.
pub fn for_socket(dest: SocketAddr, ipv6_socket: bool) -> SocketAddr {
    match dest {
        SocketAddr::V4(v4) if ipv6_socket => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => dest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_round_trip_to_plain_ipv4() {
        let v4: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        let mapped = for_socket(v4, true);
        assert_eq!(mapped.to_string(), "[::ffff:198.51.100.2]:4000");
        assert_eq!(canonical(mapped), v4);
        assert_eq!(for_socket(v4, false), v4);
        let v6: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        assert_eq!(for_socket(v6, true), v6);
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn a_dual_stack_socket_talks_to_both_families_on_loopback() {
        let Ok(dual) = bind_udp(DUAL_STACK_ANY) else {
            eprintln!("no IPv6 on this host: dual-stack test not applicable");
            return;
        };
        let port = dual.local_addr().unwrap().port();
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        v4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        dual.set_nonblocking(false).unwrap();
        dual.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = dual.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"four");
        assert_eq!(canonical(from), v4.local_addr().unwrap());
        dual.send_to(b"back", for_socket(v4.local_addr().unwrap(), true))
            .unwrap();
        v4.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (n, _) = v4.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
    }
}
