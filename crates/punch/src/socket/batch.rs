//! Receive-side bookkeeping of the demultiplexing socket: QUIC datagrams batched into runs
//! for quinn, the count of them queued and the receive loop's backpressure on it
//! ([`Backlog`]), the receive buffers lent to quinn with direct datagrams still in them,
//! relayed datagrams parked until their session is known, and the one-entry lookup cache
//! of a receive batch.
//!
//! Owns plain data structures only; the socket and its loops are the parent module's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{GRO_BUF, QUIC_QUEUE};

/// How long the receive loop waits for quinn to make room before it reads anyway
/// ([`Backlog::room_for`]).
pub(super) const ROOM_WAIT: Duration = Duration::from_millis(20);

/// The QUIC datagrams queued for quinn (at most [`QUIC_QUEUE`]), and the receive loop's
/// backpressure on them. While quinn is behind, the loop does not read: datagrams wait in
/// the kernel's receive buffer (4 MiB asked for, where an overflow is counted as a receive
/// buffer error) instead of being read only to be dropped at the queue's end (where no
/// counter sees them). A burst as large as a QUIC flow-control window then arrives whole:
/// with stream windows of 2.5 MB instead of quinn's 1.25 MB, reading and dropping lost
/// 800 to 2,700 packets per 1000 MiB relayed in the lab, waiting lost none. A quinn that
/// takes nothing for [`ROOM_WAIT`] (an endpoint no longer polled) does not hold the loop:
/// it reads and drops as before until quinn takes some again, so control datagrams keep
/// flowing.
#[derive(Default)]
pub(super) struct Backlog {
    queued: AtomicUsize,
    /// A permit each time quinn takes datagrams.
    room: Notify,
    /// quinn let [`ROOM_WAIT`] pass without taking any; cleared when it takes some.
    stalled: AtomicBool,
}

impl Backlog {
    /// Datagrams queued now.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(super) fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` datagrams left the queue (quinn took them, or they were never queued).
    pub(super) fn take(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.stalled.store(false, Ordering::Relaxed);
        self.room.notify_one();
    }

    /// Until `n` more datagrams fit in the queue, or quinn took none for [`ROOM_WAIT`]
    /// (then at once, until it takes some again).
    pub(super) async fn room_for(&self, n: usize) {
        let n = n.min(QUIC_QUEUE);
        // The clock is read only when there is a wait (not for every read of the loop).
        let mut deadline = None;
        while !self.stalled.load(Ordering::Relaxed) && self.queued() + n > QUIC_QUEUE {
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + ROOM_WAIT);
            if tokio::time::timeout_at(deadline, self.room.notified())
                .await
                .is_err()
            {
                self.stalled.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Most receive buffers in existence for lending at once (in quinn's queue or free).
/// Beyond that the receive loop copies datagrams out of its own buffer, so memory stays
/// bounded however far quinn falls behind.
pub(super) const LENT_MAX: usize = 4;

/// Receive buffers lent to quinn with the datagrams in them: a batch of direct QUIC
/// datagrams reaches quinn without a copy of its own (quinn still copies into its
/// buffers), which is one copy of every byte of a bulk transfer fewer.
#[derive(Default)]
pub(super) struct Pool {
    /// Returned buffers, and how many exist (lent or free).
    pub(super) free: Mutex<(Vec<Vec<u8>>, usize)>,
}

impl Pool {
    /// A buffer of `size` bytes to receive into: a returned one, a new one while fewer
    /// than [`LENT_MAX`] exist, else `None` (the caller receives into its own and copies).
    pub(super) fn lend(self: &Arc<Self>, size: usize) -> Option<Lent> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (bufs, made) = &mut *free;
        let buf = match bufs.pop() {
            Some(b) if b.len() == size => b,
            other => {
                // One of another size (the socket was replaced): let it go.
                *made -= usize::from(other.is_some());
                if *made >= LENT_MAX {
                    return None;
                }
                *made += 1;
                vec![0u8; size]
            }
        };
        Some(Lent {
            buf,
            pool: self.clone(),
        })
    }
}

/// A receive buffer from a [`Pool`]; it goes back when dropped.
pub(super) struct Lent {
    pub(super) buf: Vec<u8>,
    pool: Arc<Pool>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        free.0.push(std::mem::take(&mut self.buf));
    }
}

/// Most relayed datagrams kept for sessions not mapped yet (a QUIC handshake's first
/// flight is a few datagrams), and how many sessions may have some.
const PARKED_MAX: usize = 32;

/// Relayed datagrams that arrived before their session was known: bounded, oldest first out.
#[derive(Default)]
pub(super) struct Parked {
    pub(super) items: std::collections::VecDeque<(u64, Vec<u8>)>,
}

impl Parked {
    pub(super) fn park(&mut self, session: u64, data: Vec<u8>) {
        if self.items.len() >= PARKED_MAX {
            self.items.pop_front();
        }
        self.items.push_back((session, data));
    }

    pub(super) fn take(&mut self, session: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.items.retain_mut(|(s, d)| {
            if *s == session {
                out.push(std::mem::take(d));
                false
            } else {
                true
            }
        });
        out
    }
}

/// QUIC datagrams received together, handed to quinn together (one channel operation and
/// at most one allocation per batch, not per datagram).
#[derive(Default)]
pub(super) struct QuicBatch {
    /// Datagrams copied here (relayed ones, without their relay header; parked ones).
    pub(super) data: Vec<u8>,
    /// The receive buffer the lent runs lie in.
    pub(super) lent: Option<Lent>,
    pub(super) runs: Vec<Run>,
    /// Datagrams in all runs.
    pub(super) datagrams: usize,
}

/// Datagrams from one address, back to back in [`QuicBatch::data`], laid out as quinn
/// takes a GRO train: every one `stride` bytes long but the last, which may be shorter.
/// quinn then copies and allocates once per run rather than once per datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) from: SocketAddr,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) stride: usize,
    /// In [`QuicBatch::lent`] (else in [`QuicBatch::data`]).
    pub(super) lent: bool,
}

impl Run {
    pub(super) fn datagrams(&self) -> usize {
        (self.end - self.start).div_ceil(self.stride)
    }
}

impl QuicBatch {
    pub(super) fn with_capacity(bytes: usize) -> QuicBatch {
        QuicBatch {
            data: Vec::with_capacity(bytes),
            ..QuicBatch::default()
        }
    }

