//! The TCP registry's assist sequence: A asks for B; A's assist connection reveals A's
//! mapping and introduces A to B; B's assist and ready introduce B to A (in either order);
//! then a relay request pairs the two relay connections and splices them.
use std::net::SocketAddr;
use std::time::Instant;

use punch_proto::auth::{RegisterRequest, SigningKey, NO_NONCE};
use punch_proto::tcp::framing::FrameReader;
use punch_proto::tcp::registry::{Action, ConnId, Listener, TcpRegistry, TcpRegistryConfig};
use punch_proto::wire::{ErrorCode, Frame};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A splice: the joined relay connections and the two control connections.
type Spliced = ((ConnId, ConnId), (ConnId, ConnId));
/// Frames sent per connection, closes and splices.
type Drained = (Vec<(ConnId, Frame)>, Vec<ConnId>, Vec<Spliced>);

/// Drain the registry's actions.
fn drain(r: &mut TcpRegistry) -> Drained {
    let (mut sent, mut closed, mut spliced) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(a) = r.poll_action() {
        match a {
            Action::Send(c, bytes) => {
                let mut rd = FrameReader::new();
                rd.push(&bytes);
                sent.push((c, rd.next_frame().unwrap().unwrap()));
                assert_eq!(rd.buffered(), 0, "one frame per send");
            }
            Action::Close(c) => closed.push(c),
            Action::Splice {
                joins, controls, ..
            } => spliced.push((joins, controls)),
        }
    }
    (sent, closed, spliced)
}

/// Register as a client does: unsigned, challenged, then signed over the nonce by the key
/// pair of seed `[key; 32]`.
fn register(r: &mut TcpRegistry, now: Instant, conn: ConnId, remote: &str, name: &str, key: u8) {
    assert!(r.handle_open(now, conn, Listener::Main, addr(remote)));
    let signer = SigningKey::from_seed(&[key; 32]);
    let mut req = RegisterRequest {
        name: name.into(),
        private: vec![],
        nat: None,
        nonce: NO_NONCE,
    };
    r.handle_frame(now, conn, req.signed(1, &signer));
    let (sent, _, _) = drain(r);
    req.nonce = match &sent[..] {
        [(c, Frame::Challenge { txn: 1, nonce })] if *c == conn => *nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    r.handle_frame(now, conn, req.signed(1, &signer));
    let (sent, _, _) = drain(r);
    assert!(matches!(sent[0].1, Frame::Registered { observed, .. } if observed == addr(remote)));
}

/// `conn` asks for `target`; the session the registry answers with (on `conn`, for `txn`).
fn connect(r: &mut TcpRegistry, now: Instant, conn: ConnId, txn: u64, target: &str) -> u64 {
    r.handle_frame(
        now,
        conn,
        Frame::TcpConnect {
            txn,
            target: target.into(),
        },
    );
    let (sent, _, _) = drain(r);
    match &sent[..] {
        [(c, Frame::TcpSession { txn: t, session })] if *c == conn && *t == txn => *session,
        other => panic!("expected TcpSession, got {other:?}"),
    }
}

#[test]
fn assist_sequence_introduces_both_sides_then_relays() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 7);
    let (a_main, b_main) = (ConnId(1), ConnId(2));
    register(&mut r, now, a_main, "198.51.100.2:40000", "alice", 1);
    register(&mut r, now, b_main, "198.51.100.6:40001", "bob", 2);

    let session = connect(&mut r, now, a_main, 5, "bob");

    // A's assist connection from its punching port.
    let a_assist = ConnId(3);
    r.handle_open(now, a_assist, Listener::Assist, addr("198.51.100.2:41000"));
    let a_private = vec![addr("10.0.1.2:41000")];
    r.handle_frame(
        now,
        a_assist,
        Frame::TcpAssist {
            session,
            private: a_private.clone(),
        },
    );
    let (sent, _, _) = drain(&mut r);
    assert!(sent.iter().any(|(c, f)| *c == a_assist
        && *f
            == Frame::TcpAssistAck {
                session,
                observed: addr("198.51.100.2:41000")
            }));
    let intro_b = sent
        .iter()
        .find(|(c, _)| *c == b_main)
        .expect("B introduced");
    match &intro_b.1 {
        Frame::TcpIntroduce {
            initiator: false,
            peer,
            ..
        } => {
            assert_eq!(peer.name, "alice");
            assert_eq!(peer.public, addr("198.51.100.2:41000"));
            assert_eq!(peer.private, a_private);
            assert_eq!(peer.key, SigningKey::from_seed(&[1; 32]).public_key());
        }
        other => panic!("expected TcpIntroduce to B, got {other:?}"),
    }

    // B reports ready before its assist frame is processed: A hears nothing yet.
    r.handle_frame(now, b_main, Frame::TcpReady { session });
    assert!(drain(&mut r).0.is_empty());
    let b_assist = ConnId(4);
    r.handle_open(now, b_assist, Listener::Assist, addr("198.51.100.6:42000"));
    r.handle_frame(
        now,
        b_assist,
        Frame::TcpAssist {
            session,
            private: vec![],
        },
    );
    let (sent, _, _) = drain(&mut r);
    let intro_a = sent
        .iter()
        .find(|(c, _)| *c == a_main)
        .expect("A introduced");
    assert!(
        matches!(&intro_a.1, Frame::TcpIntroduce { initiator: true, peer, .. }
        if peer.name == "bob" && peer.public == addr("198.51.100.6:42000"))
    );

    // A third assist for the session is refused.
    r.handle_open(now, ConnId(9), Listener::Assist, addr("192.0.2.9:1"));
    r.handle_frame(
        now,
        ConnId(9),
        Frame::TcpAssist {
            session,
            private: vec![],
        },
    );
    assert_eq!(drain(&mut r).1, vec![ConnId(9)]);

    // Relay: the join may overtake the request; the request is forwarded to B.
    let (a_relay, b_relay) = (ConnId(5), ConnId(6));
    r.handle_open(now, a_relay, Listener::Main, addr("198.51.100.2:43000"));
    r.handle_frame(now, a_relay, Frame::TcpRelayJoin { session });
    r.handle_frame(now, a_main, Frame::TcpRelay { session });
    let (sent, _, spliced) = drain(&mut r);
    assert!(spliced.is_empty());
    assert!(sent.contains(&(b_main, Frame::TcpRelay { session })));
    r.handle_open(now, b_relay, Listener::Main, addr("198.51.100.6:43001"));
    r.handle_frame(now, b_relay, Frame::TcpRelayJoin { session });
    let (sent, _, spliced) = drain(&mut r);
    assert_eq!(spliced, vec![((a_relay, b_relay), (a_main, b_main))]);
    assert!(sent.contains(&(a_relay, Frame::TcpRelayReady { session })));
    assert!(sent.contains(&(b_relay, Frame::TcpRelayReady { session })));
    assert_eq!(r.stats().relays, 1);
}

