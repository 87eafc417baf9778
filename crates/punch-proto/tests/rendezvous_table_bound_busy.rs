//! The registry is bounded: with `max_peers: 3`, a fourth name gets `Busy` (with its txn)
//! while the three hold their names; registered peers can still refresh and move; once
//! registrations expire, new names fit again.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::rendezvous::RendezvousConfig;
use punch_proto::wire::{ErrorCode, Frame};
use support::{key, public, Harness};

const TTL: Duration = Duration::from_secs(60);

fn full() -> Harness {
    let mut h = Harness::with_config(RendezvousConfig {
        max_peers: 3,
        registration_ttl: TTL,
        ..RendezvousConfig::default()
    });
    h.register_ok(public(1, 1000), "a", key(1));
    h.register_ok(public(2, 1000), "b", key(2));
    h.register_ok(public(3, 1000), "c", key(3));
    h
}

/// A signed registration that must be refused: its (txn, code).
fn refused(
    h: &mut Harness,
    from: std::net::SocketAddr,
    txn: u64,
    name: &str,
    n: u8,
) -> (u64, ErrorCode) {
    match h.register(from, txn, name, key(n), vec![]) {
        Frame::Error { txn, code, .. } => (txn, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn fourth_name_gets_busy() {
    let mut h = full();
    assert_eq!(
        refused(&mut h, public(4, 1000), 44, "d", 4),
        (44, ErrorCode::Busy)
    );
    assert_eq!(h.rv.peer_count(), 3);
}

#[test]
fn registered_peers_still_refresh_and_move_when_full() {
    let mut h = full();
    h.set_time(TTL / 2);
    h.register_ok(public(1, 1000), "a", key(1));
    h.register_ok(public(2, 2222), "b", key(2));
    assert_eq!(h.rv.peer_count(), 3);
    assert_eq!(
        refused(&mut h, public(4, 1000), 45, "d", 4).1,
        ErrorCode::Busy
    );
}

#[test]
fn room_comes_back_when_registrations_expire() {
    let mut h = full();
    h.set_time(TTL / 2);
    h.register_ok(public(1, 1000), "a", key(1)); // "a" stays, "b" and "c" expire at TTL
                                                 // No timer has run: a full table makes room by expiring first.
    h.set_time(TTL);
    h.register_ok(public(4, 1000), "d", key(4));
    h.register_ok(public(5, 1000), "e", key(5));
    assert_eq!(h.rv.peer_count(), 3);
    assert_eq!(
        refused(&mut h, public(6, 1000), 6, "f", 6).1,
        ErrorCode::Busy
    );
}
