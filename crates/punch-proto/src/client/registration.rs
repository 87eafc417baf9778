//! The client's registration with the rendezvous server: refresh, retransmission, and
//! noticing when the server goes silent or sees us at a new address.
//!
//! Owns the `Register` frame (signed, and signed again when our private addresses, our
//! NAT type or the server's nonce change; see [`crate::auth`]), its transaction id, the
//! retransmission timeout and what the server last observed. It does not own the
//! timer (the session's [`super::timer::TimerTable`] holds it) or what a silent server
//! means for peers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::event::Event;
use crate::auth::{Nonce, RegisterRequest, SigningKey, NO_NONCE};
use crate::nat::Classic;
use crate::wire::WireError;

/// First retransmission timeout of a request to the server (RFC 8489 §6.2.1 uses 500 ms
/// for STUN over UDP; the rendezvous server is usually closer, so start lower), doubled
/// after each retransmission.
pub const INITIAL_RTO: Duration = Duration::from_millis(250);
/// Cap of a connect request's retransmission timeout.
pub const MAX_RTO: Duration = Duration::from_secs(2);
/// Cap of the registration's retransmission timeout while the server is silent: a server
/// that comes back (a restart) hears from us within this long, however long it was away.
pub const MAX_REGISTER_RTO: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) txn: u64,
    req: RegisterRequest,
    signer: SigningKey,
    pub(crate) frame: Vec<u8>,
    /// What the server observed last.
    pub(crate) public: Option<SocketAddr>,
    /// The first send not answered yet.
    unanswered_since: Option<Instant>,
    rto: Duration,
    /// [`Event::ServerLost`] was reported and [`Event::ServerBack`] not yet.
    lost: bool,
}

impl Registration {
    pub(crate) fn new(
        txn: u64,
        name: String,
        signer: SigningKey,
        private: Vec<SocketAddr>,
    ) -> Result<Registration, WireError> {
        let req = RegisterRequest {
            name,
            private,
            nat: None,
            nonce: NO_NONCE,
        };
        Ok(Registration {
            txn,
            frame: req.encode(txn, &signer)?,
            req,
            signer,
            public: None,
            unanswered_since: None,
            rto: INITIAL_RTO,
            lost: false,
        })
    }

    /// Our host addresses as registered.
    pub(crate) fn private(&self) -> &[SocketAddr] {
        &self.req.private
    }

    /// Sign the request again into the frame; on a bound broken, keep what was.
    fn resign(&mut self, next: RegisterRequest) -> Result<bool, WireError> {
        if next == self.req {
            return Ok(false);
        }
        self.frame = next.encode(self.txn, &self.signer)?;
        self.req = next;
        Ok(true)
    }

    /// Use `private` as our host addresses from the next send on. False if unchanged.
    pub(crate) fn set_private(&mut self, private: Vec<SocketAddr>) -> Result<bool, WireError> {
        let next = RegisterRequest {
            private,
            ..self.req.clone()
        };
        self.resign(next)
    }

    /// Our NAT type as registered, once discovery found it.
    pub(crate) fn nat(&self) -> Option<Classic> {
        self.req.nat
    }

    /// Our NAT type, once discovery found it. False if unchanged.
    pub(crate) fn set_nat(&mut self, nat: Classic) -> bool {
        let next = RegisterRequest {
            nat: Some(nat),
            ..self.req.clone()
        };
        // The NAT type adds a byte or two: the bounds checked at the start still hold.
        self.resign(next).unwrap_or(false)
    }

    /// The server's nonce for the next send. False if it is the one we sign with already.
    pub(crate) fn set_nonce(&mut self, nonce: Nonce) -> bool {
        let next = RegisterRequest {
            nonce,
            ..self.req.clone()
        };
        self.resign(next).unwrap_or(false)
    }

    /// A send at `now`: returns when to send again if no answer comes.
    pub(crate) fn sent(&mut self, now: Instant) -> Instant {
        self.unanswered_since.get_or_insert(now);
        let next = now + self.rto;
        self.rto = (self.rto * 2).min(MAX_REGISTER_RTO);
        next
    }

    /// Send again at once, with a fresh retransmission timeout.
    pub(crate) fn hurry(&mut self) {
        self.rto = INITIAL_RTO;
    }

    /// [`Event::ServerLost`] if the server has been silent for `timeout` (once per silence).
    pub(crate) fn check_silence(&mut self, now: Instant, timeout: Duration) -> Option<Event> {
        let since = self.unanswered_since?;
        let silent_for = now.saturating_duration_since(since);
        if self.lost || silent_for < timeout {
            return None;
        }
        self.lost = true;
        Some(Event::ServerLost { silent_for })
    }

    /// When the current silence is to be checked.
    pub(crate) fn silence_deadline(&self, timeout: Duration) -> Option<Instant> {
        match (self.lost, self.unanswered_since) {
            (false, Some(since)) => Some(since + timeout),
            _ => None,
        }
    }

    /// The server answered with `observed`: the events it means, in order.
    pub(crate) fn answered(&mut self, observed: SocketAddr) -> Vec<Event> {
        let mut out = Vec::new();
        self.unanswered_since = None;
        self.rto = INITIAL_RTO;
        if std::mem::take(&mut self.lost) {
            out.push(Event::ServerBack { public: observed });
        }
        if self.public != Some(observed) {
            out.push(Event::Registered { public: observed });
        }
        self.public = Some(observed);
        out
    }

    /// The server has been silent since this long, if it has.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }
}