    pub(super) fn push(&mut self, from: SocketAddr, datagram: &[u8]) {
        let len = datagram.len();
        let start = self.data.len();
        match self.runs.last_mut() {
            // Only a run whose datagrams all have the full stride may grow.
            Some(r)
                if r.from == from
                    && !r.lent
                    && (r.end - r.start) % r.stride == 0
                    && len <= r.stride
                    && r.end - r.start + len <= GRO_BUF =>
            {
                r.end += len
            }
            _ => self.runs.push(Run {
                from,
                start,
                end: start + len,
                stride: len.max(1),
                lent: false,
            }),
        }
        self.data.extend_from_slice(datagram);
        self.datagrams += 1;
    }

    /// Datagrams from `from` left where they were received: `start..end` of the lent
    /// buffer, every one `stride` bytes long but the last (a GRO train, or one datagram).
    pub(super) fn push_lent(&mut self, from: SocketAddr, start: usize, end: usize, stride: usize) {
        let run = Run {
            from,
            start,
            end,
            stride: stride.max(1),
            lent: true,
        };
        self.datagrams += run.datagrams();
        self.runs.push(run);
    }

    /// What is left of run `index` (empty if there is no such run).
    pub(super) fn run_bytes(&self, index: usize) -> &[u8] {
        let Some(r) = self.runs.get(index) else {
            return &[];
        };
        let source = match (&self.lent, r.lent) {
            (Some(l), true) => &l.buf[..],
            (None, true) => &[][..],
            (_, false) => &self.data[..],
        };
        source.get(r.start..r.end).unwrap_or(&[])
    }

    /// Drop runs from the end until at most `max` datagrams are left.
    pub(super) fn truncate(&mut self, max: usize) {
        while self.datagrams > max {
            match self.runs.pop() {
                Some(r) => self.datagrams -= r.datagrams(),
                None => self.datagrams = 0,
            }
        }
    }
}

/// Remembers the last lookup of a receive batch: a GRO train, and most batches, come from
/// one sender, so the path table is consulted once, not once per datagram.
pub(super) struct LastLookup<K> {
    key: Option<(K, Option<SocketAddr>)>,
}

impl<K: PartialEq + Copy> LastLookup<K> {
    pub(super) fn new() -> Self {
        LastLookup { key: None }
    }

