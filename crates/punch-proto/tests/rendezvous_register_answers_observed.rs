//! A registration is answered with the address the server observed it from, the request's
//! transaction id and the registration's lifetime; a refresh from the same address is
//! answered the same way and does not add a second entry.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::rendezvous::RendezvousConfig;
use punch_proto::wire::Frame;
use support::{key, private, public, Harness};

#[test]
fn registration_is_answered_with_the_observed_address() {
    let mut h = Harness::new();
    let from = public(7, 40_000);
    let answer = h.register(from, 11, "alice", key(1), vec![private(2, 5000)]);
    assert!(
        matches!(
            answer,
            Frame::Registered { txn: 11, observed, expires_secs: 90, .. } if observed == from
        ),
        "{answer:?}"
    );
    assert_eq!(h.rv.peer_count(), 1);
    assert_eq!(h.rv.stats().registrations, 1);
    assert_eq!(h.rv.stats().errors, 0);
}

#[test]
fn refresh_is_answered_again_and_keeps_one_entry() {
    let mut h = Harness::new();
    let from = public(7, 40_000);
    h.register_ok(from, "alice", key(1));
    h.set_time(Duration::from_secs(25));
    let answer = h.register(from, 12, "alice", key(1), vec![]);
    assert!(
        matches!(
            answer,
            Frame::Registered { txn: 12, observed, expires_secs: 90, .. } if observed == from
        ),
        "{answer:?}"
    );
    assert_eq!(h.rv.peer_count(), 1);
    assert_eq!(h.rv.stats().registrations, 2);
}

#[test]
fn expires_secs_follows_the_configured_ttl() {
    let mut h = Harness::with_config(RendezvousConfig {
        registration_ttl: Duration::from_secs(30),
        ..RendezvousConfig::default()
    });
    let from = public(9, 1234);
    let answer = h.register(from, 3, "bob", key(2), vec![]);
    assert!(
        matches!(answer, Frame::Registered { txn: 3, observed, expires_secs: 30, .. } if observed == from),
        "{answer:?}"
    );
}
