//! What the server publishes as metrics, counted by the state machine: errors per code,
//! relay sessions (opened, and live until they expire) and the introduction-to-ready time
//! of each pair (from the introductions to the second acknowledgement), taken once.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::rendezvous::SESSION_TTL;
use punch_proto::wire::{encode_relay, ErrorCode, Frame, Side};
use support::{introduction_to, key, public, Harness};

#[test]
fn errors_are_counted_per_code() {
    let mut h = Harness::new();
    let (alice, stranger) = (public(1, 40_000), public(9, 9_000));
    h.register_ok(alice, "alice", key(1));
    h.connect(alice, 1, "nobody");
    h.connect(alice, 2, "alice");
    h.connect(stranger, 3, "alice");
    h.connect(alice, 4, "nobody-either");
    let errors = &h.rv.stats().errors_by_code;
    assert_eq!(errors.get(ErrorCode::UnknownPeer), 2);
    assert_eq!(errors.get(ErrorCode::SelfConnect), 1);
    assert_eq!(errors.get(ErrorCode::NotRegistered), 1);
    assert_eq!(errors.get(ErrorCode::Busy), 0);
    let total: u64 = errors.iter().map(|(_, n)| n).sum();
    assert_eq!(total, h.rv.stats().errors);
}

#[test]
fn a_relay_session_is_live_from_its_first_datagram_until_it_expires() {
    let mut h = Harness::new();
    let (alice, bob) = (public(1, 40_000), public(2, 50_000));
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    let (_, session, _, _) = introduction_to(&h.connect(bob, 7, "alice"), bob);
    assert_eq!(
        h.rv.relay_session_count(),
        0,
        "introduced, nothing relayed yet"
    );
    let keepalive = encode_relay(Side::Requester, session, &[]);
    assert_eq!(h.rv.relay(h.now, bob, &keepalive), None);
    assert_eq!(h.rv.relay_session_count(), 0, "a keepalive opens nothing");
    let d = encode_relay(Side::Requester, session, &[0x40; 100]);
    for _ in 0..3 {
        assert_eq!(h.rv.relay(h.now, bob, &d), Some(alice));
    }
    assert_eq!(h.rv.relay_session_count(), 1);
    assert_eq!(
        h.rv.stats().relay_sessions,
        1,
        "opened once, not per datagram"
    );
    // Idle past the relay's timeout and the session's own lifetime: gone.
    h.advance_to(SESSION_TTL + Duration::from_secs(600));
    assert_eq!(h.rv.relay_session_count(), 0);
    assert_eq!(h.rv.stats().relay_sessions, 1);
}

#[test]
fn the_ready_time_runs_from_the_introductions_to_the_second_acknowledgement() {
    let mut h = Harness::new();
    let (alice, bob) = (public(1, 40_000), public(2, 50_000));
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    h.set_time(Duration::from_millis(100));
    let (_, session, _, _) = introduction_to(&h.connect(bob, 7, "alice"), bob);
    h.set_time(Duration::from_millis(130));
    h.input(alice, Frame::IntroduceAck { session });
    assert_eq!(h.rv.poll_ready_time(), None, "one side is not ready yet");
    h.set_time(Duration::from_millis(345));
    h.input(bob, Frame::IntroduceAck { session });
    assert_eq!(h.rv.poll_ready_time(), Some(Duration::from_millis(245)));
    // A repeated acknowledgement (after a retransmitted introduction) is not a new pair.
    h.input(alice, Frame::IntroduceAck { session });
    assert_eq!(h.rv.poll_ready_time(), None);
    // A stranger's acknowledgement of the session counts for nothing.
    h.input(public(9, 9_000), Frame::IntroduceAck { session });
    assert_eq!(h.rv.poll_ready_time(), None);
}
