//! One Connect introduces both peers in the same batch of output, so both start punching
//! together: the requester gets an `Introduce` with its txn and `initiator: true`, the
//! target one with txn 0 and `initiator: false`, both with the same session, each carrying
//! the other side's name, key, public and private addresses.

#[path = "rendezvous_support.rs"]
mod support;

use punch_proto::wire::PeerInfo;
use support::{introduction_to, key, private, public, Harness};

#[test]
fn connect_introduces_both_sides_in_one_batch() {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    let alice_private = vec![private(1, 5000), private(11, 5000)];
    let bob_private = vec![private(2, 6000)];
    h.register(alice, 1, "alice", key(1), alice_private.clone());
    h.register(bob, 1, "bob", key(2), bob_private.clone());

    let sent = h.connect(bob, 4242, "alice");
    assert_eq!(sent.len(), 2, "exactly the two introductions: {sent:?}");

    let (txn_b, session_b, initiator_b, peer_b) = introduction_to(&sent, bob);
    let (txn_a, session_a, initiator_a, peer_a) = introduction_to(&sent, alice);
    assert_eq!(session_a, session_b, "one punching session for both sides");
    assert_eq!(
        (txn_b, initiator_b),
        (4242, true),
        "the requester initiates"
    );
    assert_eq!((txn_a, initiator_a), (0, false), "the target is passive");
    assert_eq!(
        peer_b,
        PeerInfo {
            name: "alice".into(),
            key: key(1),
            public: alice,
            private: alice_private,
        }
    );
    assert_eq!(
        peer_a,
        PeerInfo {
            name: "bob".into(),
            key: key(2),
            public: bob,
            private: bob_private,
        }
    );
    assert_eq!(h.rv.stats().introductions, 1);
}

#[test]
fn each_connect_gets_its_own_session() {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    let first = h.connect(bob, 1, "alice");
    let second = h.connect(bob, 2, "alice");
    let reverse = h.connect(alice, 1, "bob");
    let s1 = introduction_to(&first, bob).1;
    let s2 = introduction_to(&second, bob).1;
    let s3 = introduction_to(&reverse, alice).1;
    assert!(s1 != s2 && s2 != s3 && s1 != s3, "{s1} {s2} {s3}");
    assert_eq!(h.rv.stats().introductions, 3);
}
