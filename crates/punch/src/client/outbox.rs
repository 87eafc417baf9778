//! The client's events on their way to the application: the bounded channel the
//! application reads ([`super::Client::next_event`]) and, behind it, a bounded backlog the
//! driver keeps while the application reads slower than events come. A slow reader then
//! loses nothing (an incoming connection, the last `path` of a peer) short of the
//! backlog's own bound, and the driver never waits on the application.
//!
//! Owns the backlog and the order of events; not what they mean.

use std::collections::VecDeque;

use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::warn;

use super::ClientEvent;

/// Events kept behind a full channel; past it the oldest kept one is dropped (an
/// application that left this many unread has stopped reading).
pub const BACKLOG: usize = 4096;

/// The driver's end of the event channel.
pub(super) struct Outbox {
    tx: mpsc::Sender<ClientEvent>,
    backlog: VecDeque<ClientEvent>,
    dropped: u64,
}

impl Outbox {
    pub(super) fn new(tx: mpsc::Sender<ClientEvent>) -> Outbox {
        Outbox {
            tx,
            backlog: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Send `ev` after every event not yet taken (kept when the channel is full; dropped
    /// only when nobody reads the channel any more).
    pub(super) fn push(&mut self, ev: ClientEvent) {
        self.flush();
        if self.backlog.is_empty() {
            match self.tx.try_send(ev) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(ev)) => return self.backlog.push_back(ev),
            }
        }
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
            self.dropped += 1;
            warn!(
                dropped = self.dropped,
                "the application has not read {BACKLOG} events: the oldest is dropped"
            );
        }
        self.backlog.push_back(ev);
    }

    /// Move into the channel what it has room for.
    pub(super) fn flush(&mut self) {
        while let Some(ev) = self.backlog.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.backlog.push_front(ev);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Completes once the channel has room while events wait in the backlog (never
    /// while the backlog is empty); then [`Outbox::flush`].
    pub(super) async fn room(&self) {
        if self.backlog.is_empty() {
            return std::future::pending().await;
        }
        // The permit goes back at once: flush sends through the room it saw.
        drop(self.tx.reserve().await);
    }

    /// Events waiting behind the channel.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.backlog.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;

    fn ev(n: u32) -> ClientEvent {
        ClientEvent::LocalAddress {
            local: IpAddr::V4(Ipv4Addr::from(n)),
        }
    }

    fn number(ev: ClientEvent) -> u32 {
        match ev {
            ClientEvent::LocalAddress {
                local: IpAddr::V4(a),
            } => u32::from(a),
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_event_in_order() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut out = Outbox::new(tx);
        for n in 0..10 {
            out.push(ev(n));
        }
        assert_eq!(out.waiting(), 8, "two in the channel, the rest kept");
        let mut got = Vec::new();
        while got.len() < 10 {
            // The driver's loop: wait for room, flush, the reader takes what is there.
            tokio::time::timeout(Duration::from_secs(1), async {
                tokio::select! {
                    _ = out.room() => out.flush(),
                    Some(e) = rx.recv() => got.push(number(e)),
                }
            })
            .await
            .expect("room or an event");
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(out.waiting(), 0);
        // An empty backlog never claims room.
        let idle = tokio::time::timeout(Duration::from_millis(50), out.room()).await;
        assert!(idle.is_err());
    }

    #[tokio::test]
    async fn past_the_bound_the_oldest_kept_event_goes() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut out = Outbox::new(tx);
        let total = 1 + BACKLOG as u32 + 3;
        for n in 0..total {
            out.push(ev(n));
        }
        assert_eq!(out.waiting(), BACKLOG);
        let mut got = vec![number(rx.recv().await.unwrap())];
        while out.waiting() > 0 {
            out.flush();
            got.push(number(rx.recv().await.unwrap()));
        }
        // The one in the channel, then the backlog less its three oldest.
        let want: Vec<u32> = [0].into_iter().chain(4..total).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn nobody_reading_drops_the_backlog() {
        let (tx, rx) = mpsc::channel(1);
        let mut out = Outbox::new(tx);
        out.push(ev(1));
        out.push(ev(2));
        drop(rx);
        out.flush();
        assert_eq!(out.waiting(), 0);
        out.push(ev(3));
        assert_eq!(out.waiting(), 0);
    }
}
