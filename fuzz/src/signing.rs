//! How the `rendezvous_inputs` and `tcp_inputs` scripts sign a registration, from one
//! key byte `b`: `b % 3` picks one of three key pairs, and `b / 3 % 4` the way: 0 and 1
//! as a client signs (over the nonce the script passes), 2 forged (the key named, another
//! key's signature), 3 the harness's own fourth way (an unsigned first request for the
//! UDP server, an old version-1 client for the TCP one).

use std::sync::OnceLock;

use punch_proto::auth::{self, RegisterRequest, Signature, SigningKey, NO_NONCE};
use punch_proto::wire::Frame;

/// The key pair a key byte picks (made once: deriving one per step would cost more than
/// the step).
pub fn signer(b: u8) -> SigningKey {
    static KEYS: OnceLock<[SigningKey; 3]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| [1, 2, 3].map(|n| SigningKey::from_seed(&[n; 32])));
    keys[usize::from(b % 3)].clone()
}

/// How a key byte says to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// As a client does.
    AsClient,
    /// The key named, another key's signature.
    Forged,
    /// The harness's fourth way (see the module doc).
    Fourth,
}

/// The way key byte `b` picks.
pub fn signing(b: u8) -> Signing {
    match b / 3 % 4 {
        2 => Signing::Forged,
        3 => Signing::Fourth,
        _ => Signing::AsClient,
    }
}

/// `req` for transaction `txn`, signed as key byte `b` says (`Fourth` signs as a client).
pub fn register_frame(txn: u64, req: &RegisterRequest, b: u8) -> Frame {
    let key = signer(b);
    match signing(b) {
        Signing::Forged => {
            let public = key.public_key();
            req.with_signature(txn, public, signer(b + 1).sign(&req.message(&public)))
        }
        Signing::AsClient | Signing::Fourth => req.signed(txn, &key),
    }
}

/// `req` as a client's first request: no nonce, no signature.
pub fn unsigned(txn: u64, req: &RegisterRequest, b: u8) -> Frame {
    let first = RegisterRequest {
        nonce: NO_NONCE,
        ..req.clone()
    };
    first.with_signature(txn, signer(b).public_key(), Signature::empty())
}

/// A registration the server accepted: it must be signed by the key it names, over a
/// nonce the server sent to where it came from (`sent_there`).
pub fn assert_accepted(request: &Frame, sent_there: bool) {
    assert!(
        auth::verify_frame(request),
        "a registration that is not its key's was accepted"
    );
    assert!(sent_there, "accepted a nonce the server never sent there");
}
