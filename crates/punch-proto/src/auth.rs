//! Signed registrations: who may change a record on the rendezvous server.
//!
//! Owns the client's signing key ([`SigningKey`]), the exact bytes a [`Frame::Register`]
//! signature covers ([`register_message`]), its check ([`verify_register`]), and the
//! server's stateless nonces ([`Nonces`]). It does not own the records themselves
//! ([`crate::rendezvous`], [`crate::tcp::registry`]) nor which key owns a name
//! ([`crate::owners`]).
//!
//! # The exchange
//! ```text
//! client                                      server
//! Register{nonce: 0.., sig: ..}   ──────▶    nonce not issued to this address:
//!                                 ◀──────    Challenge{txn, nonce}   (smaller than the request)
//! Register{nonce, sig(nonce,..)}  ──────▶    nonce ok, signature ok, key owns the name:
//!                                 ◀──────    Registered{.., nonce: next}
//! ```
//! A nonce is `HMAC-SHA256(secret, epoch ‖ address)` cut to 16 bytes, where `epoch` counts
//! [`NONCE_EPOCH`]s since the server started and `address` is where the request came from.
//! The server keeps no state per nonce: it accepts the current and the previous epoch's
//! nonce for that address, so a nonce lives between one and two epochs. Binding the nonce
//! to the address does two things at once:
//! - **Return routability.** Only a client that *received* the challenge at that address
//!   can register it, so the server never records (and never introduces peers to) an
//!   address that has not proved it can receive: a spoofed registration cannot aim the
//!   server's introductions at a victim.
//! - **No replay elsewhere.** A captured registration names its own address through its
//!   nonce; sent from any other address it is answered with a challenge, and the record
//!   stays where it is. Replayed from the same address within the window it changes
//!   nothing (it says what the record already says).
//!
//! The signature covers a domain label, the name, the key, the private addresses, the NAT
//! type and the nonce: everything a registration sets. Ed25519 (RFC 8032): signed with
//! `ring`, the crate the TLS stack already uses, and checked with `ed25519-dalek`, which
//! checks strictly (no small-order keys, canonical encodings) and checks a batch of
//! signatures for about half the cost of checking them one by one.
//!
//! # Checked once
//! The server keeps, per record, a digest of the last signed registration it took
//! ([`SignedDigest`]). Ed25519 signatures are deterministic, so a client refreshing with
//! the nonce it already signed sends the very same bytes again; their signature is then
//! known good and not checked again ([`crate::rendezvous`]). A registration that must be
//! checked can leave the registry as an [`Unchecked`] and come back [`Checked`]: the server
//! checks those outside its lock, a batch at a time.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::nat::Classic;
use crate::ratelimit::{Limiter, RateLimit};
use crate::wire::{Frame, KeyBytes, WireError};

/// A server-issued registration nonce.
pub type Nonce = [u8; 16];
/// The nonce a client sends before it has one: always answered with a challenge.
pub const NO_NONCE: Nonce = [0; 16];
/// How long one nonce epoch lasts; a nonce is accepted in its epoch and the next.
pub const NONCE_EPOCH: Duration = Duration::from_secs(60);
/// Domain label that starts every signed registration message (so a signature made for
/// a registration can never pass as anything else, and the reverse).
const REGISTER_LABEL: &[u8] = b"punch-register-v2\0";

/// An Ed25519 signature (RFC 8032 §5.1.6), as its two 32-byte halves (R and S) so that
/// serde can carry it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature([u8; 32], [u8; 32]);

