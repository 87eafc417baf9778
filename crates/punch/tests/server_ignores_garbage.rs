//! The server never answers garbage and survives it: random bytes, truncated frames,
//! frames of another version or with trailing bytes, over-long datagrams, frames that
//! break a bound (over-long names, too many addresses: hand-encoded, since the encoder
//! refuses them), and STUN that is not a valid binding request (bad FINGERPRINT, bad
//! length, responses, indications, other methods). After each batch it still answers
//! `<Hi!>`, and at the end it still registers a peer. (Relay datagrams are a protocol of
//! their own, refused with an answer, so the random ones that parse as relay are left out.)
//!
//! "No answer" is proven without waiting: datagrams from one socket to another on
//! loopback arrive in order, so if the first answer after a batch is the one to the
//! `<Hi!>` sent last, nothing in the batch was answered.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::server::{ServerConfig, ServerHandle};
use punch_proto::stun::{self, Class, Message, Method, TransactionId};
use punch_proto::wire::{
    decode_relay, Frame, WireError, FRAME_TAG, MAX_NAME_LEN, RELAY_TAG, WIRE_VERSION,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Datagrams per batch: small enough that a batch fits the server's receive buffer.
const BATCH: usize = 16;

fn register(name: &str, private: Vec<SocketAddr>) -> Frame {
    Frame::Register {
        txn: 1,
        name: name.to_string(),
        key: [7; 32],
        private,
        nat: None,
        nonce: [0; 16],
        sig: punch_proto::auth::Signature::empty(),
    }
}

/// A Register whose name is one byte too long, encoded by hand.
fn register_with_long_name() -> Vec<u8> {
    let valid = register(&"x".repeat(MAX_NAME_LEN), vec![])
        .encode()
        .unwrap();
    // Postcard layout: tag, version, variant 0, txn varint (1), name length varint (64),
    // the name, the 32 key bytes, the address count (0).
    assert_eq!(
        valid[..5],
        [FRAME_TAG, WIRE_VERSION, 0, 1, MAX_NAME_LEN as u8]
    );
    let mut long = valid[..4].to_vec();
    long.push(MAX_NAME_LEN as u8 + 1); // still a one-byte varint
    long.extend(std::iter::repeat_n(b'x', MAX_NAME_LEN + 1));
    long.extend_from_slice(&valid[5 + MAX_NAME_LEN..]);
    assert!(matches!(Frame::decode(&long), Err(WireError::Bounds(_))));
    long
}

/// A Connect whose target is one byte too long, encoded by hand.
fn connect_with_long_name() -> Vec<u8> {
    let valid = Frame::Connect {
        txn: 1,
        target: "y".repeat(MAX_NAME_LEN),
    }
    .encode()
    .unwrap();
    assert_eq!(
        valid[..5],
        [FRAME_TAG, WIRE_VERSION, 2, 1, MAX_NAME_LEN as u8]
    );
    assert_eq!(valid.len(), 5 + MAX_NAME_LEN);
    let mut long = valid[..4].to_vec();
    long.push(MAX_NAME_LEN as u8 + 1);
    long.extend(std::iter::repeat_n(b'y', MAX_NAME_LEN + 1));
    assert!(matches!(Frame::decode(&long), Err(WireError::Bounds(_))));
    long
}

/// A Register with one private address more than allowed, encoded by hand.
fn register_with_too_many_addresses() -> Vec<u8> {
    let a: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let max = punch_proto::wire::MAX_PRIVATE_ADDRS;
    let full = register("alice", vec![a; max]).encode().unwrap();
    let one_less = register("alice", vec![a; max - 1]).encode().unwrap();
    let addr_len = full.len() - one_less.len();
    // After the list: the NAT type (None: one byte), the nonce (16) and the signature (64).
    let tail = 1 + 16 + 64;
    let count_at = full.len() - tail - max * addr_len - 1;
    assert_eq!(
        usize::from(full[count_at]),
        max,
        "address count before the list"
    );
    let one_addr = &full[count_at + 1..count_at + 1 + addr_len];
    let mut long = full[..count_at].to_vec();
    long.push(max as u8 + 1);
    for _ in 0..=max {
        long.extend_from_slice(one_addr);
    }
    long.extend_from_slice(&full[full.len() - tail..]);
    assert!(matches!(Frame::decode(&long), Err(WireError::Bounds(_))));
    long
}

/// True for datagrams a server may answer: `<Hi!>`, valid frames, valid STUN, and relay
/// datagrams (a relay datagram for an unknown session is refused with a `RelayClosed`).
fn is_answerable(d: &[u8]) -> bool {
    let hi = d.strip_suffix(b"\n").unwrap_or(d);
    let hi = hi.strip_suffix(b"\r").unwrap_or(hi);
    hi == b"<Hi!>"
        || Frame::decode(d).is_ok()
        || Message::decode(d).is_ok()
        || decode_relay(d).is_some()
}

fn garbage() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![FRAME_TAG],
        vec![FRAME_TAG, WIRE_VERSION],
    ];
    let mut rng = StdRng::seed_from_u64(0x6a7b);
    for i in 0..160 {
        let len = match i % 4 {
            0 => rng.random_range(1..24),
            1 => rng.random_range(20..200),
            2 => rng.random_range(200..1500),
            _ => rng.random_range(1..64),
        };
        let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        match i % 5 {
            0 => d[0] = FRAME_TAG, // looks like a frame
            1 if d.len() > 1 => {
                d[0] = FRAME_TAG;
                d[1] = WIRE_VERSION;
            }
            2 => d[0] &= 0x03, // looks like STUN
            _ => {}
        }
        out.push(d);
    }
    // Valid frames, truncated at every length.
    let reg = register("alice", vec!["10.0.0.2:5000".parse().unwrap()])
        .encode()
        .unwrap();
    out.extend((0..reg.len()).map(|n| reg[..n].to_vec()));
    let con = Frame::Connect {
        txn: 9,
        target: "bob".into(),
    }
    .encode()
    .unwrap();
    out.extend((0..con.len()).map(|n| con[..n].to_vec()));
    // Other versions, another tag, trailing bytes.
    for v in [0, WIRE_VERSION + 1, 0xff] {
        let mut d = reg.clone();
        d[1] = v;
        out.push(d);
    }
    let mut d = reg.clone();
    d[0] = 0x3f; // in punch's own range, but no protocol's tag
    assert!(d[0] != FRAME_TAG && d[0] != RELAY_TAG);
    out.push(d);
    let mut d = reg.clone();
    d.push(0);
    out.push(d);
    // Longer than any frame may be (and longer than the server's buffer).
    for len in [1201, 2047, 4000] {
        let mut d = reg.clone();
        d.resize(len, 0);
        out.push(d);
    }
    // Bounds only a hand encoder can break.
    out.push(register_with_long_name());
    out.push(connect_with_long_name());
    out.push(register_with_too_many_addresses());
    // STUN that must not be answered.
    let mut req = Message::binding_request(TransactionId::random(&mut rng));
    req.fingerprint = true;
    let good = req.encode().unwrap();
    let mut bad_fp = good.clone();
    *bad_fp.last_mut().unwrap() ^= 0x01;
    assert!(matches!(
        Message::decode(&bad_fp),
        Err(stun::StunError::FingerprintMismatch { .. })
    ));
    out.push(bad_fp);
    let mut bad_len = good.clone();
    bad_len[3] = bad_len[3].wrapping_add(4);
    out.push(bad_len);
    out.push(good[..stun::HEADER_LEN - 1].to_vec());
    out.push(good[..good.len() - 4].to_vec());
    for class in [
        Class::SuccessResponse,
        Class::ErrorResponse,
        Class::Indication,
    ] {
        let m = Message::new(class, Method::BINDING, TransactionId::random(&mut rng));
        out.push(m.encode().unwrap());
    }
    let other_method = Message::new(
        Class::Request,
        Method::SHARED_SECRET,
        TransactionId::random(&mut rng),
    );
    out.push(other_method.encode().unwrap());

    out.retain(|d| !is_answerable(d) || is_stun_non_binding_request(d));
    out
}

