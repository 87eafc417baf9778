//! Discovery ignores whatever is not an answer to one of its own tests: garbage, answers
//! with unknown transaction ids, answers arriving on the wrong socket; arbitrary datagrams
//! never make it panic and it still ends in bounded time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use punch_proto::nat::{Classic, Discovery, DiscoveryConfig, LocalSocket, Transmit};
use punch_proto::stun::{Attribute, ErrorCode, Message, TransactionId};

const SERVER: &str = "203.0.113.1:3478";

fn start(now: Instant) -> (Discovery, Vec<Transmit>) {
    let cfg = DiscoveryConfig::new(
        "192.168.1.10:40000".parse().unwrap(),
        "192.168.1.10:40001".parse().unwrap(),
    );
    let mut d = Discovery::new(cfg, SERVER.parse().unwrap(), now, 7);
    let sent = std::iter::from_fn(|| d.poll_transmit()).collect();
    (d, sent)
}

fn answer(req: &[u8], mapped: SocketAddr) -> Vec<u8> {
    let req = Message::decode(req).unwrap();
    let mut resp = Message::binding_success(&req, mapped);
    resp.attributes
        .push(Attribute::OtherAddress("203.0.113.2:3479".parse().unwrap()));
    resp.encode().unwrap()
}

/// Runs the clock until the end, feeding nothing more.
fn finish(d: &mut Discovery, mut now: Instant) -> Duration {
    let start = now;
    while let Some(t) = d.poll_timeout() {
        now = now.max(t);
        d.handle_timeout(now);
        while d.poll_transmit().is_some() {}
    }
    now - start
}

#[test]
fn answers_on_the_wrong_socket_or_with_other_ids_are_ignored() {
    let now = Instant::now();
    let (mut d, sent) = start(now);
    assert_eq!(sent.len(), 1, "the Filtering socket's test I is paced");
    let server: SocketAddr = SERVER.parse().unwrap();
    let mapped: SocketAddr = "198.51.100.1:40000".parse().unwrap();
    let good = answer(&sent[0].payload, mapped);
    // Wrong socket.
    d.handle_datagram(now, LocalSocket::Filtering, server, &good);
    // Unknown transaction.
    let stranger = Message::binding_success(
        &Message::binding_request(TransactionId::new([1; 12])),
        mapped,
    );
    d.handle_datagram(
        now,
        LocalSocket::Mapping,
        server,
        &stranger.encode().unwrap(),
    );
    d.handle_datagram(now, LocalSocket::Mapping, server, b"not stun at all");
    assert!(d.observations().all(|o| o.mapped.is_none()));
    finish(&mut d, now);
    let r = d.result().unwrap();
    assert_eq!(r.classic, Some(Classic::Blocked));
    assert_eq!(d.poll_timeout(), None);
    assert!(d.poll_transmit().is_none());
}

#[test]
fn alg_rewriting_mapped_address_is_noted() {
    let now = Instant::now();
    let (mut d, sent) = start(now);
    let req = Message::decode(&sent[0].payload).unwrap();
    let mut resp = Message::binding_success(&req, "198.51.100.1:40000".parse().unwrap());
    resp.attributes.push(Attribute::MappedAddress(
        "192.168.1.10:40000".parse().unwrap(),
    ));
    d.handle_datagram(
        now,
        LocalSocket::Mapping,
        SERVER.parse().unwrap(),
        &resp.encode().unwrap(),
    );
    finish(&mut d, now);
    let r = d.result().unwrap();
    assert!(r.notes.iter().any(|n| n.contains("ALG")), "{:?}", r.notes);
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(
        inputs in proptest::collection::vec(
            (0u64..3000, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..120)),
            0..40,
        ),
    ) {
        let t0 = Instant::now();
        let (mut d, _) = start(t0);
        let mut inputs = inputs;
        inputs.sort_by_key(|i| i.0);
        for (ms, mapping, data) in inputs {
            let now = t0 + Duration::from_millis(ms);
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
            }
            let socket = if mapping { LocalSocket::Mapping } else { LocalSocket::Filtering };
            d.handle_datagram(now, socket, SERVER.parse().unwrap(), &data);
            while d.poll_transmit().is_some() {}
        }
        finish(&mut d, t0 + Duration::from_secs(3));
        prop_assert!(d.result().is_some());
    }
}

#[test]
fn error_answers_make_the_server_reachable_but_decide_nothing() {
    let now = Instant::now();
    let (mut d, mut sent) = start(now);
    // Let the Filtering socket's paced test I go out too.
    let later = now + Duration::from_millis(30);
    d.handle_timeout(later);
    sent.extend(std::iter::from_fn(|| d.poll_transmit()));
    assert_eq!(sent.len(), 2);
    for t in &sent {
        let req = Message::decode(&t.payload).unwrap();
        let err = Message::error_response(&req, ErrorCode::new(401, "Unauthenticated").unwrap());
        d.handle_datagram(
            later,
            t.socket,
            SERVER.parse().unwrap(),
            &err.encode().unwrap(),
        );
    }
    let r = d.result().expect("nothing left to test");
    assert_eq!(r.classic, None);
    assert_eq!(r.public, None);
    assert!(
        r.notes.iter().any(|n| n.contains("error 401")),
        "{:?}",
        r.notes
    );
}