impl Signature {
    /// The 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.0);
        out[32..].copy_from_slice(&self.1);
        out
    }

    /// A signature from its 64 bytes.
    pub fn from_bytes(b: &[u8; 64]) -> Signature {
        let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
        r.copy_from_slice(&b[..32]);
        s.copy_from_slice(&b[32..]);
        Signature(r, s)
    }

    /// All zeroes: what an unsigned request carries.
    pub const fn empty() -> Signature {
        Signature([0; 32], [0; 32])
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// An Ed25519 key pair that signs registrations. Cheap to clone (shared); `Debug` shows
/// only the public key.
#[derive(Clone)]
pub struct SigningKey {
    pair: Arc<Ed25519KeyPair>,
    public: KeyBytes,
}

/// A key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 PKCS#8 key: {0}")]
pub struct KeyError(String);

impl SigningKey {
    /// The key pair in a PKCS#8 DER document (RFC 5958) holding an Ed25519 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// The key pair of a 32-byte seed (RFC 8032 §5.1.5): for tests and simulations that
    /// need the same key every run.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        // A 32-byte seed is always a valid Ed25519 private key.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("32-byte Ed25519 seed");
        Self::from_pair(pair)
    }

    fn from_pair(pair: Ed25519KeyPair) -> SigningKey {
        let mut public = [0u8; 32];
        // ring's Ed25519 public keys are always 32 bytes.
        public.copy_from_slice(pair.public_key().as_ref());
        SigningKey {
            pair: Arc::new(pair),
            public,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> KeyBytes {
        self.public
    }

    /// Sign `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let sig = self.pair.sign(msg);
        let mut b = [0u8; 64];
        // Ed25519 signatures are always 64 bytes.
        b.copy_from_slice(sig.as_ref());
        Signature::from_bytes(&b)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({:02x}{:02x}{:02x}{:02x}..)",
            self.public[0], self.public[1], self.public[2], self.public[3]
        )
    }
}

/// What a registration sets; signed together with the nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The name.
    pub name: String,
    /// The private (host) addresses.
    pub private: Vec<SocketAddr>,
    /// Our NAT type, once known.
    pub nat: Option<Classic>,
    /// The last nonce the server gave us ([`NO_NONCE`] before any).
    pub nonce: Nonce,
}

impl RegisterRequest {
    /// The bytes `key` signs for this request ([`register_message`]).
    pub fn message(&self, key: &KeyBytes) -> Vec<u8> {
        register_message(&self.name, key, &self.private, self.nat, &self.nonce)
    }

    /// The [`Frame::Register`] for transaction `txn` naming `key` and carrying `sig`, as
    /// given: [`Signature::empty`] for a client's first request, and what tests and fuzz
    /// harnesses forge.
    pub fn with_signature(&self, txn: u64, key: KeyBytes, sig: Signature) -> Frame {
        Frame::Register {
            txn,
            name: self.name.clone(),
            key,
            private: self.private.clone(),
            nat: self.nat,
            nonce: self.nonce,
            sig,
        }
    }

    /// The signed [`Frame::Register`] for transaction `txn`.
    pub fn signed(&self, txn: u64, key: &SigningKey) -> Frame {
        let public = key.public_key();
        self.with_signature(txn, public, key.sign(&self.message(&public)))
    }

    /// [`RegisterRequest::signed`], encoded; fails only on a bound (name, addresses).
    pub fn encode(&self, txn: u64, key: &SigningKey) -> Result<Vec<u8>, WireError> {
        self.signed(txn, key).encode()
    }
}

/// The bytes a registration's signature covers: a domain label, then the postcard
/// encoding of (name, key, private addresses, NAT type, nonce).
pub fn register_message(
    name: &str,
    key: &KeyBytes,
    private: &[SocketAddr],
    nat: Option<Classic>,
    nonce: &Nonce,
) -> Vec<u8> {
    let mut msg = REGISTER_LABEL.to_vec();
    // Serialising plain data into a Vec cannot fail.
    let body = postcard::to_allocvec(&(name, key, private, nat, nonce)).unwrap_or_default();
    msg.extend_from_slice(&body);
    msg
}

/// Whether `sig` is `key`'s signature over this registration.
pub fn verify_register(
    name: &str,
    key: &KeyBytes,
    private: &[SocketAddr],
    nat: Option<Classic>,
    nonce: &Nonce,
    sig: &Signature,
) -> bool {
    verify_message(&register_message(name, key, private, nat, nonce), key, sig)
}

/// Whether `sig` is `key`'s signature over `msg`, checked strictly.
fn verify_message(msg: &[u8], key: &KeyBytes, sig: &Signature) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.to_bytes()))
        .is_ok()
}

/// The signed fields of a [`Frame::Register`]: (message, key, signature).
fn signed_parts(frame: &Frame) -> Option<(Vec<u8>, &KeyBytes, &Signature)> {
    match frame {
        Frame::Register {
            name,
            key,
            private,
            nat,
            nonce,
            sig,
            ..
        } => Some((register_message(name, key, private, *nat, nonce), key, sig)),
        _ => None,
    }
}

