//! NAT behaviour discovery over real sockets: the IO half of [`punch_proto::nat`].
//!
//! Owns the two UDP sockets discovery needs (the "mapping" socket and a fresh "filtering"
//! socket, so that no test is spoiled by a mapping an earlier one opened) and the loop
//! that feeds them to the sans-IO [`Discovery`]. The tests, their order and the verdicts
//! are the core's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};

use punch_proto::nat::{Discovery, DiscoveryConfig, LocalSocket, NatReport};
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The address this host uses toward `server` (asking the kernel for the route: connect
/// on a throwaway UDP socket sends nothing). A specific `bind` is the answer itself;
/// without a route, the unspecified address of `server`'s family.
pub fn local_ip_toward(server: SocketAddr, bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let probe = StdUdpSocket::bind(SocketAddr::new(any, 0)).and_then(|s| {
        s.connect(server)?;
        s.local_addr()
    });
    probe
        .map(|a| crate::socket::family::canonical(a).ip())
        .unwrap_or(any)
}

/// Run RFC 5780 discovery against `server` from two fresh sockets on `bind`.
///
/// Always ends: the core bounds every test by retransmission limits, so an unreachable
/// server yields a `blocked` report, not an endless wait.
pub async fn discover(server: SocketAddr, bind: IpAddr) -> io::Result<NatReport> {
    // Discovery is per family: an unspecified `bind` means the server's.
    let bind = match (bind.is_unspecified(), server.is_ipv4()) {
        (true, true) => Ipv4Addr::UNSPECIFIED.into(),
        (true, false) => Ipv6Addr::UNSPECIFIED.into(),
        (false, _) => bind,
    };
    let ip = local_ip_toward(server, bind);
    let mapping = UdpSocket::bind(SocketAddr::new(bind, 0)).await?;
    let filtering = UdpSocket::bind(SocketAddr::new(bind, 0)).await?;
    let cfg = DiscoveryConfig::new(
        SocketAddr::new(ip, mapping.local_addr()?.port()),
        SocketAddr::new(ip, filtering.local_addr()?.port()),
    );
    let mut disco = Discovery::new(cfg, server, Instant::now().into_std(), rand::rng().random());
    let (mut buf_m, mut buf_f) = (vec![0u8; 2048], vec![0u8; 2048]);
    loop {
        while let Some(t) = disco.poll_transmit() {
            let socket = match t.socket {
                LocalSocket::Mapping => &mapping,
                LocalSocket::Filtering => &filtering,
            };
            // A failed send is a lost datagram to the core: it retransmits or concludes.
            let _ = socket.send_to(&t.payload, t.dest).await;
        }
        if let Some(report) = disco.result() {
            return Ok(report.clone());
        }
        let Some(wake) = disco.poll_timeout() else {
            return Err(io::Error::other("discovery stalled without a result"));
        };
        tokio::select! {
            r = mapping.recv_from(&mut buf_m) => {
                if let Ok((n, from)) = r {
                    disco.handle_datagram(Instant::now().into_std(), LocalSocket::Mapping, from, &buf_m[..n]);
                }
            }
            r = filtering.recv_from(&mut buf_f) => {
                if let Ok((n, from)) = r {
                    disco.handle_datagram(Instant::now().into_std(), LocalSocket::Filtering, from, &buf_f[..n]);
                }
            }
            _ = tokio::time::sleep_until(Instant::from_std(wake)) => {}
        }
        disco.handle_timeout(Instant::now().into_std());
    }
}
