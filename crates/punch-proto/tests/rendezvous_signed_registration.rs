//! Registrations are signed over a nonce the server sent to the registering address
//! (`punch_proto::auth`): a first, unsigned registration gets a challenge no larger than
//! itself; a refresh signs the nonce of the last answer and needs no challenge; a captured
//! registration replayed from another address, or one with a forged signature, moves
//! nothing and is counted; an old nonce expires; an old (version 1) client is told to
//! upgrade.

#[path = "rendezvous_support.rs"]
mod support;

use std::net::SocketAddr;

use punch_proto::auth::{RegisterRequest, Signature, NONCE_EPOCH};
use punch_proto::wire::{
    self, ErrorCode, Frame, FRAME_TAG, LEGACY_WIRE_VERSION, UPGRADE_REASON, WIRE_VERSION,
};
use support::{introduction_to, key, public, signer, unsigned_register, Harness};

/// alice's registration signed over `nonce`.
fn alice(nonce: [u8; 16], txn: u64) -> Frame {
    RegisterRequest {
        name: "alice".into(),
        private: vec![],
        nat: None,
        nonce,
    }
    .signed(txn, &signer(1))
}

/// Where the server introduces bob to alice: alice's recorded address.
fn alice_seen_at(h: &mut Harness, bob: SocketAddr, txn: u64) -> SocketAddr {
    let sent = h.connect(bob, txn, "alice");
    introduction_to(&sent, bob).3.public
}

#[test]
fn first_registration_is_challenged_then_signed_refreshes_flow() {
    let mut h = Harness::new();
    let from = public(1, 40_000);
    let first = unsigned_register(7, "alice", key(1), vec![]);
    let request_len = first.encoded_len().unwrap();
    let answer = h.single_answer(from, first);
    let Frame::Challenge { txn: 7, nonce } = answer else {
        panic!("expected a challenge, got {answer:?}");
    };
    assert!(
        answer.encoded_len().unwrap() <= request_len,
        "no amplification"
    );
    assert_eq!(h.rv.stats().challenged, 1);
    assert_eq!(
        h.rv.peer_count(),
        0,
        "nothing recorded before the signed request"
    );

    let Frame::Registered { nonce: next, .. } = h.single_answer(from, alice(nonce, 7)) else {
        panic!("the signed registration is taken");
    };
    // A refresh 25 s later signs the nonce of the last answer: no second challenge.
    h.set_time(std::time::Duration::from_secs(25));
    let answer = h.single_answer(from, alice(next, 8));
    assert!(
        matches!(answer, Frame::Registered { txn: 8, .. }),
        "{answer:?}"
    );
    assert_eq!(h.rv.stats().challenged, 1);
    assert_eq!(h.rv.stats().registrations, 2);
}

#[test]
fn a_replay_from_elsewhere_is_challenged_and_moves_nothing() {
    let mut h = Harness::new();
    let (home, thief, bob) = (public(1, 40_000), public(6, 60_000), public(2, 50_000));
    h.register_ok(bob, "bob", key(2));
    // alice registers as a client does; the signed request is captured on the way.
    let Frame::Challenge { nonce, .. } = h.single_answer(home, alice([0; 16], 3)) else {
        panic!("a nonce of zeroes is never valid");
    };
    let captured = alice(nonce, 3);
    let answer = h.single_answer(home, captured.clone());
    assert!(matches!(answer, Frame::Registered { .. }), "{answer:?}");
    // Replayed from elsewhere (at once, and later): a challenge each time, nothing moves.
    for at in [0, 30] {
        h.set_time(std::time::Duration::from_secs(at));
        let answer = h.single_answer(thief, captured.clone());
        assert!(
            matches!(answer, Frame::Challenge { txn: 3, .. }),
            "{answer:?}"
        );
    }
    assert_eq!(h.rv.stats().registrations, 2, "bob's and alice's only");
    assert_eq!(
        alice_seen_at(&mut h, bob, 9),
        home,
        "the record stayed home"
    );
}

#[test]
fn a_forged_signature_is_refused_and_counted() {
    let mut h = Harness::new();
    let (home, thief, bob) = (public(1, 40_000), public(6, 60_000), public(2, 50_000));
    h.register_ok(home, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    // The thief gets a nonce for its own address, names alice's key, and signs with its own.
    let Frame::Challenge { nonce, .. } =
        h.single_answer(thief, unsigned_register(4, "alice", key(1), vec![]))
    else {
        panic!("expected a challenge");
    };
    let req = RegisterRequest {
        name: "alice".into(),
        private: vec![],
        nat: None,
        nonce,
    };
    let forged_sig = signer(66).sign(&req.message(&key(1)));
    for sig in [forged_sig, Signature::empty()] {
        let forged = req.with_signature(4, key(1), sig);
        let answer = h.single_answer(thief, forged);
        assert!(
            matches!(
                answer,
                Frame::Error {
                    txn: 4,
                    code: ErrorCode::BadSignature,
                    ..
                }
            ),
            "{answer:?}"
        );
    }
    assert_eq!(h.rv.stats().bad_signatures, 2);
    assert_eq!(
        alice_seen_at(&mut h, bob, 9),
        home,
        "the record stayed home"
    );
}

#[test]
fn a_nonce_lives_one_to_two_epochs() {
    let mut h = Harness::new();
    let from = public(1, 40_000);
    h.register_ok(from, "alice", key(1));
    let Frame::Registered { nonce, .. } = h.register(from, 2, "alice", key(1), vec![]) else {
        panic!("refresh refused");
    };
    h.set_time(NONCE_EPOCH);
    assert!(matches!(
        h.single_answer(from, alice(nonce, 3)),
        Frame::Registered { .. }
    ));
    h.set_time(NONCE_EPOCH * 3);
    let answer = h.single_answer(from, alice(nonce, 4));
    assert!(
        matches!(answer, Frame::Challenge { txn: 4, .. }),
        "{answer:?}"
    );
}

#[test]
fn an_old_client_is_told_to_upgrade() {
    let mut h = Harness::new();
    let from = public(3, 30_000);
    // A version-1 registration: variant 0, txn 21, name, key, no addresses.
    let mut v1 = vec![FRAME_TAG, LEGACY_WIRE_VERSION, 0, 21, 5];
    v1.extend_from_slice(b"alice");
    v1.extend_from_slice(&[9; 32]);
    v1.push(0);
    assert!(Frame::decode(&v1).is_err());
    h.rv.handle_other_version(h.now, from, &v1);
    let (to, mut answer) = h.rv.poll_transmit().expect("an answer");
    assert_eq!(to, from);
    assert_eq!(
        answer[1], LEGACY_WIRE_VERSION,
        "in the old client's version"
    );
    assert!(answer.len() <= 2 * v1.len(), "no amplification");
    answer[1] = WIRE_VERSION;
    assert_eq!(
        Frame::decode(&answer),
        Ok(Frame::Error {
            txn: 21,
            code: ErrorCode::BadRequest,
            reason: UPGRADE_REASON.into()
        })
    );
    assert_eq!(h.rv.stats().legacy_refused, 1);
    // Anything else of another version gets silence.
    let mut other = v1.clone();
    other[2] = 2; // a version-1 Connect
    h.rv.handle_other_version(h.now, from, &other);
    assert!(h.rv.poll_transmit().is_none());
    assert!(wire::legacy_upgrade_answer(&other).is_none());
}