/// A digest of a signed registration: its message and its signature (SHA-256, cut to 16
/// bytes: finding other bytes with the digest of a given record is a second preimage).
pub type SignedDigest = [u8; 16];

/// The [`SignedDigest`] of `frame` (all zeroes for anything but a [`Frame::Register`]).
pub fn signed_digest(frame: &Frame) -> SignedDigest {
    let mut out = [0u8; 16];
    if let Some((msg, _, sig)) = signed_parts(frame) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&msg);
        ctx.update(&sig.to_bytes());
        out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    }
    out
}

/// Whether each of `frames` is a [`Frame::Register`] signed by the key it names, in
/// order. One batch check (RFC 8032 §8.2 allows it) for all of them; only if the batch
/// fails is each checked alone, to find which. Keys of small order are refused up front,
/// as [`verify_register`] refuses them.
pub fn verify_frames(frames: &[&Frame]) -> Vec<bool> {
    let parts: Vec<_> = frames
        .iter()
        .map(|f| {
            let (msg, key, sig) = signed_parts(f)?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(key).ok()?;
            if key.is_weak() {
                return None;
            }
            Some((
                msg,
                key,
                ed25519_dalek::Signature::from_bytes(&sig.to_bytes()),
            ))
        })
        .collect();
    let batch: Vec<_> = parts.iter().flatten().collect();
    if batch.len() > 1 {
        let msgs: Vec<&[u8]> = batch.iter().map(|(m, _, _)| m.as_slice()).collect();
        let sigs: Vec<_> = batch.iter().map(|(_, _, s)| *s).collect();
        let keys: Vec<_> = batch.iter().map(|(_, k, _)| *k).collect();
        if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
            return parts.iter().map(Option::is_some).collect();
        }
    }
    parts
        .iter()
        .map(|p| {
            p.as_ref()
                .is_some_and(|(m, k, s)| k.verify_strict(m, s).is_ok())
        })
        .collect()
}

/// A registration that passed the gate's cheap steps (limit, nonce) and whose signature
/// is still to be checked: [`Unchecked::check_all`] checks a batch of them, anywhere (the
/// server does it outside its registry's lock, on every worker's core).
#[derive(Debug)]
pub struct Unchecked {
    pub(crate) from: SocketAddr,
    pub(crate) frame: Frame,
    pub(crate) digest: SignedDigest,
}

/// An [`Unchecked`] registration with its signature checked.
#[derive(Debug)]
pub struct Checked {
    pub(crate) from: SocketAddr,
    pub(crate) frame: Frame,
    pub(crate) digest: SignedDigest,
    pub(crate) valid: bool,
}

impl Unchecked {
    /// Check every one of `list` (one batch).
    pub fn check_all(list: Vec<Unchecked>) -> Vec<Checked> {
        let valid = verify_frames(&list.iter().map(|u| &u.frame).collect::<Vec<_>>());
        list.into_iter()
            .zip(valid)
            .map(|(u, valid)| Checked {
                from: u.from,
                frame: u.frame,
                digest: u.digest,
                valid,
            })
            .collect()
    }

    /// Check this one alone.
    pub fn check(self) -> Checked {
        let valid = verify_frame(&self.frame);
        Checked {
            from: self.from,
            frame: self.frame,
            digest: self.digest,
            valid,
        }
    }
}

/// Whether `frame` is a [`Frame::Register`] signed by the key it names (over its own
/// nonce; whether the server sent that nonce is [`Nonces::check`]'s question).
pub fn verify_frame(frame: &Frame) -> bool {
    signed_parts(frame).is_some_and(|(msg, key, sig)| verify_message(&msg, key, sig))
}

/// What the server does with a registration ([`RegisterGate::admit`], then the registry's
/// signature check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Over its step's per-source limit: dropped (UDP) or answered `Busy` (TCP).
    Limited,
    /// No nonce sent to this address lately: answer with a challenge carrying this one.
    Challenge(Nonce),
    /// Not a registration, or its signature is not the key's: refuse.
    BadSignature,
    /// Over a nonce this address received: take it if signed by its key (checked, or
    /// known from the record's last signed bytes).
    Accept,
}

