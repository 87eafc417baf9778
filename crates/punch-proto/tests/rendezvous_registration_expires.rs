//! A registration that is not refreshed expires after the TTL: the server's timer says
//! when, the entry goes, and a Connect to the name then gets `UnknownPeer` (also when
//! the timer has not run yet: a lookup never returns an expired entry).

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::rendezvous::RendezvousConfig;
use punch_proto::wire::{ErrorCode, Frame};
use support::{introduction_to, key, public, single_error, Harness};

const TTL: Duration = Duration::from_secs(40);
const MS: Duration = Duration::from_millis(1);

fn harness() -> Harness {
    Harness::with_config(RendezvousConfig {
        registration_ttl: TTL,
        ..RendezvousConfig::default()
    })
}

#[test]
fn unrefreshed_registration_expires_on_the_timer() {
    let mut h = harness();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(alice, "alice", key(1));
    assert_eq!(h.rv.poll_timeout(), Some(h.t0 + TTL), "wake at the expiry");

    // bob keeps refreshing, alice does not.
    h.set_time(TTL / 2);
    h.register_ok(bob, "bob", key(2));
    h.set_time(TTL - MS);
    let sent = h.connect(bob, 1, "alice");
    introduction_to(&sent, bob);
    // Acknowledge, so only the registrations are left on the timers.
    let (_, session, _, _) = introduction_to(&sent, alice);
    h.input(alice, Frame::IntroduceAck { session });

    let (at, _) = h.fire_next_timer().expect("a timer is set");
    assert_eq!(at, h.t0 + TTL);
    assert_eq!(h.rv.peer_count(), 1, "alice is gone, bob is not");
    assert_eq!(h.rv.stats().expired, 1);

    let sent = h.connect(bob, 2, "alice");
    let (txn, code, _) = single_error(&sent, bob);
    assert_eq!((txn, code), (2, ErrorCode::UnknownPeer));
}

#[test]
fn expired_entry_is_unknown_even_before_the_timer_runs() {
    let mut h = harness();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(alice, "alice", key(1));
    h.set_time(TTL / 2);
    h.register_ok(bob, "bob", key(2));
    h.set_time(TTL); // no handle_timeout: the entry is still in the table
    let sent = h.connect(bob, 3, "alice");
    let (txn, code, _) = single_error(&sent, bob);
    assert_eq!((txn, code), (3, ErrorCode::UnknownPeer));
}

#[test]
fn an_expired_requester_is_not_registered() {
    let mut h = harness();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(bob, "bob", key(2));
    h.set_time(TTL / 2);
    h.register_ok(alice, "alice", key(1));
    h.set_time(TTL + MS);
    let sent = h.connect(bob, 4, "alice");
    let (txn, code, _) = single_error(&sent, bob);
    assert_eq!((txn, code), (4, ErrorCode::NotRegistered));
}