    pub(super) fn get(
        &mut self,
        key: K,
        lookup: impl FnOnce(K) -> Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        match self.key {
            Some((k, v)) if k == key => v,
            _ => {
                let v = lookup(key);
                self.key = Some((key, v));
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([240, 0, 0, 1], port))
    }

    #[test]
    fn a_batch_joins_equal_datagrams_from_one_sender_into_runs() {
        let mut b = QuicBatch::default();
        b.push(addr(1), &[1; 100]);
        b.push(addr(1), &[2; 100]);
        b.push(addr(1), &[3; 60]);
        b.push(addr(1), &[4; 60]); // after a shorter one: a new run
        b.push(addr(2), &[5; 60]); // another sender
        b.push(addr(2), &[6; 70]); // longer than the run's stride
        let runs: Vec<_> = b
            .runs
            .iter()
            .map(|r| (r.from.port(), r.end - r.start, r.stride))
            .collect();
        assert_eq!(runs, [(1, 260, 100), (1, 60, 60), (2, 60, 60), (2, 70, 70)]);
        assert_eq!(b.datagrams, 6);
        assert_eq!(b.runs.iter().map(Run::datagrams).sum::<usize>(), 6);
        assert_eq!(&b.data[200..260], &[3; 60]);
        b.truncate(4);
        assert_eq!((b.runs.len(), b.datagrams), (2, 4));
        b.truncate(0);
        assert_eq!((b.runs.len(), b.datagrams), (0, 0));
    }

    #[test]
    fn lent_buffers_are_bounded_and_come_back() {
        let pool = Arc::new(Pool::default());
        let lent: Vec<Lent> = (0..LENT_MAX).map_while(|_| pool.lend(64)).collect();
        assert_eq!(lent.len(), LENT_MAX);
        assert!(pool.lend(64).is_none(), "no more than LENT_MAX at once");
        drop(lent);
        let again = pool.lend(64).expect("a returned buffer");
        assert_eq!(again.buf.len(), 64);
        drop(again);
        // Another size (a replaced socket): the old buffers give way to new ones.
        let other: Vec<Lent> = (0..LENT_MAX).map_while(|_| pool.lend(128)).collect();
        assert_eq!(other.len(), LENT_MAX);
        assert!(other.iter().all(|l| l.buf.len() == 128));
        assert!(pool.lend(128).is_none());
    }

    #[test]
    fn lent_runs_are_read_in_place_and_never_grown() {
        let pool = Arc::new(Pool::default());
        let mut lent = pool.lend(300).unwrap();
        lent.buf[..250].copy_from_slice(&[7; 250]);
        let mut b = QuicBatch::default();
        b.push_lent(addr(1), 0, 250, 100);
        b.push(addr(1), &[8; 100]); // same sender: a run of its own in `data`
        b.lent = Some(lent);
        assert_eq!(b.datagrams, 4);
        assert_eq!(b.runs.len(), 2);
        assert_eq!(b.run_bytes(0), &[7; 250][..]);
        assert_eq!(b.run_bytes(1), &[8; 100][..]);
        assert!(b.run_bytes(2).is_empty());
        b.lent = None;
        assert!(
            b.run_bytes(0).is_empty(),
            "a lent run without its buffer reads as empty"
        );
    }

    #[test]
    fn parked_datagrams_are_bounded_and_taken_per_session() {
        let mut p = Parked::default();
        for i in 0..(PARKED_MAX + 5) {
            p.park(if i % 2 == 0 { 1 } else { 2 }, vec![i as u8]);
        }
        assert_eq!(p.items.len(), PARKED_MAX, "oldest dropped beyond the bound");
        let ones = p.take(1);
        assert!(ones.iter().all(|d| d[0] % 2 == 0));
        assert_eq!(p.items.len() + ones.len(), PARKED_MAX);
        assert!(p.take(1).is_empty(), "taken once");
        assert!(p.take(3).is_empty());
    }

    /// The receive loop waits while a read could overflow the queue, goes on as soon as
    /// quinn takes enough, and does not wait on a quinn that takes nothing (virtual time).
    #[tokio::test(start_paused = true)]
    async fn the_receive_loop_waits_for_room_but_not_on_a_stalled_quinn() {
        let b = Arc::new(Backlog::default());
        // Room: no wait at all.
        b.add(QUIC_QUEUE - 100);
        let t0 = tokio::time::Instant::now();
        b.room_for(100).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);

        // No room: waits until quinn takes enough, and not longer.
        b.add(50);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                let t = tokio::time::Instant::now();
                b.room_for(100).await;
                t.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished(), "a read of 100 would not fit");
        b.take(20); // still 30 short: keeps waiting
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished(), "20 taken, 30 short");
        b.take(30);
        let waited = waiter.await.unwrap();
        assert_eq!(waited, Duration::from_millis(10));
        assert_eq!(b.queued(), QUIC_QUEUE - 100);

        // quinn takes nothing: one wait of ROOM_WAIT, then none until it takes some.
        b.add(100);
        let t = tokio::time::Instant::now();
        b.room_for(100).await;
        assert_eq!(t.elapsed(), ROOM_WAIT);
        let t = tokio::time::Instant::now();
        b.room_for(100).await;
        assert_eq!(t.elapsed(), Duration::ZERO, "stalled: no second wait");
        b.take(10);
        b.add(10);
        let t = tokio::time::Instant::now();
        b.room_for(100).await;
        assert_eq!(t.elapsed(), ROOM_WAIT, "quinn took some: waiting again");

        // A read larger than the whole queue waits only for an empty one.
        b.take(QUIC_QUEUE);
        let t = tokio::time::Instant::now();
        b.room_for(QUIC_QUEUE * 2).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}