/// The server's door for registrations, shared by the UDP and the TCP registry: the
/// nonces, and a per-source limit for each step (first requests, and signed ones over a
/// nonce the address received, so a flood of first requests from an address, a CGNAT's
/// shared with real clients, cannot starve the signed registrations behind it). The nonce
/// is checked first (a keyed hash), the signature only for an address that proved it
/// receives (the costly check): a spoofed flood costs the server hashes.
#[derive(Debug)]
pub struct RegisterGate {
    nonces: Nonces,
    first: Limiter,
    signed: Limiter,
}

impl RegisterGate {
    /// A gate keyed by `secret`, each step limited to `limit` per source address.
    pub fn new(secret: &[u8; 32], limit: RateLimit) -> RegisterGate {
        RegisterGate {
            nonces: Nonces::new(secret),
            first: Limiter::new(limit),
            signed: Limiter::new(limit),
        }
    }

    /// The cheap steps of judging `register` (a [`Frame::Register`]; anything else is
    /// refused) from `from`: the limit and the nonce. `Accept` here means the signature
    /// is still to be checked ([`verify_frame`], [`Unchecked::check_all`]).
    pub fn admit(&mut self, now: Instant, from: SocketAddr, register: &Frame) -> Gate {
        let Frame::Register { nonce, .. } = register else {
            return Gate::BadSignature;
        };
        let proven = self.nonces.check(now, from, nonce);
        let limiter = if proven {
            &mut self.signed
        } else {
            &mut self.first
        };
        if !limiter.allow(now, from.ip()) {
            Gate::Limited
        } else if !proven {
            Gate::Challenge(self.nonces.issue(now, from))
        } else {
            Gate::Accept
        }
    }

    /// Whether a first request from `from` (such as an old client's registration, which is
    /// answered too) is within its step's limit; it counts against it.
    pub fn allow_first(&mut self, now: Instant, from: SocketAddr) -> bool {
        self.first.allow(now, from.ip())
    }

    /// The nonce to give `to` with its accepted registration, for its next refresh.
    pub fn next_nonce(&mut self, now: Instant, to: SocketAddr) -> Nonce {
        self.nonces.issue(now, to)
    }
}

/// The server's stateless nonces (see the module doc).
pub struct Nonces {
    key: ring::hmac::Key,
    /// Epoch 0 starts here: the first time the server is asked.
    origin: Option<Instant>,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    /// Nonces keyed by `secret` (random per server run: a restarted server challenges
    /// every client once).
    pub fn new(secret: &[u8; 32]) -> Nonces {
        Nonces {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            origin: None,
        }
    }

    fn epoch(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let secs = now.saturating_duration_since(origin).as_secs();
        secs / NONCE_EPOCH.as_secs()
    }

    fn nonce(&self, epoch: u64, addr: SocketAddr) -> Nonce {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(&epoch.to_be_bytes());
        match addr {
            SocketAddr::V4(a) => {
                ctx.update(&[4]);
                ctx.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                ctx.update(&[6]);
                ctx.update(&a.ip().octets());
            }
        }
        ctx.update(&addr.port().to_be_bytes());
        let tag = ctx.sign();
        let mut n = [0u8; 16];
        n.copy_from_slice(&tag.as_ref()[..16]);
        n
    }

    /// The nonce for requests from `addr` at `now`.
    pub fn issue(&mut self, now: Instant, addr: SocketAddr) -> Nonce {
        let epoch = self.epoch(now);
        self.nonce(epoch, addr)
    }

