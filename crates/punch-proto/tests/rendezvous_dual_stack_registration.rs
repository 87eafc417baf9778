//! A dual-stack client registers over both families with one key: the server keeps the
//! second family's address beside the record (introductions still go to the first),
//! takes requests from either, refuses another key over either, and when the first
//! family's registration lapses, the next one over the other family becomes the record.

#[path = "rendezvous_support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use punch_proto::rendezvous::DEFAULT_REGISTRATION_TTL;
use punch_proto::wire::{ErrorCode, Frame};
use support::{introduction_to, key, private, public, single_error, Harness};

fn v6(host: u16, port: u16) -> SocketAddr {
    SocketAddr::from((
        std::net::Ipv6Addr::new(0x2001, 0xdb8, host, 0, 0, 0, 0, 2),
        port,
    ))
}

#[test]
fn the_other_family_is_a_second_address_not_a_move() {
    let mut h = Harness::new();
    let (alice4, alice6) = (public(1, 40_000), v6(1, 40_000));
    let bob = public(2, 50_000);
    let candidates = vec![private(1, 5000), alice6];
    h.register(alice4, 1, "alice", key(1), candidates.clone());
    let answer = h.register(alice6, 2, "alice", key(1), candidates.clone());
    assert!(
        matches!(answer, Frame::Registered { txn: 2, observed, .. } if observed == alice6),
        "{answer:?}"
    );
    h.register_ok(bob, "bob", key(2));
    assert_eq!(h.rv.peer_count(), 2, "one record per name");

    // Introductions keep going to the first family's address.
    let sent = h.connect(bob, 9, "alice");
    let (_, _, _, peer) = introduction_to(&sent, bob);
    assert_eq!(peer.public, alice4);
    assert_eq!(peer.private, candidates);
    introduction_to(&sent, alice4);
    assert!(sent.iter().all(|s| s.to != alice6), "{sent:?}");

    // Requests count from either address.
    let sent = h.connect(alice6, 5, "bob");
    let (_, _, _, peer) = introduction_to(&sent, alice6);
    assert_eq!(peer.public, bob);
}

#[test]
fn another_key_is_refused_over_the_other_family_too() {
    let mut h = Harness::new();
    h.register_ok(public(1, 40_000), "alice", key(1));
    let answer = h.register(v6(9, 1234), 3, "alice", key(3), vec![]);
    assert!(
        matches!(
            answer,
            Frame::Error {
                code: ErrorCode::NameTaken,
                ..
            }
        ),
        "{answer:?}"
    );
}

#[test]
fn when_the_first_family_lapses_the_other_becomes_the_record() {
    let mut h = Harness::new();
    let (alice4, alice6) = (public(1, 40_000), v6(1, 40_000));
    let bob = public(2, 50_000);
    h.register_ok(alice4, "alice", key(1));
    h.register_ok(alice6, "alice", key(1));
    // IPv4 goes quiet; IPv6 keeps refreshing.
    let half = DEFAULT_REGISTRATION_TTL / 2;
    h.set_time(half);
    h.register_ok(alice6, "alice", key(1));
    h.set_time(DEFAULT_REGISTRATION_TTL + Duration::from_secs(1));
    h.register_ok(alice6, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 7, "alice");
    let (_, _, _, peer) = introduction_to(&sent, bob);
    assert_eq!(peer.public, alice6, "the record moved to the live family");
    // The lapsed address no longer speaks for alice.
    let sent = h.connect(alice4, 8, "bob");
    let (txn, code, _) = single_error(&sent, alice4);
    assert_eq!((txn, code), (8, ErrorCode::NotRegistered));
}
