//! Batched UDP on non-blocking sockets: one sendmmsg or recvmmsg system call moves many
//! datagrams, and a datagram may leave from (or be seen arriving at) any loopback address
//! through IP_PKTINFO.
//!
//! Built on the `nix` crate's safe wrappers rather than quinn-udp: quinn-udp batches sends
//! only as GSO trains (one source, one destination, equal sizes) and sends one datagram per
//! system call otherwise, while a load generator wants plain sendmmsg batches of distinct
//! datagrams, and `nix` exposes both mmsg calls and the IP_PKTINFO control messages
//! without `unsafe` here. (One limit of `nix`'s sendmmsg: its control messages are shared
//! by the whole batch, so a datagram that picks its own source address goes out with
//! [`send_from`], one sendmsg each.)

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    recvmmsg, sendmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, MultiHeaders, SockaddrIn,
};
use socket2::{Domain, Protocol, Socket, Type};

/// Largest datagram received (STUN answers and punch frames are far smaller).
pub const DATAGRAM: usize = 1500;

/// A non-blocking UDP socket bound to `bind`, connected to `peer` if given, with send and
/// receive buffers of `buffer` bytes (the kernel caps them at wmem_max / rmem_max), and
/// IP_PKTINFO on if `pktinfo` (each received datagram then says which local address it
/// was sent to).
pub fn udp_socket(
    bind: SocketAddrV4,
    peer: Option<SocketAddrV4>,
    buffer: usize,
    pktinfo: bool,
) -> Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).context("socket")?;
    // Best effort: a smaller buffer only means earlier drops, which the counts show.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.set_nonblocking(true).context("non-blocking")?;
    if pktinfo {
        setsockopt(&s, sockopt::Ipv4PacketInfo, &true).context("IP_PKTINFO")?;
    }
    s.bind(&bind.into())
        .with_context(|| format!("bind {bind}"))?;
    if let Some(p) = peer {
        s.connect(&p.into())
            .with_context(|| format!("connect {p}"))?;
    }
    Ok(s)
}

/// Sends up to `msgs.len()` datagrams on a connected socket in one sendmmsg; returns how
/// many the kernel took (0 when its buffer is full).
pub struct BatchSender {
    headers: MultiHeaders<SockaddrIn>,
    addrs: Vec<Option<SockaddrIn>>,
}

impl BatchSender {
    pub fn new(batch: usize) -> BatchSender {
        BatchSender {
            headers: MultiHeaders::preallocate(batch, None),
            addrs: vec![None; batch],
        }
    }

    pub fn send(&mut self, fd: RawFd, msgs: &[&[u8]]) -> Result<usize> {
        let n = msgs.len().min(self.addrs.len());
        if n == 0 {
            return Ok(0);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = msgs[..n].iter().map(|m| [IoSlice::new(m)]).collect();
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(
            fd,
            &mut self.headers,
            iovs.iter(),
            &self.addrs[..n],
            no_cmsgs,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(res) => Ok(res.count()),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e).context("sendmmsg"),
        }
    }
}

/// One datagram to `to`, leaving from `src` (any local address: for loopback, anything in
/// 127.0.0.0/8) on an unconnected socket bound to 0.0.0.0 or 127.0.0.1. `Ok(false)` when
/// the kernel's buffer is full.
pub fn send_from(fd: RawFd, msg: &[u8], src: Ipv4Addr, to: SocketAddrV4) -> Result<bool> {
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(src).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
    match sendmsg(
        fd,
        &[IoSlice::new(msg)],
        &cmsg,
        MsgFlags::MSG_DONTWAIT,
        Some(&SockaddrIn::from(to)),
    ) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("sendmsg from {src} to {to}")),
    }
}

/// What one received datagram was: its length, where it came from, and (with IP_PKTINFO)
/// the local address it was sent to.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub len: usize,
    pub from: Option<SocketAddrV4>,
    pub to: Option<Ipv4Addr>,
}

/// Receives up to a batch of datagrams in one recvmmsg.
pub struct BatchReceiver {
    bufs: Vec<[u8; DATAGRAM]>,
    headers: MultiHeaders<SockaddrIn>,
    meta: Vec<Meta>,
}

impl BatchReceiver {
    pub fn new(batch: usize, pktinfo: bool) -> BatchReceiver {
        let cmsg = pktinfo.then(|| nix::cmsg_space!(libc::in_pktinfo));
        BatchReceiver {
            bufs: vec![[0; DATAGRAM]; batch],
            headers: MultiHeaders::preallocate(batch, cmsg),
            meta: Vec::with_capacity(batch),
        }
    }

    /// Receive what is queued (at most a batch, without waiting): how many datagrams, 0 if
    /// none. Read them with [`BatchReceiver::get`].
    pub fn recv(&mut self, fd: RawFd) -> Result<usize> {
        self.meta.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let res = match recvmmsg(
            fd,
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(res) => res,
            Err(Errno::EAGAIN) => return Ok(0),
            // An ICMP error from an earlier send (the server is gone): nothing to read.
            Err(Errno::ECONNREFUSED) => return Ok(0),
            Err(e) => return Err(e).context("recvmmsg"),
        };
        for r in res {
            let to = r.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::Ipv4PacketInfo(i) => {
                        Some(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr)))
                    }
                    _ => None,
                })
            });
            self.meta.push(Meta {
                len: r.bytes.min(DATAGRAM),
                from: r.address.map(|a| SocketAddrV4::new(a.ip(), a.port())),
                to,
            });
        }
        Ok(self.meta.len())
    }

    /// The `i`th datagram of the last [`BatchReceiver::recv`].
    pub fn get(&self, i: usize) -> (&[u8], Meta) {
        let m = self.meta[i];
        (&self.bufs[i][..m.len], m)
    }
}

/// Wait until one of `socks` is readable or `timeout_ms` passes; the readable ones'
/// indices go to `ready`.
pub fn wait_readable<'a>(
    socks: impl Iterator<Item = &'a Socket>,
    timeout_ms: u16,
    ready: &mut Vec<usize>,
) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    ready.clear();
    let mut pfds: Vec<PollFd<'_>> = socks
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    match poll(&mut pfds, PollTimeout::from(timeout_ms)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e).context("poll"),
    }
    for (i, p) in pfds.iter().enumerate() {
        if p.revents().is_some_and(|r| !r.is_empty()) {
            ready.push(i);
        }
    }
    Ok(())
}

/// The raw descriptor of a socket.
pub fn fd(s: &Socket) -> RawFd {
    s.as_raw_fd()
}
