//! Over TCP, registrations and introduction requests are limited per source IP address
//! too; a request over the limit is answered `Busy` (a TCP peer cannot spoof its address,
//! so the answer reaches only the one asking) and counted, and other addresses are served.
//! (Every registration here is a client's first, unsigned one: under the limit it is
//! answered with a challenge.)

use std::net::SocketAddr;
use std::time::Instant;

use punch_proto::auth::Signature;
use punch_proto::ratelimit::RateLimit;
use punch_proto::tcp::registry::{ConnId, Listener, TcpRegistry, TcpRegistryConfig};
use punch_proto::wire::{ErrorCode, Frame};

mod tcp_common;
use tcp_common::answers;

fn register(r: &mut TcpRegistry, now: Instant, id: u64, from: SocketAddr) {
    r.handle_open(now, ConnId(id), Listener::Main, from);
    r.handle_frame(
        now,
        ConnId(id),
        Frame::Register {
            txn: id,
            name: format!("p{id}"),
            key: [id as u8; 32],
            private: vec![],
            nat: None,
            nonce: [0; 16],
            sig: Signature::empty(),
        },
    );
}

#[test]
fn one_address_past_its_burst_is_told_busy() {
    let now = Instant::now();
    let mut r = TcpRegistry::new(
        TcpRegistryConfig {
            register_limit: RateLimit::new(1.0, 3.0),
            ..TcpRegistryConfig::default()
        },
        7,
    );
    let busy_host: SocketAddr = "198.51.100.9:1000".parse().unwrap();
    for id in 1..=5 {
        let from = SocketAddr::new(busy_host.ip(), 1000 + id as u16);
        register(&mut r, now, id, from);
    }
    let got = answers(&mut r);
    let registered = got
        .iter()
        .filter(|f| matches!(f, Frame::Challenge { .. }))
        .count();
    let busy = got
        .iter()
        .filter(|f| {
            matches!(
                f,
                Frame::Error {
                    code: ErrorCode::Busy,
                    ..
                }
            )
        })
        .count();
    assert_eq!((registered, busy), (3, 2), "{got:?}");
    assert_eq!(r.stats().rate_limited, 2);
    assert_eq!(r.stats().errors.get(ErrorCode::Busy), 2, "counted per code");
    // Another address is served.
    register(&mut r, now, 9, "198.51.100.10:1000".parse().unwrap());
    assert!(matches!(answers(&mut r)[..], [Frame::Challenge { .. }]));
}
