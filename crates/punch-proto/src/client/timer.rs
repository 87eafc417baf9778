//! The client session's one timer table (the shape of quinn-proto's `connection/timer.rs`):
//! every deadline the session keeps has a name, and the next wake-up is the earliest of them.
//!
//! Owns the deadlines only; what happens when one passes is the session's business.

use std::collections::HashMap;
use std::time::Instant;

use crate::wire::KeyBytes;

/// A named deadline of the client session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Timer {
    /// Send (or retransmit) the registration.
    Register,
    /// Retransmit (or give up) the connect request with this transaction id.
    Connect(u64),
    /// The punching agent of this peer wants [`crate::agent::Agent::handle_timeout`].
    Agent(KeyBytes),
    /// Ask the server for a new introduction to this peer (punch again).
    Repunch(KeyBytes),
    /// Forget this peer, introduced to us, if its connection never came.
    Passive(KeyBytes),
}

/// Deadlines by name. Small (one or two per peer, at most a few hundred peers), so the
/// minimum is found by a scan.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: HashMap<Timer, Instant>,
}

impl TimerTable {
    /// Arm `timer` for `at` (replacing an earlier setting).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines.insert(timer, at);
    }

    /// Arm `timer` for `at`, or disarm it with `None`.
    pub(crate) fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        match at {
            Some(at) => self.set(timer, at),
            None => self.stop(timer),
        }
    }

    /// Disarm `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines.remove(&timer);
    }

    /// Disarm every timer of `peer`.
    pub(crate) fn stop_peer(&mut self, peer: &KeyBytes) {
        self.deadlines.retain(|t, _| {
            !matches!(t, Timer::Agent(k) | Timer::Repunch(k) | Timer::Passive(k) if k == peer)
        });
    }

    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Disarm and return every timer due at `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<Timer> {
        let due: Vec<Timer> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in &due {
            self.deadlines.remove(t);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_timeout_is_the_earliest_and_expired_disarms() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Register, t0 + Duration::from_secs(2));
        t.set(Timer::Connect(7), t0 + Duration::from_secs(1));
        t.set(Timer::Repunch([1; 32]), t0 + Duration::from_secs(3));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            t.expired(t0 + Duration::from_secs(1)),
            vec![Timer::Connect(7)]
        );
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(2)));
        t.stop_peer(&[1; 32]);
        t.set_opt(Timer::Register, None);
        assert_eq!(t.next_timeout(), None);
    }
}
