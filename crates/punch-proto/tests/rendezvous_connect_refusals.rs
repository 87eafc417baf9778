//! A Connect the server cannot serve is refused with the code that says why and the
//! request's transaction id, sent to the requester alone: an unknown target
//! (`UnknownPeer`), a requester that has not registered from that address
//! (`NotRegistered`), and a peer asking for itself (`SelfConnect`).

#[path = "rendezvous_support.rs"]
mod support;

use punch_proto::wire::ErrorCode;
use support::{key, public, single_error, Harness};

#[test]
fn connect_to_an_unknown_peer_is_refused_with_the_txn() {
    let mut h = Harness::new();
    let bob = public(2, 50_000);
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 0xfeed, "nobody");
    let (txn, code, reason) = single_error(&sent, bob);
    assert_eq!((txn, code), (0xfeed, ErrorCode::UnknownPeer));
    assert!(reason.contains("nobody"), "reason names the peer: {reason}");
    assert_eq!(h.rv.stats().errors, 1);
    assert_eq!(h.rv.stats().introductions, 0);
    assert_eq!(
        h.rv.poll_timeout(),
        Some(h.t0 + punch_proto::rendezvous::DEFAULT_REGISTRATION_TTL)
    );
}

#[test]
fn connect_before_registering_is_refused() {
    let mut h = Harness::new();
    h.register_ok(public(1, 40_000), "alice", key(1));
    let stranger = public(9, 9_999);
    let sent = h.connect(stranger, 31, "alice");
    let (txn, code, _) = single_error(&sent, stranger);
    assert_eq!((txn, code), (31, ErrorCode::NotRegistered));
}

#[test]
fn connect_from_the_right_ip_but_another_port_is_refused() {
    // Registration is per transport address: a NAT's other mapping is not the peer.
    let mut h = Harness::new();
    h.register_ok(public(1, 40_000), "alice", key(1));
    h.register_ok(public(2, 50_000), "bob", key(2));
    let other_port = public(2, 50_001);
    let sent = h.connect(other_port, 32, "alice");
    assert_eq!(single_error(&sent, other_port).1, ErrorCode::NotRegistered);
}

#[test]
fn connect_to_oneself_is_refused() {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    h.register_ok(alice, "alice", key(1));
    let sent = h.connect(alice, 77, "alice");
    let (txn, code, _) = single_error(&sent, alice);
    assert_eq!((txn, code), (77, ErrorCode::SelfConnect));
    assert_eq!(h.rv.stats().introductions, 0);
}
