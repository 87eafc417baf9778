//! A name belongs to the key that registered it: another key gets `NameTaken` for as long
//! as the holder keeps its registration alive, and may take the name once it expired.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::rendezvous::DEFAULT_REGISTRATION_TTL as TTL;
use punch_proto::wire::{ErrorCode, Frame};
use support::{introduction_to, key, public, single_error, Harness};

const MS: Duration = Duration::from_millis(1);

fn assert_taken(h: &mut Harness, from: std::net::SocketAddr, txn: u64) {
    let sent = h.input(
        from,
        Frame::Register {
            txn,
            name: "alice".into(),
            key: key(66),
            private: vec![],
        },
    );
    let (t, code, reason) = single_error(&sent, from);
    assert_eq!((t, code), (txn, ErrorCode::NameTaken));
    assert!(reason.contains("alice"), "reason names the name: {reason}");
}

#[test]
fn another_key_is_refused_until_the_holder_expires() {
    let mut h = Harness::new();
    let holder = public(1, 40_000);
    let thief = public(6, 60_000);
    h.register_ok(holder, "alice", key(1));

    h.set_time(Duration::from_secs(1));
    assert_taken(&mut h, thief, 100);
    h.set_time(TTL - MS);
    assert_taken(&mut h, thief, 101);
    assert_eq!(h.rv.peer_count(), 1);

    // The holder went quiet: at the TTL the name is free for the other key.
    h.advance_to(TTL);
    let answer = h.register(thief, 102, "alice", key(66), vec![]);
    assert!(
        matches!(answer, Frame::Registered { txn: 102, observed, .. } if observed == thief),
        "{answer:?}"
    );
    // Now the name is the new key's, and the old holder is the one refused.
    let sent = h.input(
        holder,
        Frame::Register {
            txn: 7,
            name: "alice".into(),
            key: key(1),
            private: vec![],
        },
    );
    assert_eq!(single_error(&sent, holder).1, ErrorCode::NameTaken);

    // Peers asking for "alice" are introduced to the new key at its address.
    let bob = public(2, 50_000);
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 5, "alice");
    let (_, _, _, peer) = introduction_to(&sent, bob);
    assert_eq!((peer.key, peer.public), (key(66), thief));
}

#[test]
fn a_refreshing_holder_keeps_the_name() {
    let mut h = Harness::new();
    let holder = public(1, 40_000);
    let thief = public(6, 60_000);
    h.register_ok(holder, "alice", key(1));
    h.set_time(TTL / 2);
    h.register_ok(holder, "alice", key(1));
    // Past the first registration's lifetime, but not the refresh's.
    h.advance_to(TTL + MS);
    assert_taken(&mut h, thief, 200);
    h.advance_to(TTL / 2 + TTL - MS);
    assert_taken(&mut h, thief, 201);
    h.advance_to(TTL / 2 + TTL);
    h.register_ok(thief, "alice", key(66));
}
