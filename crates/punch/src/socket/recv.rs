//! The socket's receive loop: it reads datagrams in batches and sorts them, QUIC (direct
//! or relayed) for quinn, the rest for the client's control task. Direct QUIC datagrams
//! stay in the buffer they were received into, lent to quinn ([`Pool`]), when one is free.
//!
//! Owns the loop and the sorting; the socket, its queues and quinn's side of them are the
//! parent module's.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;

use punch_proto::wire;
use quinn::udp::RecvMeta;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tracing::{debug, trace};

use super::batch::{Backlog, LastLookup, Pool, QuicBatch};
use super::{family, is_quic, lock, ControlDatagram, Inner, Io, GRO_BUF, MAX_DATAGRAM, RECV_SLOTS};

pub(super) async fn recv_loop(
    inner: std::sync::Weak<Inner>,
    io: Arc<Io>,
    ctl_tx: mpsc::Sender<ControlDatagram>,
    pool: Arc<Pool>,
    backlog: Arc<Backlog>,
) {
    // Without GRO every buffer holds one datagram; with it, up to a whole train.
    let slot = if io.state.gro_segments() > 1 {
        GRO_BUF
    } else {
        MAX_DATAGRAM
    };
    // BATCH_SIZE is at least 1 (1 where recvmmsg is missing).
    let slots = RECV_SLOTS.min(quinn::udp::BATCH_SIZE);
    // Received into when no buffer can be lent (then QUIC datagrams are copied out).
    let mut own = vec![0u8; slot * slots];
    let mut meta = vec![RecvMeta::default(); slots];
    // The most QUIC datagrams one read can bring (a train per buffer).
    let most = slots * io.state.gro_segments().max(1);
    loop {
        // quinn behind: leave what arrives in the kernel's buffer meanwhile (see Backlog).
        backlog.room_for(most).await;
        let mut lent = pool.lend(own.len());
        let n = {
            let storage = lent.as_mut().map_or(&mut own[..], |l| &mut l.buf[..]);
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.chunks_mut(slot).map(IoSliceMut::new).collect();
            match io.udp.readable().await {
                Ok(()) => io.udp.try_io(Interest::READABLE, || {
                    io.state.recv((&io.udp).into(), &mut bufs, &mut meta)
                }),
                Err(e) => Err(e),
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP errors (port unreachable after a probe to a dead candidate) surface
                // here on some systems; they say nothing about the socket itself.
                debug!(error = %e, "udp receive error");
                continue;
            }
        };
        // Upgraded only now: waiting above must not keep the socket alive (its owner
        // aborts this loop when the last handle drops).
        let Some(sock) = inner.upgrade() else { return };
        let storage = lent.as_ref().map_or(&own[..], |l| &l.buf[..]);
        // Which buffers quinn takes in place (direct QUIC only: one datagram or a train);
        // room is made once for what the others hand on by copy.
        let mut in_place = [false; RECV_SLOTS];
        let mut copied = 0;
        for (i, (m, buf)) in meta.iter().zip(storage.chunks(slot)).enumerate().take(n) {
            let data = &buf[..m.len.min(buf.len())];
            // QUIC's first bytes lie above the relay tag's, so this is direct QUIC alone.
            let quic = |d: &[u8]| d.first().is_some_and(|&b| is_quic(b));
            in_place[i] =
                lent.is_some() && !data.is_empty() && data.chunks(m.stride.max(1)).all(quic);
            if !in_place[i] {
                copied += data.len();
            }
        }
        let mut batch = QuicBatch::with_capacity(copied);
        let mut by_real = LastLookup::new();
        let mut by_session = LastLookup::new();
        for (i, (m, buf)) in meta.iter().zip(storage.chunks(slot)).enumerate().take(n) {
            let len = m.len.min(buf.len());
            let from = family::canonical(m.addr);
            let stride = m.stride.max(1);
            if in_place[i] {
                let v = sock.direct_virtual(from, &mut by_real);
                batch.push_lent(v, i * slot, i * slot + len, stride);
                continue;
            }
            for data in buf[..len].chunks(stride) {
                sock.demux(
                    from,
                    data,
                    &mut batch,
                    &mut by_real,
                    &mut by_session,
                    &ctl_tx,
                );
            }
        }
        if batch.runs.iter().any(|r| r.lent) {
            batch.lent = lent;
        }
        sock.queue_for_quinn(batch);
    }
}

impl Inner {
    /// Where quinn sees a direct QUIC datagram from `from`: a peer on a direct path shows
    /// up at its virtual address too (anyone else at its own).
    fn direct_virtual(&self, from: SocketAddr, by_real: &mut LastLookup<SocketAddr>) -> SocketAddr {
        let v = by_real.get(from, |real| {
            let v = self.paths.virtual_for_real(real);
            if let Some(v) = v {
                self.paths.learn_direct(v, real);
            }
            v
        });
        v.unwrap_or(from)
    }

    /// Sort one received datagram: QUIC (direct or relayed) into `batch`, the rest to the
    /// control channel.
    fn demux(
        &self,
        from: SocketAddr,
        data: &[u8],
        batch: &mut QuicBatch,
        by_real: &mut LastLookup<SocketAddr>,
        by_session: &mut LastLookup<u64>,
        ctl_tx: &mpsc::Sender<ControlDatagram>,
    ) {
        let Some(&first) = data.first() else { return };
        // Relayed QUIC: unwrap it and hand it to quinn as coming from the peer's virtual
        // address. Only the server relays; anything else with the tag is dropped.
        if first == wire::RELAY_TAG {
            if let Some((_, session, payload)) = wire::decode_relay(data) {
                if !payload.is_empty() && is_quic(payload[0]) {
                    match by_session.get(session, |s| self.paths.virtual_for_session(s)) {
                        Some(v) => batch.push(v, payload),
                        // The peer's first packets can overtake our own introduction (which
                        // waits in the control queue): keep them until the session is mapped.
                        None => lock(&self.parked).park(session, payload.to_vec()),
                    }
                }
            }
        } else if is_quic(first) {
            batch.push(self.direct_virtual(from, by_real), data);
        } else if ctl_tx
            .try_send(ControlDatagram {
                from,
                data: data.to_vec(),
            })
            .is_err()
        {
            trace!(%from, "control queue full or closed; datagram dropped");
        }
    }
}
