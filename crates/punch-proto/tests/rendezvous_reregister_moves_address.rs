//! A peer whose NAT mapping changed re-registers from a new address with the same key: the
//! record follows it, so the next Connect introduces the new address (and sends the
//! passive side's introduction there), and the old address no longer speaks for it.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::wire::{ErrorCode, Frame};
use support::{introduction_to, key, private, public, single_error, Harness};

#[test]
fn connect_after_reregistration_introduces_the_new_address() {
    let mut h = Harness::new();
    let alice_old = public(1, 40_000);
    let alice_new = public(1, 40_555);
    let bob = public(2, 50_000);
    h.register(alice_old, 1, "alice", key(1), vec![private(1, 5000)]);
    h.register_ok(bob, "bob", key(2));

    h.set_time(Duration::from_secs(30));
    let answer = h.register(alice_new, 2, "alice", key(1), vec![private(1, 6000)]);
    assert!(
        matches!(answer, Frame::Registered { txn: 2, observed, .. } if observed == alice_new),
        "{answer:?}"
    );
    assert_eq!(h.rv.peer_count(), 2, "a move is not a second registration");

    let sent = h.connect(bob, 9, "alice");
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (_, _, _, peer) = introduction_to(&sent, bob);
    assert_eq!(peer.public, alice_new);
    assert_eq!(peer.private, vec![private(1, 6000)]);
    // The passive side's introduction goes to where alice is now.
    introduction_to(&sent, alice_new);
    assert!(sent.iter().all(|s| s.to != alice_old), "{sent:?}");
}

#[test]
fn the_old_address_no_longer_speaks_for_the_peer() {
    let mut h = Harness::new();
    let alice_old = public(1, 40_000);
    let alice_new = public(1, 40_555);
    h.register_ok(alice_old, "alice", key(1));
    h.register_ok(public(2, 50_000), "bob", key(2));
    h.register_ok(alice_new, "alice", key(1));

    let sent = h.connect(alice_old, 4, "bob");
    let (txn, code, _) = single_error(&sent, alice_old);
    assert_eq!((txn, code), (4, ErrorCode::NotRegistered));
}
