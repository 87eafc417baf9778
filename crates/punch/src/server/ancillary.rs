//! The ancillary data the server's UDP sockets ask of the kernel.
//!
//! quinn-udp's socket state (batched receive, GRO, GSO) turns on, for every datagram, the
//! destination-address (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) and traffic-class (`IP_RECVTOS`,
//! `IPV6_RECVTCLASS`) control messages a QUIC endpoint wants. The server reads neither:
//! the relay forwards no ECN marks, and a socket bound to one address answers from that
//! address. Building them costs the kernel two control messages per datagram: turning
//! them off saved a median 5 % (1 to 21 %) of the server's CPU time per STUN request in
//! six paired runs on loopback, so a socket bound to one address does. A wildcard bind
//! keeps them: on a host with several addresses the destination address is what a
//! reply's source must be. GRO stays on (the relay's trains arrive coalesced).
//!
//! Owns nothing but that choice; the sockets belong to [`super::send::Outs`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};
use quinn::udp::UdpSocketState;

/// quinn-udp's state for `socket`, bound to `local`, without the control messages the
/// server does not read (see the module doc).
pub(super) fn udp_state(socket: &impl AsFd, local: SocketAddr) -> io::Result<UdpSocketState> {
    let state = UdpSocketState::new(socket.into())?;
    if !local.ip().is_unspecified() {
        // Best effort: a kernel that refuses only keeps sending what quinn-udp asked for.
        let off = |r: nix::Result<()>| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "control message left on");
            }
        };
        if local.is_ipv4() {
            off(setsockopt(socket, sockopt::Ipv4PacketInfo, &false));
            off(setsockopt(socket, sockopt::IpRecvTos, &false));
        } else {
            off(setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &false));
            off(setsockopt(socket, sockopt::Ipv6RecvTClass, &false));
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::getsockopt;
    use tokio::net::UdpSocket;

    async fn bound(addr: &str) -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind(addr).await.expect("bind");
        let local = socket.local_addr().expect("local address");
        (socket, local)
    }

    #[tokio::test]
    async fn one_address_asks_for_no_destination_or_tos() {
        let (socket, local) = bound("127.0.0.1:0").await;
        // quinn-udp alone turns both on: what the server turns off.
        UdpSocketState::new((&socket).into()).expect("state");
        assert!(getsockopt(&socket, sockopt::Ipv4PacketInfo).unwrap());
        assert!(getsockopt(&socket, sockopt::IpRecvTos).unwrap());
        udp_state(&socket, local).expect("state");
        assert!(!getsockopt(&socket, sockopt::Ipv4PacketInfo).unwrap());
        assert!(!getsockopt(&socket, sockopt::IpRecvTos).unwrap());

        let (socket, local) = bound("[::1]:0").await;
        udp_state(&socket, local).expect("state");
        assert!(!getsockopt(&socket, sockopt::Ipv6RecvPacketInfo).unwrap());
        assert!(!getsockopt(&socket, sockopt::Ipv6RecvTClass).unwrap());
    }

    #[tokio::test]
    async fn a_wildcard_bind_keeps_the_destination_address() {
        let (socket, local) = bound("0.0.0.0:0").await;
        udp_state(&socket, local).expect("state");
        assert!(getsockopt(&socket, sockopt::Ipv4PacketInfo).unwrap());
    }
}