/// STUN that decodes but is not a binding request: garbage for a binding server.
fn is_stun_non_binding_request(d: &[u8]) -> bool {
    Message::decode(d).is_ok_and(|m| !(m.class == Class::Request && m.method == Method::BINDING))
}

#[tokio::test]
async fn garbage_is_never_answered_and_the_server_survives() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let addr = server.local_addr();
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let garbage = garbage();
        assert!(garbage.len() > 200, "only {} datagrams", garbage.len());
        let mut buf = vec![0u8; 2048];
        for batch in garbage.chunks(BATCH) {
            for d in batch {
                sock.send_to(d, addr).await.expect("send");
            }
            sock.send_to(b"<Hi!>", addr).await.unwrap();
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, addr);
            assert_eq!(
                &buf[..n],
                b"<HI!>",
                "the first answer after a batch must be <HI!>; a datagram of {batch:02x?} was answered"
            );
        }
        // Still a working registry: a challenge, then the signed registration is taken.
        sock.send_to(&register("alice", vec![]).encode().unwrap(), addr)
            .await
            .unwrap();
        let (n, _) = sock.recv_from(&mut buf).await.unwrap();
        let Ok(Frame::Challenge { txn: 1, nonce }) = Frame::decode(&buf[..n]) else {
            panic!("expected a challenge: {:?}", Frame::decode(&buf[..n]));
        };
        let req = punch_proto::auth::RegisterRequest {
            name: "alice".into(),
            private: vec![],
            nat: None,
            nonce,
        };
        let key = punch_proto::auth::SigningKey::from_seed(&[7; 32]);
        sock.send_to(&req.encode(1, &key).unwrap(), addr).await.unwrap();
        let (n, _) = sock.recv_from(&mut buf).await.unwrap();
        let me = sock.local_addr().unwrap();
        assert!(
            matches!(Frame::decode(&buf[..n]), Ok(Frame::Registered { txn: 1, observed, .. }) if observed == me),
            "{:?}",
            Frame::decode(&buf[..n])
        );
    })
    .await
    .expect("test timed out");
}
