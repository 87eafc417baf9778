//! The server's relay for an introduced pair: datagrams are forwarded to the other side,
//! and every refusal is answered with `RelayClosed` and its reason. The volume limit ends
//! the session and tells both peers; `--no-relay` (relay disabled) and an unknown session
//! are refused; an idle session is forgotten.

#[path = "rendezvous_support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use punch_proto::client::RELAY_PROBE_LEN;
use punch_proto::relay::RelayConfig;
use punch_proto::rendezvous::RendezvousConfig;
use punch_proto::wire::{encode_relay, Frame, Side};
use support::{introduction_to, key, public, Harness};

/// A server with these relay settings and an introduced pair: (harness, alice, bob,
/// session), bob being the requester.
fn pair(relay: RelayConfig) -> (Harness, SocketAddr, SocketAddr, u64) {
    let mut h = Harness::with_config(RendezvousConfig {
        relay,
        ..RendezvousConfig::default()
    });
    let (alice, bob) = (public(1, 40_000), public(2, 50_000));
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 7, "alice");
    let (_, session, _, _) = introduction_to(&sent, bob);
    (h, alice, bob, session)
}

/// The reasons of the `RelayClosed` frames sent to `to`.
fn closed_to(h: &mut Harness, to: SocketAddr, session: u64) -> Vec<String> {
    h.drain()
        .into_iter()
        .filter(|s| s.to == to)
        .filter_map(|s| match s.frame {
            Frame::RelayClosed { session: x, reason } if x == session => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn forwards_both_ways_to_the_other_side() {
    let (mut h, alice, bob, session) = pair(RelayConfig::default());
    let from_bob = encode_relay(Side::Requester, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, bob, &from_bob), Some(alice));
    let from_alice = encode_relay(Side::Target, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, alice, &from_alice), Some(bob));
    assert_eq!(h.rv.stats().relayed_packets, 2);
}

#[test]
fn the_volume_limit_ends_the_session_and_tells_both_peers() {
    let (mut h, alice, bob, session) = pair(RelayConfig {
        max_bytes: 300,
        ..RelayConfig::default()
    });
    let d = encode_relay(Side::Requester, session, &[0x40; 190]);
    assert_eq!(h.rv.relay(h.now, bob, &d), Some(alice));
    h.drain();
    assert_eq!(h.rv.relay(h.now, bob, &d), None, "over the 300-byte volume");
    let sent = h.drain();
    for who in [alice, bob] {
        assert!(
            sent.iter().any(|s| s.to == who
                && matches!(&s.frame, Frame::RelayClosed { session: x, reason }
                    if *x == session && reason.contains("relay limit reached: 300 bytes"))),
            "{who} not told: {sent:?}"
        );
    }
    // The session stays closed, also for the other side, and says why.
    let small = encode_relay(Side::Target, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, alice, &small), None);
    let reasons = closed_to(&mut h, alice, session);
    assert!(
        reasons.len() == 1 && reasons[0].contains("relay limit reached"),
        "{reasons:?}"
    );
}

#[test]
fn a_server_with_relaying_off_refuses_with_a_reason() {
    let (mut h, _alice, bob, session) = pair(RelayConfig {
        enabled: false,
        ..RelayConfig::default()
    });
    let d = encode_relay(Side::Requester, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, bob, &d), None);
    let reasons = closed_to(&mut h, bob, session);
    assert_eq!(reasons, vec!["relaying is off on this server".to_string()]);
}

#[test]
fn unknown_and_idle_sessions_are_refused() {
    let (mut h, alice, bob, session) = pair(RelayConfig {
        idle_timeout: Duration::from_secs(5),
        ..RelayConfig::default()
    });
    let stranger = encode_relay(Side::Requester, session ^ 1, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, bob, &stranger), None);
    let reasons = closed_to(&mut h, bob, session ^ 1);
    assert!(
        reasons[0].starts_with("unknown relay session"),
        "{reasons:?}"
    );
    // The probe a client sends when the server answers again after a silence is answered
    // too (an empty relayed datagram would not be: the answer may be at most 3x its size).
    let probe = encode_relay(Side::Requester, session ^ 2, &[0; RELAY_PROBE_LEN]);
    assert_eq!(h.rv.relay(h.now, bob, &probe), None);
    assert_eq!(
        closed_to(&mut h, bob, session ^ 2).len(),
        1,
        "the probe gets its answer"
    );
    let empty = encode_relay(Side::Requester, session ^ 3, &[]);
    assert_eq!(h.rv.relay(h.now, bob, &empty), None);
    assert!(
        closed_to(&mut h, bob, session ^ 3).is_empty(),
        "anti-amplification"
    );

    let d = encode_relay(Side::Requester, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, bob, &d), Some(alice));
    // Long after the idle timeout (and any introduction lifetime), the session is gone.
    h.advance_to(Duration::from_secs(600));
    assert_eq!(
        h.rv.relay(h.now, bob, &d),
        None,
        "an idle session is forgotten"
    );
    let reasons = closed_to(&mut h, bob, session);
    assert!(
        reasons[0].starts_with("unknown relay session"),
        "{reasons:?}"
    );
}

#[test]
fn keepalives_hold_an_unused_session_without_forwarding_and_follow_a_new_address() {
    let (mut h, alice, bob, session) = pair(RelayConfig {
        idle_timeout: Duration::from_secs(60),
        ..RelayConfig::default()
    });
    let keepalive = encode_relay(Side::Requester, session, &[]);
    // A pair on a direct path sends only keepalives, every 25 s, for ten minutes.
    for i in 1..=24 {
        h.advance_to(Duration::from_secs(25 * i));
        assert_eq!(h.rv.relay(h.now, bob, &keepalive), None, "not forwarded");
    }
    assert_eq!(
        h.rv.stats().relayed_packets,
        0,
        "keepalives are not relayed"
    );
    // Then bob's NAT gives him a new port: his first datagram from it finds the session,
    // and alice's answer goes to the new address.
    let moved = public(2, 50_123);
    let d = encode_relay(Side::Requester, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, moved, &d), Some(alice));
    let back = encode_relay(Side::Target, session, &[0x40; 100]);
    assert_eq!(h.rv.relay(h.now, alice, &back), Some(moved));
    // Without keepalives the session would have gone long ago.
    h.advance_to(Duration::from_secs(25 * 24 + 600));
    assert_eq!(h.rv.relay(h.now, moved, &d), None, "idle again: forgotten");
}
