//! The relay's share of the rendezvous state machine: a relayed datagram checked against
//! its session, the sender's address followed, the session's limits applied, and
//! refusals answered.
//!
//! Owns no state: the sessions and their accounting ([`crate::relay`]) belong to
//! [`super::Rendezvous`].

use std::net::SocketAddr;
use std::time::Instant;

use super::Rendezvous;
use crate::relay::Admit;
use crate::wire::{self, Frame, Side};

impl Rendezvous {
    /// Take a relayed datagram (see [`wire::encode_relay`]) from `from`: returns where to
    /// forward it unchanged, or `None` to drop it. Refusals (relay off, unknown session,
    /// a limit reached) are answered with [`Frame::RelayClosed`] through
    /// [`Rendezvous::poll_transmit`].
    pub fn relay(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Option<SocketAddr> {
        let (side, session, _) = wire::decode_relay(datagram)?;
        let refuse = |this: &mut Self, reason: &str| {
            this.stats.relay_dropped += 1;
            let reason = reason.to_string();
            let answer = Frame::RelayClosed { session, reason };
            // Anti-amplification (as QUIC's RFC 9000 §8.1): never answer a spoofable
            // datagram with more than three times its size.
            if answer.encoded_len().is_ok_and(|n| n <= 3 * datagram.len()) {
                this.send(from, &answer);
            }
            None
        };
        if !self.cfg.relay.enabled {
            return refuse(self, "relaying is off on this server");
        }
        let cfg = self.cfg.relay.clone();
        let Some(rec) = self.sessions.get_mut(&session) else {
            return refuse(
                self,
                "unknown relay session (the server may have restarted)",
            );
        };
        if let Some(reason) = rec.relay_closed.clone() {
            return refuse(self, &reason);
        }
        // The side byte names the sender; a new address for it is a NAT that gave the
        // peer a new mapping (say after a conntrack flush): follow it. The session id is
        // a random 64-bit secret of the two peers, and what flows is their end-to-end
        // authenticated QUIC, so a forger could disturb, but not read or impersonate.
        let to = match side {
            Side::Requester => {
                rec.requester = from;
                rec.target
            }
            Side::Target => {
                rec.target = from;
                rec.requester
            }
        };
        if datagram.len() == wire::RELAY_HEADER_LEN {
            // A keepalive (no payload) from a peer on a direct path: the session stays,
            // so a fallback to the relay finds it; nothing is forwarded or counted.
            rec.expires = rec.expires.max(now + cfg.idle_timeout);
            return None;
        }
        match rec.relay.admit(&cfg, now, datagram.len()) {
            Admit::Forward => {
                rec.expires = rec.expires.max(now + cfg.idle_timeout);
                if !rec.relaying {
                    rec.relaying = true;
                    self.relaying += 1;
                    self.stats.relay_sessions += 1;
                }
                self.stats.relayed_packets += 1;
                self.stats.relayed_bytes += datagram.len() as u64;
                Some(to)
            }
            Admit::OverRate => {
                self.stats.relay_dropped += 1;
                None
            }
            Admit::Close(reason) => {
                rec.relay_closed = Some(reason.clone());
                self.stats.relay_dropped += 1;
                self.send(
                    to,
                    &Frame::RelayClosed {
                        session,
                        reason: reason.clone(),
                    },
                );
                self.send(from, &Frame::RelayClosed { session, reason });
                None
            }
        }
    }
}
