//! The server's sending side: its sockets as destinations ([`Out`], [`Outs`]), relayed
//! datagrams leaving as GSO trains ([`Train`]), and the answers of one receive batch
//! leaving in one `sendmmsg` ([`Answers`]).
//!
//! Owns no task: the receive tasks and the server loop of the parent module call in.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use punch_proto::stun::responder::SocketId;
use tokio::net::UdpSocket;
use tracing::debug;

/// One socket the server sends from, and which destinations it can reach.
pub(super) struct Out {
    pub(super) group: usize,
    pub(super) id: SocketId,
    pub(super) socket: Arc<UdpSocket>,
    /// quinn-udp's view of it (batched receive, GSO sends of relayed trains).
    pub(super) state: quinn::udp::UdpSocketState,
    /// The send-only socket on the same address that answers and relayed trains leave
    /// from, where there is one (see `twin.rs`).
    pub(super) twin: Option<Twin>,
    /// An IPv6 socket: IPv4 destinations need the mapped form, and only a dual-stack
    /// one (bound to `[::]`) reaches them.
    pub(super) ipv6: bool,
    pub(super) dual: bool,
}

/// A send-only socket, never polled, and quinn-udp's view of it.
pub(super) struct Twin {
    pub(super) socket: std::net::UdpSocket,
    pub(super) state: quinn::udp::UdpSocketState,
}

impl Out {
    /// The socket to send from (the twin, else the receiving socket) and its quinn-udp
    /// state.
    fn sender(&self) -> (BorrowedFd<'_>, &quinn::udp::UdpSocketState) {
        match &self.twin {
            Some(t) => (t.socket.as_fd(), &t.state),
            None => (self.socket.as_fd(), &self.state),
        }
    }

    fn reaches(&self, to: SocketAddr) -> bool {
        match (to.is_ipv4(), self.ipv6) {
            (true, false) | (false, true) => true,
            (true, true) => self.dual,
            (false, false) => false,
        }
    }
}

/// Every socket of every group (a group's primary address may have several, one per
/// worker: any of them sends from that address).
pub(super) struct Outs(pub(super) Vec<Out>);

impl Outs {
    fn get(&self, group: usize, id: SocketId) -> Option<&Out> {
        self.0.iter().find(|o| o.group == group && o.id == id)
    }

    /// The socket a datagram to `to` leaves from: `(group, id)` if it reaches `to`, else
    /// the first primary socket that does (a peer of the other family).
    pub(super) fn toward(&self, group: usize, id: SocketId, to: SocketAddr) -> Option<&Out> {
        self.get(group, id).filter(|o| o.reaches(to)).or_else(|| {
            self.0
                .iter()
                .find(|o| o.id == SocketId::PRIMARY && o.reaches(to))
        })
    }

    /// Send `bytes` to `to` from `(group, id)`, or the socket that reaches it.
    pub(super) fn send(&self, group: usize, id: SocketId, to: SocketAddr, bytes: &[u8]) {
        let Some(out) = self.toward(group, id, to) else {
            debug!(%to, "no socket reaches that address family");
            return;
        };
        let dest = crate::socket::family::for_socket(to, out.ipv6);
        if let Err(e) = crate::socket::raw_send(&out.socket, bytes, dest) {
            debug!(%to, error = %e, "send failed");
        }
    }
}

/// Answers (STUN, `<Hi!>`) collected while one receive batch is handled, sent when it is
/// done: one `sendmmsg` per run of answers leaving from the same socket. The buffers are
/// kept from batch to batch, so answering allocates nothing per datagram.
pub(super) struct Answers<'a> {
    /// Encoded answers; the first `len` are queued, the rest are spare buffers.
    bufs: Vec<Vec<u8>>,
    /// Where each queued answer goes: the socket and the destination in its form.
    dests: Vec<(&'a Out, SocketAddr)>,
    addrs: Vec<Option<SockaddrStorage>>,
}

/// Most answers sent in one system call.
const SEND_BATCH: usize = 64;

impl<'a> Answers<'a> {
    pub(super) fn new() -> Self {
        Answers {
            bufs: Vec::new(),
            dests: Vec::new(),
            addrs: Vec::new(),
        }
    }