    /// Whether `nonce` was issued to `addr` in this epoch or the previous one.
    pub fn check(&mut self, now: Instant, addr: SocketAddr, nonce: &Nonce) -> bool {
        if *nonce == NO_NONCE {
            return false;
        }
        let epoch = self.epoch(now);
        // Compared without an early exit: a nonce is a short-lived secret of the address.
        let same = |n: Nonce| n.iter().zip(nonce).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        same(self.nonce(epoch, addr)) || (epoch > 0 && same(self.nonce(epoch - 1, addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nonces_are_bound_to_address_and_epoch() {
        let mut n = Nonces::new(&[7; 32]);
        let t0 = Instant::now();
        let a = addr("192.0.2.1:4000");
        let x = n.issue(t0, a);
        assert!(n.check(t0, a, &x));
        assert!(!n.check(t0, addr("192.0.2.1:4001"), &x), "another port");
        assert!(!n.check(t0, addr("192.0.2.2:4000"), &x), "another host");
        assert!(
            n.check(t0 + NONCE_EPOCH + Duration::from_secs(59), a, &x),
            "next epoch"
        );
        assert!(!n.check(t0 + NONCE_EPOCH * 2, a, &x), "two epochs on");
        assert!(!n.check(t0, a, &NO_NONCE));
        let other = Nonces::new(&[8; 32]).issue(t0, a);
        assert!(!n.check(t0, a, &other), "another server's secret");
    }

    /// The exact bytes of a signed registration (Ed25519 is deterministic). The lab's
    /// Python encoder (`lab/punchwire.py`) produces the same for the same inputs.
    #[test]
    fn a_signed_registration_byte_for_byte() {
        let req = RegisterRequest {
            name: "alice".into(),
            private: vec![],
            nat: None,
            nonce: [3; 16],
        };
        let bytes = req.encode(7, &SigningKey::from_seed(&[1; 32])).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "2a02000705616c6963658a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f\
             6f5c0000030303030303030303030303030303035c8fb620a5be4279513c424a0e7fae1fa5c4b527\
             983f62c7f410c6f3228ec3596e721dbc83dd8da4bb499e5e1a50defbd9a864fd64be450e03a4099b\
             156e0a09"
        );
    }

    /// A batch of good signatures passes as one; one bad among them is found and only it
    /// refused; a key of small order (here the identity point, for which any signature
    /// with R = identity and S = 0 would pass) and a frame that is no registration are
    /// refused, in a batch and alone.
    #[test]
    fn a_batch_check_finds_the_bad_one() {
        let frames: Vec<Frame> = (1..=5u8)
            .map(|n| {
                RegisterRequest {
                    name: format!("peer{n}"),
                    private: vec![],
                    nat: None,
                    nonce: [n; 16],
                }
                .signed(u64::from(n), &SigningKey::from_seed(&[n; 32]))
            })
            .collect();
        let refs: Vec<&Frame> = frames.iter().collect();
        assert_eq!(verify_frames(&refs), vec![true; 5]);

        let mut forged = frames.clone();
        if let Frame::Register { sig, .. } = &mut forged[3] {
            let mut b = sig.to_bytes();
            b[40] ^= 0x10;
            *sig = Signature::from_bytes(&b);
        }
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut zero_sig = [0u8; 64];
        zero_sig[0] = 1;
        forged.push(
            RegisterRequest {
                name: "weak".into(),
                private: vec![],
                nat: None,
                nonce: [9; 16],
            }
            .with_signature(9, identity, Signature::from_bytes(&zero_sig)),
        );
        forged.push(Frame::Connect {
            txn: 1,
            target: "x".into(),
        });
        let refs: Vec<&Frame> = forged.iter().collect();
        assert_eq!(
            verify_frames(&refs),
            vec![true, true, true, false, true, false, false]
        );
        assert!(!verify_frame(&forged[5]), "the small-order key alone");
        assert_eq!(verify_frames(&refs[..1]), vec![true], "a batch of one");
        assert!(verify_frames(&[]).is_empty());
    }

    #[test]
    fn a_signature_covers_every_field() {
        let k = SigningKey::from_seed(&[1; 32]);
        let req = RegisterRequest {
            name: "alice".into(),
            private: vec![addr("10.0.0.2:5000")],
            nat: Some(Classic::PortRestrictedCone),
            nonce: [3; 16],
        };
        let frame = req.signed(9, &k);
        assert!(verify_frame(&frame));
        let Frame::Register {
            name,
            key,
            private,
            nat,
            nonce,
            sig,
            ..
        } = frame
        else {
            panic!("not a register");
        };
        assert!(!verify_register("alicf", &key, &private, nat, &nonce, &sig));
        assert!(!verify_register(
            &name, &[2; 32], &private, nat, &nonce, &sig
        ));
        assert!(!verify_register(&name, &key, &[], nat, &nonce, &sig));
        assert!(!verify_register(&name, &key, &private, None, &nonce, &sig));
        assert!(!verify_register(&name, &key, &private, nat, &[4; 16], &sig));
        assert!(!verify_register(
            &name,
            &key,
            &private,
            nat,
            &nonce,
            &Signature::empty()
        ));
    }
}
