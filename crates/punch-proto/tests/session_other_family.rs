//! The client session across address families, driven frame by frame: with the server's
//! address in the other family it registers there too (its own challenge and nonce), and
//! the public address that answer shows goes into both registrations as a candidate,
//! signed; and a peer with no address in a family we have is not punched toward at all:
//! it stays on the relay, and the session says why.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::auth::SigningKey;
use punch_proto::client::{Config, Event, PathReason, Route, Session};
use punch_proto::wire::{Frame, PeerInfo};

fn a(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

const SERVER: &str = "203.0.113.10:3478";
const SERVER6: &str = "[2001:db8:113::10]:3478";
const PUBLIC: &str = "198.51.100.2:40000";
const HOST: &str = "10.0.1.2:40000";

/// Every datagram the session wants sent, decoded where it is a frame.
fn sent(s: &mut Session) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|t| (t.dest, t.payload))
        .collect()
}

fn frames_to(out: &[(SocketAddr, Vec<u8>)], to: SocketAddr) -> Vec<Frame> {
    out.iter()
        .filter(|(d, _)| *d == to)
        .filter_map(|(_, p)| Frame::decode(p).ok())
        .collect()
}

/// A session registered over IPv4 (challenge, then the signed request accepted), with
/// the server's IPv6 address given; returns it with what it sent along the way.
fn registered(
    server_other: Option<SocketAddr>,
    t0: Instant,
) -> (Session, Vec<(SocketAddr, Vec<u8>)>) {
    let mut cfg = Config::new(a(SERVER), "alice", SigningKey::from_seed(&[7; 32]));
    cfg.server_other = server_other;
    cfg.private = vec![a(HOST)];
    let mut s = Session::new(cfg, t0, 1).expect("session");
    let mut all = sent(&mut s);
    let Some(Frame::Register { txn, .. }) = frames_to(&all, a(SERVER)).into_iter().next() else {
        panic!("no registration sent: {all:?}");
    };
    let challenge = Frame::Challenge {
        txn,
        nonce: [3; 16],
    };
    s.handle_datagram(t0, a(SERVER), &challenge.encode().unwrap());
    all.extend(sent(&mut s));
    let registered = Frame::Registered {
        txn,
        observed: a(PUBLIC),
        expires_secs: 90,
        nonce: [4; 16],
    };
    s.handle_datagram(t0, a(SERVER), &registered.encode().unwrap());
    all.extend(sent(&mut s));
    (s, all)
}

#[test]
fn the_other_family_is_registered_and_its_address_offered() {
    let t0 = Instant::now();
    let (mut s, out) = registered(Some(a(SERVER6)), t0);
    let to6 = frames_to(&out, a(SERVER6));
    let Some(Frame::Register { txn, .. }) = to6.first().cloned() else {
        panic!("no registration to the server's IPv6 address: {out:?}");
    };
    // Its own challenge: signed over that nonce and sent at once.
    let challenge = Frame::Challenge {
        txn,
        nonce: [5; 16],
    };
    s.handle_datagram(t0, a(SERVER6), &challenge.encode().unwrap());
    let signed = frames_to(&sent(&mut s), a(SERVER6));
    assert!(
        matches!(signed.as_slice(), [Frame::Register { nonce, .. }] if *nonce == [5; 16]),
        "{signed:?}"
    );
    let v6 = a("[2001:db8:1::2]:40000");
    // An answer to another transaction changes nothing.
    let stranger = Frame::Registered {
        txn: txn.wrapping_add(1),
        observed: a("[2001:db8:666::1]:1"),
        expires_secs: 90,
        nonce: [6; 16],
    };
    s.handle_datagram(t0, a(SERVER6), &stranger.encode().unwrap());
    s.handle_timeout(t0);
    assert_eq!(s.other_public_addr(), None);
    assert!(frames_to(&sent(&mut s), a(SERVER)).is_empty());
    let answer = Frame::Registered {
        txn,
        observed: v6,
        expires_secs: 90,
        nonce: [6; 16],
    };
    let t1 = t0 + Duration::from_millis(5);
    s.handle_datagram(t1, a(SERVER6), &answer.encode().unwrap());
    assert_eq!(s.other_public_addr(), Some(v6));
    // The driver runs the timers after every input; the registrations are due now.
    s.handle_timeout(t1);
    let out = sent(&mut s);
    let private_to = |to: &str| {
        frames_to(&out, a(to)).iter().find_map(|f| match f {
            Frame::Register { private, .. } => Some(private.clone()),
            _ => None,
        })
    };
    let want = Some(vec![a(HOST), v6]);
    assert_eq!(private_to(SERVER), want, "the first registration offers it");
    assert_eq!(private_to(SERVER6), want, "and the second says the same");
    // No event for the second registration: only the first one's answers are news.
}

#[test]
fn without_the_other_address_nothing_is_asked() {
    let (_, out) = registered(None, Instant::now());
    assert!(out.iter().all(|(d, _)| *d == a(SERVER)), "{out:?}");
}

#[test]
fn a_peer_of_another_family_stays_on_the_relay_and_we_hear_why() {
    let t0 = Instant::now();
    let (mut s, _) = registered(None, t0);
    let peer = PeerInfo {
        name: "bob".into(),
        key: SigningKey::from_seed(&[8; 32]).public_key(),
        public: a("[2001:db8:2::2]:50000"),
        private: vec![a("[2001:db8:2::2]:50000")],
    };
    let intro = Frame::Introduce {
        txn: 0,
        session: 77,
        initiator: false,
        peer,
    };
    s.handle_datagram(t0, a(SERVER), &intro.encode().unwrap());
    let out = sent(&mut s);
    assert!(
        out.iter().all(|(d, _)| d.is_ipv4()),
        "no probe toward a family we do not have: {out:?}"
    );
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    let why = events.iter().find_map(|e| match e {
        Event::DirectFailed {
            reason: PathReason::Impossible(why),
            ..
        } => Some(why.clone()),
        _ => None,
    });
    let why = why.unwrap_or_else(|| panic!("no DirectFailed event: {events:?}"));
    assert!(why.contains("no address family in common"), "{why}");
    assert!(why.contains("bob has IPv6"), "{why}");
    let relayed = events.iter().any(|e| {
        matches!(
            e,
            Event::Route {
                route: Route::Relay { .. },
                ..
            }
        )
    });
    assert!(relayed, "the relay carries bob: {events:?}");
}

#[test]
fn the_server_may_introduce_us_over_the_other_family() {
    let t0 = Instant::now();
    let (mut s, _) = registered(Some(a(SERVER6)), t0);
    let peer = PeerInfo {
        name: "bob".into(),
        key: SigningKey::from_seed(&[8; 32]).public_key(),
        public: a("198.51.100.6:50000"),
        private: vec![],
    };
    let intro = Frame::Introduce {
        txn: 0,
        session: 78,
        initiator: false,
        peer,
    };
    s.handle_datagram(t0, a(SERVER6), &intro.encode().unwrap());
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::PeerAdded { .. })),
        "an introduction over the other family is taken: {events:?}"
    );
    let acked = frames_to(&sent(&mut s), a(SERVER))
        .iter()
        .any(|f| matches!(f, Frame::IntroduceAck { session: 78 }));
    assert!(acked, "and acknowledged");
}
