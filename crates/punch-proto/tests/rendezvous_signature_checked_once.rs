//! A registration's signature is checked once: a refresh repeating the last signed
//! registration byte for byte is taken without a second check (counted in
//! `signatures_known`), while any change (other addresses, another nonce, another
//! signature) is checked again. A registration the caller checks outside the state
//! machine ([`Rendezvous::screen`], [`Unchecked::check_all`], [`Rendezvous::handle_checked`])
//! ends exactly as one fed whole, a forged one included.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::auth::{RegisterRequest, Signature, Unchecked, NONCE_EPOCH};
use punch_proto::wire::{ErrorCode, Frame};
use support::{key, private, public, signer, Harness};

fn request(name: &str, nonce: [u8; 16], private: Vec<std::net::SocketAddr>) -> RegisterRequest {
    RegisterRequest {
        name: name.into(),
        private,
        nat: None,
        nonce,
    }
}

/// Register `name` (key `n`) from `from`; the nonce of the answer.
fn registered(h: &mut Harness, from: std::net::SocketAddr, name: &str, n: u8) -> [u8; 16] {
    match h.register(from, 1, name, key(n), vec![]) {
        Frame::Registered { nonce, .. } => nonce,
        other => panic!("registration refused: {other:?}"),
    }
}

/// Feed `frame` from `from`: it must be taken.
fn taken(h: &mut Harness, from: std::net::SocketAddr, frame: Frame) -> [u8; 16] {
    match h.single_answer(from, frame) {
        Frame::Registered { nonce, .. } => nonce,
        other => panic!("registration refused: {other:?}"),
    }
}

#[test]
fn a_byte_identical_refresh_is_not_checked_again() {
    let mut h = Harness::new();
    let from = public(1, 40_000);
    let nonce = registered(&mut h, from, "alice", 1);
    assert_eq!(h.rv.stats().signatures_known, 0, "the first one is checked");

    // In the same epoch the answer's nonce is the one signed: the refresh is the same
    // bytes (the transaction id is not signed), known.
    let refresh = request("alice", nonce, vec![]).signed(2, &signer(1));
    assert_eq!(taken(&mut h, from, refresh.clone()), nonce);
    assert_eq!(h.rv.stats().signatures_known, 1);
    // In the next epoch the old nonce still holds: known again. The answer carries the
    // new epoch's nonce; signing it makes new bytes, checked, then known.
    h.set_time(NONCE_EPOCH + Duration::from_secs(1));
    let next = taken(&mut h, from, refresh);
    assert_ne!(next, nonce);
    assert_eq!(h.rv.stats().signatures_known, 2);
    let refresh = request("alice", next, vec![]).signed(3, &signer(1));
    taken(&mut h, from, refresh.clone());
    assert_eq!(h.rv.stats().signatures_known, 2);
    taken(&mut h, from, refresh.clone());
    assert_eq!(h.rv.stats().signatures_known, 3);
    assert_eq!(h.rv.stats().registrations, 5);

    // Other private addresses under the same nonce: new bytes, checked (and taken).
    let moved = request("alice", next, vec![private(1, 5000)]).signed(4, &signer(1));
    taken(&mut h, from, moved);
    assert_eq!(h.rv.stats().signatures_known, 3);
    // The old bytes are no longer the record's last: checked again, still good.
    taken(&mut h, from, refresh);
    assert_eq!(h.rv.stats().signatures_known, 3);
    assert_eq!(h.rv.stats().bad_signatures, 0);
}

#[test]
fn a_known_message_with_another_signature_is_checked_and_refused() {
    let mut h = Harness::new();
    let from = public(1, 40_000);
    let nonce = registered(&mut h, from, "alice", 1);
    let req = request("alice", nonce, vec![]);
    let good = req.signed(2, &signer(1));
    assert!(matches!(
        h.single_answer(from, good.clone()),
        Frame::Registered { .. }
    ));
    let Frame::Register { sig, .. } = good else {
        unreachable!()
    };
    let mut bytes = sig.to_bytes();
    bytes[5] ^= 1;
    let forged = req.with_signature(3, key(1), Signature::from_bytes(&bytes));
    match h.single_answer(from, forged) {
        Frame::Error {
            txn: 3,
            code: ErrorCode::BadSignature,
            ..
        } => {}
        other => panic!("expected BadSignature, got {other:?}"),
    }
    assert_eq!(h.rv.stats().bad_signatures, 1);
    assert_eq!(
        h.rv.stats().signatures_known,
        1,
        "only the good refresh was known"
    );
}

#[test]
fn checked_outside_as_a_batch_ends_as_fed_whole() {
    let mut h = Harness::new();
    // Three clients past their challenge; the middle one forges its signature.
    let froms = [public(1, 40_000), public(2, 40_000), public(3, 40_000)];
    let mut frames = Vec::new();
    for (i, from) in froms.iter().enumerate() {
        let n = i as u8 + 1;
        let name = format!("peer{n}");
        let first = request(&name, [0; 16], vec![]).with_signature(1, key(n), Signature::empty());
        let Frame::Challenge { nonce, .. } = h.single_answer(*from, first) else {
            panic!("a first request is challenged");
        };
        let signer = if n == 2 { signer(9) } else { signer(n) };
        let req = request(&name, nonce, vec![]);
        frames.push(req.with_signature(
            2,
            key(n),
            match req.signed(2, &signer) {
                Frame::Register { sig, .. } => sig,
                _ => unreachable!(),
            },
        ));
    }
    let mut unchecked = Vec::new();
    for (from, frame) in froms.iter().zip(frames) {
        let now = h.now;
        unchecked.push(
            h.rv.screen(now, *from, frame)
                .expect("a signed first registration is checked"),
        );
    }
    assert!(h.drain().is_empty(), "nothing answered before the check");
    for checked in Unchecked::check_all(unchecked) {
        let now = h.now;
        h.rv.handle_checked(now, checked);
    }
    let sent = h.drain();
    assert_eq!(sent.len(), 3, "{sent:?}");
    for s in &sent {
        match (&s.frame, s.to == froms[1]) {
            (
                Frame::Error {
                    code: ErrorCode::BadSignature,
                    ..
                },
                true,
            ) => {}
            (Frame::Registered { observed, .. }, false) => assert_eq!(*observed, s.to),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(h.rv.peer_count(), 2);
    assert_eq!(h.rv.stats().bad_signatures, 1);
}
