//! Happy Eyeballs (RFC 8305) toward the rendezvous server: which of the addresses its
//! name resolved to the client registers with.
//!
//! The addresses are put in RFC 8305 §4 order (IPv6 first, then the families
//! alternating), and a `<Hi!>` check (the server's netcat liveness check, answered
//! `<HI!>`) goes to each in turn, one [`ATTEMPT_DELAY`] apart, or at once after an attempt
//! failed outright (no route); the first address to answer wins. A check is our
//! "connection attempt": a registration needs a server that answers over that family.
//! Checks are repeated every [`RESEND`] while no answer came; after [`RACE_MAX`] (or the
//! client's server timeout, if shorter) the first address is used anyway, and the
//! registration reports the silence.
//!
//! Owns only the race; the socket and its control channel are the client's, handed back
//! untouched but for the answers taken here.

use std::net::SocketAddr;
use std::time::Duration;

use punch_proto::wire::{HI_REQUEST, HI_RESPONSE};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::socket::{ControlDatagram, DemuxSocket};

/// RFC 8305 §5's recommended Connection Attempt Delay: the head start of each address
/// over the next.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Checks to addresses already tried are sent again this often (UDP loses datagrams).
pub const RESEND: Duration = Duration::from_millis(1000);
/// Longest race: then the first address is registered with anyway (a server may leave
/// `<Hi!>` unanswered, over its per-source limit, and still take registrations), and the
/// registration's own timeout says whether the server is there.
pub const RACE_MAX: Duration = Duration::from_secs(2);

/// What the race found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The address to register with.
    pub server: SocketAddr,
    /// The server's first address in the other family, if the socket takes it.
    pub other: Option<SocketAddr>,
    /// True if `server` answered the check (false: nothing answered in time, or there
    /// was only one address to try).
    pub answered: bool,
    /// How long the race took.
    pub took: Duration,
}

/// `addrs` in RFC 8305 §4 order: duplicates dropped, the first IPv6 address first, then
/// alternating families, each family in its resolver order.
pub fn order(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut v6: Vec<SocketAddr> = Vec::new();
    let mut v4: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        let list = if a.is_ipv6() { &mut v6 } else { &mut v4 };
        if !list.contains(a) {
            list.push(*a);
        }
    }
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let (mut i, mut j) = (v6.into_iter(), v4.into_iter());
    loop {
        match (i.next(), j.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Race `addrs` (see the module doc) over `socket`, whose control datagrams arrive on
/// `ctl`; give up after `timeout`. Addresses of a family the socket cannot send to
/// (IPv6 on an IPv4-only socket) are left out.
pub async fn race(
    socket: &DemuxSocket,
    ctl: &mut mpsc::Receiver<ControlDatagram>,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Option<Outcome> {
    let ipv6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    let order: Vec<SocketAddr> = order(addrs)
        .into_iter()
        .filter(|a| ipv6 || a.is_ipv4())
        .collect();
    let first = *order.first()?;
    let start = Instant::now();
    let outcome = |server: SocketAddr, answered: bool| Outcome {
        server,
        other: order
            .iter()
            .copied()
            .find(|a| a.is_ipv4() != server.is_ipv4()),
        answered,
        took: start.elapsed(),
    };
    if order.len() == 1 {
        return Some(outcome(first, false));
    }
    let give_up = start + timeout;
    let mut started = 0;
    let mut next_start = start;
    let mut next_resend = start + RESEND;
    loop {
        let now = Instant::now();
        if now >= next_start && started < order.len() {
            let to = order[started];
            started += 1;
            next_start = now + ATTEMPT_DELAY;
            if let Err(e) = socket.send_to(HI_REQUEST, to, None) {
                // No route in that family: the next attempt starts at once (§5).
                debug!(%to, error = %e, "server address unreachable");
                next_start = now;
                continue;
            }
        }
        if now >= next_resend {
            for to in &order[..started] {
                let _ = socket.send_to(HI_REQUEST, *to, None);
            }
            next_resend = now + RESEND;
        }
        if now >= give_up {
            return Some(outcome(first, false));
        }
        let mut wake = give_up.min(next_resend);
        if started < order.len() {
            wake = wake.min(next_start);
        }
        tokio::select! {
            d = ctl.recv() => match d {
                Some(d) if d.data == HI_RESPONSE && order[..started].contains(&d.from) => {
                    return Some(outcome(d.from, true));
                }
                // Nothing else is expected before we register: dropped.
                Some(_) => {}
                None => return Some(outcome(first, false)),
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// A TCP connection to the first of `addrs` (in [`order`]) to accept, each attempt
/// started [`ATTEMPT_DELAY`] after the one before (at once when it failed), every attempt
/// kept running until one wins (RFC 8305 §5). The caller bounds the whole in time.
pub async fn connect_tcp(
    addrs: &[SocketAddr],
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    let order = order(addrs);
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut last_err = None;
    loop {
        if next < order.len() {
            let to = order[next];
            next += 1;
            attempts.spawn(async move { (to, tokio::net::TcpStream::connect(to).await) });
        }
        if attempts.is_empty() {
            return Err(last_err.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no server address")
            }));
        }
        tokio::select! {
            done = attempts.join_next() => match done {
                Some(Ok((to, Ok(stream)))) => return Ok((stream, to)),
                // A failed attempt: the next starts at once (at the top of the loop).
                Some(Ok((to, Err(e)))) => {
                    debug!(%to, error = %e, "TCP attempt failed");
                    last_err = Some(e);
                }
                _ => {}
            },
            _ = tokio::time::sleep(ATTEMPT_DELAY), if next < order.len() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_first_then_families_alternate() {
        let got = order(&[
            a("192.0.2.1:1"),
            a("192.0.2.2:1"),
            a("[2001:db8::1]:1"),
            a("192.0.2.1:1"),
            a("[2001:db8::2]:1"),
            a("192.0.2.3:1"),
        ]);
        let want = [
            "[2001:db8::1]:1",
            "192.0.2.1:1",
            "[2001:db8::2]:1",
            "192.0.2.2:1",
            "192.0.2.3:1",
        ];
        assert_eq!(got, want.iter().map(|s| a(s)).collect::<Vec<_>>());
        assert_eq!(order(&[a("192.0.2.1:1")]), vec![a("192.0.2.1:1")]);
        assert!(order(&[]).is_empty());
    }
}