    /// An empty buffer for the next answer; [`Answers::queue`] sends it, anything else
    /// drops it.
    pub(super) fn next_buf(&mut self) -> &mut Vec<u8> {
        let i = self.dests.len();
        if i == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(128));
        }
        let buf = &mut self.bufs[i];
        buf.clear();
        buf
    }

    /// Queue the buffer last given by [`Answers::next_buf`] to `to` (canonical), from
    /// `out` (which reaches it).
    pub(super) fn queue(&mut self, out: &'a Out, to: SocketAddr) {
        let dest = crate::socket::family::for_socket(to, out.ipv6);
        self.dests.push((out, dest));
    }

    /// How many answers are queued.
    pub(super) fn len(&self) -> usize {
        self.dests.len()
    }

    /// Send what is queued. A full send buffer drops the rest, as a congested link would
    /// (clients retransmit); an answer the kernel refuses is skipped.
    pub(super) fn flush(&mut self) {
        let mut start = 0;
        while start < self.dests.len() {
            let out = self.dests[start].0;
            let run = self.dests[start..]
                .iter()
                .take(SEND_BATCH)
                .take_while(|(o, _)| std::ptr::eq(*o, out))
                .count();
            match self.send_run(out, start, run) {
                Ok(sent) => start += sent.max(1),
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    debug!(to = %self.dests[start].1, error = %e, "answer not sent");
                    start += 1;
                }
            }
        }
        self.dests.clear();
    }

    /// One `sendmmsg` of the `run` answers from `start`, all leaving from `out`: how many
    /// the kernel took.
    fn send_run(&mut self, out: &Out, start: usize, run: usize) -> Result<usize, Errno> {
        self.addrs.clear();
        self.addrs.extend(
            self.dests[start..start + run]
                .iter()
                .map(|(_, to)| Some(SockaddrStorage::from(*to))),
        );
        let iovs: Vec<[IoSlice<'_>; 1]> = self.bufs[start..start + run]
            .iter()
            .map(|b| [IoSlice::new(b)])
            .collect();
        // Built per call: the headers hold raw pointers, so they cannot live in a task.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(run, None);
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let fd = out.sender().0.as_raw_fd();
        sendmmsg(
            fd,
            &mut headers,
            iovs.iter(),
            &self.addrs,
            no_cmsgs,
            MsgFlags::MSG_DONTWAIT,
        )
        .map(|r| r.count())
    }
}

/// Largest UDP payload of one GSO send: the IPv4 total length is 16 bits (20 bytes of IP
/// header, 8 of UDP).
pub(super) const GSO_MAX_BYTES: usize = u16::MAX as usize - 28;

/// Relayed datagrams that go on to the same peer back to back, collected to leave as one
/// GSO train: one system call, one trip through the network stack, and the receiving
/// peer reads them in one go (GRO). Runs may span the trains of one receive batch. GSO
/// asks that every segment but the last has the first one's length.
#[derive(Default)]
pub(super) struct Train<'a> {
    /// The socket it leaves from (one that reaches `to`).
    out: Option<&'a Out>,
    to: Option<SocketAddr>,
    /// Length of every segment but the last.
    pub(super) segment: usize,
    pub(super) count: usize,
    /// The last datagram added was shorter than `segment`: nothing may follow it.
    closed: bool,
    pub(super) bytes: Vec<u8>,
}

impl<'a> Train<'a> {
    /// Forward `data` to `to` from `out`, with the datagrams before it if it can join them.
    pub(super) fn push(&mut self, out: &'a Out, to: SocketAddr, data: &[u8]) {
        if !self.joins(to, data.len(), out.state.max_gso_segments()) {
            self.flush();
        }
        self.out = Some(out);
        self.append(to, data);
    }

    /// Whether a datagram of `len` bytes to `to` can join this train as its next segment.
    pub(super) fn joins(&self, to: SocketAddr, len: usize, max_segments: usize) -> bool {
        self.to == Some(to)
            && !self.closed
            && len <= self.segment
            && self.count < max_segments
            && self.bytes.len() + len <= GSO_MAX_BYTES
    }

    /// Add a datagram that [`Train::joins`] this train, or start one (when empty).
    pub(super) fn append(&mut self, to: SocketAddr, data: &[u8]) {
        if self.to.is_none() {
            self.to = Some(to);
            self.segment = data.len();
        }
        self.bytes.extend_from_slice(data);
        self.count += 1;
        self.closed = data.len() < self.segment;
    }

    /// Send what has been collected.
    pub(super) fn flush(&mut self) {
        let (Some(to), Some(out)) = (self.to, self.out) else {
            return;
        };
        let (socket, state) = out.sender();
        let transmit = quinn::udp::Transmit {
            destination: crate::socket::family::for_socket(to, out.ipv6),
            ecn: None,
            contents: &self.bytes,
            segment_size: (self.count > 1).then_some(self.segment),
            src_ip: None,
        };
        // Only WouldBlock is returned (quinn-udp logs the rest): a full send buffer loses
        // the datagrams as a congested link would.
        if let Err(e) = state.send((&socket).into(), &transmit) {
            debug!(%to, error = %e, "relay send failed");
        }
        self.clear();
    }

    pub(super) fn clear(&mut self) {
        self.to = None;
        self.bytes.clear();
        self.count = 0;
        self.closed = false;
    }
}
