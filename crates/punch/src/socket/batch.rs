//! Receive-side bookkeeping of the demultiplexing socket: QUIC datagrams batched into runs
//! for quinn, relayed datagrams parked until their session is known, and the one-entry
//! lookup cache of a receive batch.
//!
//! Owns plain data structures only; the socket and its loops are the parent module's.

use std::net::SocketAddr;

use super::GRO_BUF;

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
/// one allocation per batch, not per datagram).
#[derive(Default)]
pub(super) struct QuicBatch {
    pub(super) data: Vec<u8>,
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
            }),
        }
        self.data.extend_from_slice(datagram);
        self.datagrams += 1;
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
}
