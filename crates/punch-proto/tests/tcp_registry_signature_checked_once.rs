//! Over TCP as over UDP, a registration's signature is checked once: a keepalive repeating
//! the last signed registration byte for byte is taken without a second check (counted in
//! `signatures_known`), while new bytes (other addresses, another signature over the same
//! message) are checked, and a forged signature is refused even when its message is the
//! record's.

use std::net::SocketAddr;
use std::time::Instant;

use punch_proto::auth::{RegisterRequest, Signature, SigningKey, NO_NONCE};
use punch_proto::tcp::registry::{ConnId, Listener, TcpRegistry, TcpRegistryConfig};
use punch_proto::wire::{ErrorCode, Frame};

mod tcp_common;
use tcp_common::answers;

const REMOTE: &str = "198.51.100.7:40000";

/// Feed `frame` on the control connection; its one answer.
fn answer(r: &mut TcpRegistry, now: Instant, frame: Frame) -> Frame {
    r.handle_frame(now, ConnId(1), frame);
    let mut got = answers(r);
    assert_eq!(got.len(), 1, "one answer: {got:?}");
    got.remove(0)
}

fn request(nonce: [u8; 16], private: Vec<SocketAddr>) -> RegisterRequest {
    RegisterRequest {
        name: "alice".into(),
        private,
        nat: None,
        nonce,
    }
}

/// A registry with alice's control connection open and challenged; the nonce to sign.
fn challenged(r: &mut TcpRegistry, now: Instant, key: &SigningKey) -> [u8; 16] {
    r.handle_open(now, ConnId(1), Listener::Main, REMOTE.parse().unwrap());
    let first = request(NO_NONCE, vec![]).with_signature(1, key.public_key(), Signature::empty());
    match answer(r, now, first) {
        Frame::Challenge { nonce, .. } => nonce,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn is_registered(f: &Frame) -> bool {
    matches!(f, Frame::Registered { .. })
}

#[test]
fn a_keepalive_of_the_same_bytes_is_not_checked_again() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 1);
    let key = SigningKey::from_seed(&[1; 32]);
    let nonce = challenged(&mut r, now, &key);

    let signed = request(nonce, vec![]).signed(2, &key);
    assert!(is_registered(&answer(&mut r, now, signed.clone())));
    assert_eq!(r.stats().signatures_known, 0, "the first one is checked");
    // Keepalives: the same bytes (the transaction id is not signed).
    for txn in 3..6 {
        let again = request(nonce, vec![]).signed(txn, &key);
        assert!(is_registered(&answer(&mut r, now, again)));
    }
    assert_eq!(r.stats().signatures_known, 3);

    // New private addresses: new bytes, checked and taken; they are now the record's.
    let moved = request(nonce, vec!["10.0.0.2:5000".parse().unwrap()]).signed(6, &key);
    assert!(is_registered(&answer(&mut r, now, moved.clone())));
    assert_eq!(r.stats().signatures_known, 3);
    // The old bytes again: no longer the record's last, checked (still good).
    assert!(is_registered(&answer(&mut r, now, signed)));
    assert_eq!(r.stats().signatures_known, 3);
    assert!(is_registered(&answer(&mut r, now, moved)));
    assert_eq!(r.stats().signatures_known, 3);
    assert_eq!(r.stats().registrations, 7);
    assert_eq!(r.stats().bad_signatures, 0);
}

#[test]
fn the_records_message_with_a_forged_signature_is_refused() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 1);
    let key = SigningKey::from_seed(&[2; 32]);
    let nonce = challenged(&mut r, now, &key);
    let req = request(nonce, vec![]);
    assert!(is_registered(&answer(&mut r, now, req.signed(2, &key))));

    // The record's message, a signature with one bit flipped: new bytes, checked, refused.
    let mut bytes = key.sign(&req.message(&key.public_key())).to_bytes();
    bytes[40] ^= 1;
    let forged = req.with_signature(3, key.public_key(), Signature::from_bytes(&bytes));
    match answer(&mut r, now, forged) {
        Frame::Error { code, .. } => assert_eq!(code, ErrorCode::BadSignature),
        other => panic!("expected BadSignature, got {other:?}"),
    }
    assert_eq!(r.stats().bad_signatures, 1);
    assert_eq!(r.stats().signatures_known, 0);
    // The good bytes are still the record's: known.
    assert!(is_registered(&answer(&mut r, now, req.signed(4, &key))));
    assert_eq!(r.stats().signatures_known, 1);
}
