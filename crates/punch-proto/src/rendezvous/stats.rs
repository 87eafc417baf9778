//! The rendezvous server's counters, for logs and metrics: what [`super::Rendezvous`]
//! took, answered, relayed and refused.
//!
//! Owns the counter types only; the state machine counts into them.

use crate::wire::ErrorCode;

/// Errors answered, per [`ErrorCode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorCode::ALL.len()]);

impl ErrorCounts {
    /// Count one more `code`.
    pub fn add(&mut self, code: ErrorCode) {
        self.0[code.index()] += 1;
    }

    /// How many `code` errors were counted.
    pub fn get(&self, code: ErrorCode) -> u64 {
        self.0[code.index()]
    }

    /// Every code with its count.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        ErrorCode::ALL.iter().map(|c| (*c, self.get(*c)))
    }
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Registrations accepted (new or refreshed).
    pub registrations: u64,
    /// Introductions made.
    pub introductions: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// The same, per code.
    pub errors_by_code: ErrorCounts,
    /// Introductions given up after [`INTRO_ATTEMPTS`](super::INTRO_ATTEMPTS).
    pub intro_timeouts: u64,
    /// Registrations expired.
    pub expired: u64,
    /// Datagrams relayed.
    pub relayed_packets: u64,
    /// Bytes relayed (payload and header).
    pub relayed_bytes: u64,
    /// Relayed datagrams dropped (over the rate, unknown session, relay off).
    pub relay_dropped: u64,
    /// Sessions that relayed their first datagram.
    pub relay_sessions: u64,
    /// Registrations dropped over the per-source rate limit.
    pub register_limited: u64,
    /// Introduction requests dropped over the per-source rate limit.
    pub connect_limited: u64,
    /// Registrations without a nonce issued to their address lately, answered with a
    /// challenge (every client's first, and every replay from elsewhere).
    pub challenged: u64,
    /// Registrations refused for a signature that is not their key's.
    pub bad_signatures: u64,
    /// Registrations taken without checking their signature again: the same bytes as the
    /// last signed registration the record took from that family.
    pub signatures_known: u64,
    /// Version-1 (unsigned) registrations told to upgrade.
    pub legacy_refused: u64,
}
