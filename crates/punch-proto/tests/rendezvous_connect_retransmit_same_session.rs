//! A retransmitted Connect (same txn from the same address, because the answer was lost)
//! is answered with the same introductions, same session, to both sides, and makes no
//! second introduction: duplicates are harmless.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::wire::Frame;
use support::{introduction_to, key, public, Harness};

#[test]
fn retransmitted_connect_gets_the_same_session() {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));

    let first = h.connect(bob, 99, "alice");
    h.set_time(Duration::from_millis(300));
    let again = h.connect(bob, 99, "alice");
    assert_eq!(again.len(), 2, "{again:?}");
    let (txn, session, initiator, peer) = introduction_to(&again, bob);
    assert_eq!(
        (txn, session, initiator, peer),
        introduction_to(&first, bob)
    );
    assert_eq!(
        introduction_to(&again, alice),
        introduction_to(&first, alice)
    );
    assert_eq!(h.rv.stats().introductions, 1, "no second introduction");

    // Still the same after the passive side acknowledged.
    h.input(alice, Frame::IntroduceAck { session });
    let third = h.connect(bob, 99, "alice");
    assert_eq!(introduction_to(&third, bob).1, session);
    assert_eq!(h.rv.stats().introductions, 1);
}

#[test]
fn a_new_txn_is_a_new_request() {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    let first = h.connect(bob, 1, "alice");
    let other = h.connect(bob, 2, "alice");
    assert_ne!(
        introduction_to(&first, bob).1,
        introduction_to(&other, bob).1
    );
}

#[test]
fn the_same_txn_from_another_address_is_not_a_retransmission() {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    let carol = public(3, 30_000);
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    h.register_ok(carol, "carol", key(3));
    let from_bob = h.connect(bob, 5, "alice");
    let from_carol = h.connect(carol, 5, "alice");
    let (_, s_bob, _, peer_seen_by_alice_1) = introduction_to(&from_bob, alice);
    let (_, s_carol, _, peer_seen_by_alice_2) = introduction_to(&from_carol, alice);
    assert_ne!(s_bob, s_carol);
    assert_eq!(peer_seen_by_alice_1.name, "bob");
    assert_eq!(peer_seen_by_alice_2.name, "carol");
}
