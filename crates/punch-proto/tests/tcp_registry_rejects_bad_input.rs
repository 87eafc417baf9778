//! The TCP registry never panics on what clients send and closes connections that break
//! the protocol: frames on the wrong listener or in the wrong state, unknown sessions,
//! silent connections, and a full connection table.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use punch_proto::auth::Signature;
use punch_proto::tcp::framing::{encode_framed, FrameReader};
use punch_proto::tcp::registry::{
    Action, ConnId, Listener, TcpRegistry, TcpRegistryConfig, FIRST_FRAME_TIMEOUT,
};
use punch_proto::wire::Frame;

fn addr() -> SocketAddr {
    "192.0.2.1:1000".parse().unwrap()
}

fn closes(r: &mut TcpRegistry) -> Vec<ConnId> {
    let mut out = Vec::new();
    while let Some(a) = r.poll_action() {
        if let Action::Close(c) = a {
            out.push(c);
        }
    }
    out
}

#[test]
fn wrong_listener_wrong_state_and_unknown_sessions_close() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 1);
    // Register on the assist port.
    r.handle_open(now, ConnId(1), Listener::Assist, addr());
    r.handle_frame(
        now,
        ConnId(1),
        Frame::Register {
            txn: 1,
            name: "a".into(),
            key: [0; 32],
            private: vec![],
            nat: None,
            nonce: [0; 16],
            sig: Signature::empty(),
        },
    );
    // Connect before registering.
    r.handle_open(now, ConnId(2), Listener::Main, addr());
    r.handle_frame(
        now,
        ConnId(2),
        Frame::TcpConnect {
            txn: 1,
            target: "b".into(),
        },
    );
    // Assist for a session that does not exist.
    r.handle_open(now, ConnId(3), Listener::Assist, addr());
    r.handle_frame(
        now,
        ConnId(3),
        Frame::TcpAssist {
            session: 42,
            private: vec![],
        },
    );
    // Relay join for a session that does not exist.
    r.handle_open(now, ConnId(4), Listener::Main, addr());
    r.handle_frame(now, ConnId(4), Frame::TcpRelayJoin { session: 42 });
    assert_eq!(
        closes(&mut r),
        vec![ConnId(1), ConnId(2), ConnId(3), ConnId(4)]
    );
}

#[test]
fn silent_connections_are_closed_and_tables_are_bounded() {
    let now = Instant::now();
    let cfg = TcpRegistryConfig {
        max_connections: 2,
        ..TcpRegistryConfig::default()
    };
    let mut r = TcpRegistry::new(cfg, 1);
    assert!(r.handle_open(now, ConnId(1), Listener::Main, addr()));
    assert!(r.handle_open(now, ConnId(2), Listener::Main, addr()));
    assert!(!r.handle_open(now, ConnId(3), Listener::Main, addr()));
    assert_eq!(closes(&mut r), vec![ConnId(3)]);
    assert_eq!(r.poll_timeout(), Some(now + FIRST_FRAME_TIMEOUT));
    r.handle_timeout(now + FIRST_FRAME_TIMEOUT + Duration::from_millis(1));
    let mut c = closes(&mut r);
    c.sort();
    assert_eq!(c, vec![ConnId(1), ConnId(2)]);
}

proptest! {
    /// Arbitrary bytes on a stream: the reader yields frames or an error, never panics, and
    /// every frame it yields fed to the registry on either listener never panics either.
    #[test]
    fn arbitrary_stream_bytes_never_panic(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..300), 0..8), assist in any::<bool>()) {
        let now = Instant::now();
        let mut r = TcpRegistry::new(TcpRegistryConfig::default(), 3);
        let listener = if assist { Listener::Assist } else { Listener::Main };
        r.handle_open(now, ConnId(1), listener, addr());
        let mut rd = FrameReader::new();
        'outer: for c in chunks {
            rd.push(&c);
            loop {
                match rd.next_frame() {
                    Ok(Some(f)) => r.handle_frame(now, ConnId(1), f),
                    Ok(None) => break,
                    Err(_) => { r.handle_bad_stream(ConnId(1)); break 'outer; }
                }
            }
        }
        r.handle_timeout(now + Duration::from_secs(3600));
        while r.poll_action().is_some() {}
    }

    /// Framing round trip for the TCP frames, split at any point.
    #[test]
    fn framing_round_trips(session in any::<u64>(), split in 0usize..40) {
        let frames = [Frame::TcpReady { session }, Frame::TcpRelayJoin { session },
            Frame::TcpAssist { session, private: vec![addr()] }];
        let mut bytes = Vec::new();
        for f in &frames { bytes.extend(encode_framed(f).unwrap()); }
        let split = split.min(bytes.len());
        let mut rd = FrameReader::new();
        rd.push(&bytes[..split]);
        let mut got = Vec::new();
        while let Some(f) = rd.next_frame().unwrap() { got.push(f); }
        rd.push(&bytes[split..]);
        while let Some(f) = rd.next_frame().unwrap() { got.push(f); }
        prop_assert_eq!(got, frames.to_vec());
    }
}
