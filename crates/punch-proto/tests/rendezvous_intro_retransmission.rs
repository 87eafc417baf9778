//! The passive side's introduction is retransmitted (the requester retransmits its own
//! Connect instead) until that side acknowledges it with `IntroduceAck` from the address
//! it was sent to, and stops after `INTRO_ATTEMPTS` sends when no ack comes. Acks from
//! any other address, or for another session, do not stop it.

#[path = "rendezvous_support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::rendezvous::{DEFAULT_REGISTRATION_TTL, INTRO_ATTEMPTS, INTRO_RETRANSMIT};
use punch_proto::wire::Frame;
use support::{introduction_to, key, public, Harness, Sent};

struct Setup {
    h: Harness,
    alice: SocketAddr,
    bob: SocketAddr,
    session: u64,
    intro_bytes: Vec<u8>,
}

/// bob asks for alice at t0; alice is the passive side.
fn setup() -> Setup {
    let mut h = Harness::new();
    let alice = public(1, 40_000);
    let bob = public(2, 50_000);
    h.register_ok(alice, "alice", key(1));
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 8, "alice");
    let session = introduction_to(&sent, alice).1;
    let intro_bytes = sent
        .iter()
        .find(|s| s.to == alice)
        .map(|s| s.bytes.clone())
        .expect("introduction to alice");
    Setup {
        h,
        alice,
        bob,
        session,
        intro_bytes,
    }
}

/// Run every timer before the registrations expire; returns (time, datagram) of each send.
fn run_intro_timers(h: &mut Harness) -> Vec<(Instant, Sent)> {
    let expiry = h.t0 + DEFAULT_REGISTRATION_TTL;
    let mut out = Vec::new();
    while h.rv.poll_timeout().is_some_and(|t| t < expiry) {
        let (at, sent) = h.fire_next_timer().expect("a timer is set");
        out.extend(sent.into_iter().map(|s| (at, s)));
        assert!(out.len() <= 100, "retransmissions must stop: {out:?}");
    }
    out
}

#[test]
fn introduction_is_retransmitted_until_acknowledged() {
    let Setup {
        mut h,
        alice,
        bob,
        session,
        intro_bytes,
    } = setup();

    let (at, sent) = h.fire_next_timer().expect("retransmission timer");
    assert_eq!(at, h.t0 + INTRO_RETRANSMIT);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, alice);
    assert_eq!(
        sent[0].bytes, intro_bytes,
        "the same introduction, byte for byte"
    );

    let (_, sent) = h.fire_next_timer().expect("retransmission timer");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].bytes, intro_bytes);

    // The ack stops the retransmissions. It introduces nobody again: at most it makes the
    // server relay ready signals (`PeerReady`), which belong to the punching schedule.
    let answer = h.input(alice, Frame::IntroduceAck { session });
    assert!(
        answer
            .iter()
            .all(|s| s.frame == Frame::PeerReady { session } && (s.to == alice || s.to == bob)),
        "{answer:?}"
    );
    assert_eq!(
        h.rv.poll_timeout(),
        Some(h.t0 + DEFAULT_REGISTRATION_TTL),
        "only the registrations' expiry is left"
    );
    assert!(run_intro_timers(&mut h).is_empty());
    assert_eq!(h.rv.stats().intro_timeouts, 0);
}

#[test]
fn retransmissions_stop_after_intro_attempts() {
    let Setup {
        mut h,
        alice,
        intro_bytes,
        ..
    } = setup();
    let sends = run_intro_timers(&mut h);
    assert_eq!(
        sends.len() as u32,
        INTRO_ATTEMPTS - 1,
        "INTRO_ATTEMPTS sends in all, the first included: {sends:?}"
    );
    assert!(sends
        .iter()
        .all(|(_, s)| s.to == alice && s.bytes == intro_bytes));
    // Spaced at least INTRO_RETRANSMIT apart, never shrinking.
    let mut times = vec![h.t0];
    times.extend(sends.iter().map(|(t, _)| *t));
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= INTRO_RETRANSMIT), "{gaps:?}");
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "backoff: {gaps:?}");
    assert_eq!(h.rv.stats().intro_timeouts, 1);
}

#[test]
fn acks_from_elsewhere_or_for_other_sessions_do_not_stop_them() {
    let Setup {
        mut h,
        alice,
        bob,
        session,
        ..
    } = setup();
    // The initiator cannot acknowledge for the passive side, nor anyone else.
    h.input(bob, Frame::IntroduceAck { session });
    h.input(public(9, 9), Frame::IntroduceAck { session });
    h.input(
        alice,
        Frame::IntroduceAck {
            session: session.wrapping_add(1),
        },
    );
    let sends = run_intro_timers(&mut h);
    assert_eq!(sends.len() as u32, INTRO_ATTEMPTS - 1, "{sends:?}");
    assert!(sends.iter().all(|(_, s)| s.to == alice));
}
