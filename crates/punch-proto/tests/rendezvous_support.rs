//! Shared harness of the `rendezvous_*` tests: a [`Rendezvous`] driven in virtual time
//! (a base `Instant` plus durations), fixed addresses and keys (real Ed25519 key pairs from
//! fixed seeds, so registrations are signed as a client signs them), and its output drained
//! as decoded frames.
//!
//! Each `rendezvous_*.rs` test includes this file with `#[path]`; cargo also builds it as a
//! test target of its own, which holds no tests.
#![allow(dead_code)] // each test uses a different part of the harness

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch_proto::auth::{RegisterRequest, Signature, SigningKey, NO_NONCE};
use punch_proto::rendezvous::{Rendezvous, RendezvousConfig};
use punch_proto::wire::{ErrorCode, Frame, KeyBytes, PeerInfo};

/// Seed of the server's session ids: tests are deterministic.
pub const SEED: u64 = 0x5eed;

/// A public (NAT-mapped) address, as the server would observe it (TEST-NET-2).
pub fn public(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(198, 51, 100, host), port))
}

/// A private (host) address, as a client would report it.
pub fn private(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), port))
}

/// The key pair of identity `n` (from the seed `[n; 32]`).
pub fn signer(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

/// A distinct identity (public) key per `n`.
pub fn key(n: u8) -> KeyBytes {
    signer(n).public_key()
}

/// The key pair behind a public key made by [`key`].
pub fn signer_of(public: &KeyBytes) -> SigningKey {
    (0..=u8::MAX)
        .map(signer)
        .find(|s| s.public_key() == *public)
        .expect("test keys come from key(n)")
}

/// A registration as an old or careless client sends it: no nonce, no signature (the
/// server answers with a challenge).
pub fn unsigned_register(txn: u64, name: &str, key: KeyBytes, private: Vec<SocketAddr>) -> Frame {
    let req = RegisterRequest {
        name: name.to_string(),
        private,
        nat: None,
        nonce: NO_NONCE,
    };
    req.with_signature(txn, key, Signature::empty())
}

/// A datagram the server sent, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub to: SocketAddr,
    pub frame: Frame,
    pub bytes: Vec<u8>,
}

/// The state machine and its virtual clock.
pub struct Harness {
    pub rv: Rendezvous,
    pub t0: Instant,
    pub now: Instant,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::with_config(RendezvousConfig::default())
    }
}

impl Harness {
    /// A server with the default configuration.
    pub fn new() -> Harness {
        Harness::default()
    }

    pub fn with_config(cfg: RendezvousConfig) -> Harness {
        let t0 = Instant::now();
        Harness {
            rv: Rendezvous::new(cfg, SEED),
            t0,
            now: t0,
        }
    }

    /// Move the clock to `t0 + at` (never backwards) without running timers.
    pub fn set_time(&mut self, at: Duration) {
        let t = self.t0 + at;
        assert!(t >= self.now, "virtual time must not go backwards");
        self.now = t;
    }

    /// Move the clock to `t0 + at`, run the timers and drain what they sent.
    pub fn advance_to(&mut self, at: Duration) -> Vec<Sent> {
        self.set_time(at);
        self.rv.handle_timeout(self.now);
        self.drain()
    }

    /// Run the timers at the instant the server asked for, if any; returns that instant and
    /// what was sent.
    pub fn fire_next_timer(&mut self) -> Option<(Instant, Vec<Sent>)> {
        let t = self.rv.poll_timeout()?;
        self.now = self.now.max(t);
        self.rv.handle_timeout(self.now);
        Some((t, self.drain()))
    }

    /// Feed one frame from `from` at the current time and drain the answers.
    pub fn input(&mut self, from: SocketAddr, frame: Frame) -> Vec<Sent> {
        // What reaches the state machine has been through the decoder: round-trip it.
        let bytes = frame.encode().expect("test frames respect the bounds");
        let decoded = Frame::decode(&bytes).expect("encoded frames decode");
        self.rv.handle_frame(self.now, from, decoded);
        self.drain()
    }

    /// Everything queued for sending, decoded (the server only sends valid frames).
    pub fn drain(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some((to, bytes)) = self.rv.poll_transmit() {
            let frame = Frame::decode(&bytes).expect("the server sends valid frames");
            out.push(Sent { to, frame, bytes });
        }
        out
    }

    /// Register `name` with `key` from `from` (private addresses `private`) as a client
    /// does: unsigned first, then signed over the nonce of the challenge. Returns the
    /// single answer to the signed request.
    pub fn register(
        &mut self,
        from: SocketAddr,
        txn: u64,
        name: &str,
        key: KeyBytes,
        private: Vec<SocketAddr>,
    ) -> Frame {
        let first = unsigned_register(txn, name, key, private.clone());
        let nonce = match self.single_answer(from, first) {
            Frame::Challenge { txn: t, nonce } if t == txn => nonce,
            other => panic!("expected a challenge, got {other:?}"),
        };
        let req = RegisterRequest {
            name: name.to_string(),
            private,
            nat: None,
            nonce,
        };
        self.single_answer(from, req.signed(txn, &signer_of(&key)))
    }

    /// Feed `frame` from `from`; the one answer, which must go back to `from`.
    pub fn single_answer(&mut self, from: SocketAddr, frame: Frame) -> Frame {
        let sent = self.input(from, frame);
        assert_eq!(sent.len(), 1, "one answer expected: {sent:?}");
        assert_eq!(sent[0].to, from, "the answer goes to the sender");
        sent[0].frame.clone()
    }

    /// Register and insist it was accepted.
    pub fn register_ok(&mut self, from: SocketAddr, name: &str, key: KeyBytes) {
        let answer = self.register(from, 1, name, key, vec![]);
        assert!(
            matches!(answer, Frame::Registered { observed, .. } if observed == from),
            "registration of {name} from {from} refused: {answer:?}"
        );
    }

    /// Send a Connect and return everything the server sent in answer.
    pub fn connect(&mut self, from: SocketAddr, txn: u64, target: &str) -> Vec<Sent> {
        self.input(
            from,
            Frame::Connect {
                txn,
                target: target.to_string(),
            },
        )
    }
}

/// The single error frame in `sent`, addressed to `to`: (txn, code, reason).
pub fn single_error(sent: &[Sent], to: SocketAddr) -> (u64, ErrorCode, String) {
    assert_eq!(sent.len(), 1, "exactly one answer expected: {sent:?}");
    assert_eq!(sent[0].to, to, "the error goes to the requester");
    match &sent[0].frame {
        Frame::Error { txn, code, reason } => (*txn, *code, reason.clone()),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// The introduction in `sent` addressed to `to`: (txn, session, initiator, peer).
pub fn introduction_to(sent: &[Sent], to: SocketAddr) -> (u64, u64, bool, PeerInfo) {
    let found: Vec<_> = sent
        .iter()
        .filter(|s| s.to == to)
        .filter_map(|s| match &s.frame {
            Frame::Introduce {
                txn,
                session,
                initiator,
                peer,
            } => Some((*txn, *session, *initiator, peer.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one introduction to {to} expected in {sent:?}"
    );
    found[0].clone()
}
