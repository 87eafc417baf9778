//! Registrations and introduction requests are limited per source IP address (a token
//! bucket): past the burst, one address gets no answer at all (answering would cost work
//! and could hit a spoofed victim), while other addresses are served as usual, and the
//! bucket refills at the configured rate. The refusals are counted.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::ratelimit::RateLimit;
use punch_proto::rendezvous::RendezvousConfig;
use punch_proto::wire::Frame;
use support::{public, unsigned_register, Harness};

/// A first (unsigned) registration: answered with a challenge unless limited.
fn register(h: &mut Harness, host: u8, port: u16, n: u16) -> usize {
    let name = format!("p{host}-{n}");
    let frame = unsigned_register(u64::from(n), &name, [(n % 200) as u8 + 1; 32], vec![]);
    h.input(public(host, port), frame).len()
}

#[test]
fn one_source_past_its_burst_is_dropped_others_are_served() {
    let mut h = Harness::with_config(RendezvousConfig {
        register_limit: RateLimit::new(10.0, 20.0),
        connect_limit: RateLimit::new(10.0, 20.0),
        ..RendezvousConfig::default()
    });
    // 100 registrations at once from one address, many ports: the burst is answered.
    let answered: usize = (0..100).map(|n| register(&mut h, 9, 1000 + n, n)).sum();
    assert_eq!(answered, 20, "the burst of 20, then silence");
    assert_eq!(h.rv.stats().register_limited, 80);
    // Another address is not affected.
    assert_eq!(register(&mut h, 10, 1000, 500), 1);
    // Half a second later: five more (10/s).
    h.set_time(Duration::from_millis(500));
    let answered: usize = (100..120).map(|n| register(&mut h, 9, 1000 + n, n)).sum();
    assert_eq!(answered, 5);

    // Introduction requests have their own bucket.
    let from = public(10, 1000);
    let mut answered = 0;
    for txn in 0..50 {
        if !h
            .input(
                from,
                Frame::Connect {
                    txn,
                    target: "p9-0".into(),
                },
            )
            .is_empty()
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 20);
    assert_eq!(h.rv.stats().connect_limited, 30);
}