#[test]
fn unknown_peer_and_self_connect_are_refused() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 1);
    register(&mut r, now, ConnId(1), "192.0.2.1:1000", "alice", 1);
    r.handle_frame(
        now,
        ConnId(1),
        Frame::TcpConnect {
            txn: 2,
            target: "carol".into(),
        },
    );
    r.handle_frame(
        now,
        ConnId(1),
        Frame::TcpConnect {
            txn: 3,
            target: "alice".into(),
        },
    );
    let (sent, _, _) = drain(&mut r);
    assert!(matches!(
        sent[0].1,
        Frame::Error {
            txn: 2,
            code: ErrorCode::UnknownPeer,
            ..
        }
    ));
    assert!(matches!(
        sent[1].1,
        Frame::Error {
            txn: 3,
            code: ErrorCode::SelfConnect,
            ..
        }
    ));
}

#[test]
fn registration_ends_with_its_control_connection() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 1);
    register(&mut r, now, ConnId(1), "192.0.2.1:1000", "alice", 1);
    assert_eq!(r.peer_count(), 1);
    r.handle_close(ConnId(1));
    assert_eq!(r.peer_count(), 0);
    assert_eq!(r.connection_count(), 0);
}

#[test]
fn a_session_ends_with_its_targets_control_connection() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 3);
    let (a_main, b_main) = (ConnId(1), ConnId(2));
    register(&mut r, now, a_main, "198.51.100.2:40000", "alice", 1);
    register(&mut r, now, b_main, "198.51.100.6:40001", "bob", 2);
    let session = connect(&mut r, now, a_main, 9, "bob");
    // Alice's relay join waits in the session; then bob's control connection goes away.
    let a_relay = ConnId(3);
    r.handle_open(now, a_relay, Listener::Main, addr("198.51.100.2:43000"));
    r.handle_frame(now, a_relay, Frame::TcpRelayJoin { session });
    r.handle_close(b_main);
    let (sent, closed, _) = drain(&mut r);
    assert_eq!(r.session_count(), 0, "the session ended");
    assert!(
        sent.iter().any(|(c, f)| *c == a_main
            && matches!(f, Frame::Error { txn: 9, reason, .. } if reason.contains("bob"))),
        "alice hears bob left: {sent:?}"
    );
    assert_eq!(
        closed,
        vec![a_relay],
        "alice's waiting relay join is closed"
    );
    // Nothing is sent to bob's closed connection afterwards.
    r.handle_frame(now, a_main, Frame::TcpRelay { session });
    let (sent, _, _) = drain(&mut r);
    assert!(sent.iter().all(|(c, _)| *c != b_main), "{sent:?}");
}
