//! socket2 helpers for TCP punching: every socket of a punching port sets SO_REUSEADDR and
//! SO_REUSEPORT, so one local port can listen and connect (to the server's assist port and to
//! the peer's candidates) at the same time.
//!
//! Owns socket creation only; what is connected where is [`super::client`]'s business.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn reusable(local: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(local))?;
    Ok(socket)
}

/// A listener on `local` (port 0: the kernel picks) that other sockets may share the port of.
pub fn reusable_listener(local: SocketAddr) -> io::Result<TcpListener> {
    let socket = reusable(local)?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

/// Connect from `local` (shared with a [`reusable_listener`]) to `remote`, with `ttl` for
/// the socket's packets if given, within `timeout`.
pub async fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    ttl: Option<u32>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = reusable(local)?;
    if let Some(ttl) = ttl {
        socket.set_ttl(ttl)?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(timeout, socket.connect(remote)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Send an opening SYN from `local` to `remote` with a low `ttl`: it leaves through our own
/// NAT (creating the mapping and the state that lets the peer's SYN in) and expires in the
/// network before reaching the peer's NAT. The attempt is abandoned after `linger`.
pub async fn opening_syn(local: SocketAddr, remote: SocketAddr, ttl: u32, linger: Duration) {
    let _ = connect_from(local, remote, Some(ttl), linger).await;
}
