//! What the client session does when the server answers again after a silence: hurry
//! the pending introduction requests, and ask whether the relay sessions survived.
//!
//! Owns nothing of its own: two steps of [`super::Session`] on [`super::Event::ServerBack`].

use std::time::Instant;

use super::{wire, RelayMode, Route, Session, Timer, INITIAL_RTO, RELAY_PROBE_LEN};

impl Session {
    /// The server answers again after a silence: send every pending introduction request
    /// again now, with a fresh deadline. They went into the void while it was away, and one
    /// left to its retransmission timer may give up just after the server's return, leaving
    /// its peer waiting for it (a request of ours in flight makes us set aside a session the
    /// peer asked for, see [`MUTUAL_WINDOW`]) until the next repunch, seconds later.
    pub(super) fn hurry_connects(&mut self, now: Instant) {
        let timeout = self.cfg.server_timeout;
        let mut hurried = Vec::new();
        for (txn, c) in &mut self.connects {
            c.rto = INITIAL_RTO;
            c.give_up = now + timeout;
            hurried.push(*txn);
        }
        for txn in hurried {
            self.timers.set(Timer::Connect(txn), now);
        }
    }

    /// The server answers again after a silence: ask it at once, with a relayed datagram
    /// of [`RELAY_PROBE_LEN`] zero bytes, whether it still holds the relay session of every
    /// peer we reach through it. A restarted server answers "unknown relay session" and
    /// the peer is introduced again; otherwise the datagram refreshes the session and the
    /// peer drops it (zeroes are not QUIC). Waiting for QUIC's next retransmission instead
    /// can take seconds after a long silence (its backoff). The probe is padded because
    /// the server answers a relayed datagram with at most three times its size: an empty
    /// one would get no answer.
    pub(super) fn probe_relay_sessions(&mut self) {
        if self.cfg.relay == RelayMode::Never {
            return;
        }
        let probes: Vec<Vec<u8>> = self
            .peers
            .values()
            .filter(|p| matches!(p.route, Route::Relay { .. }) && p.relay_refused.is_none())
            .map(|p| wire::encode_relay(p.side, p.session, &[0; RELAY_PROBE_LEN]))
            .collect();
        for probe in probes {
            self.send(self.cfg.server, probe);
        }
    }
}
