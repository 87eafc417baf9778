//! The client session in virtual time, on a quiet network: with the relay allowed (the
//! default) a stream starts on the relay at once and moves to the punched direct path
//! without losing, doubling or reordering a message; where the NAT types leave no direct
//! path the relay carries it all; with the relay forbidden such a pair gets a clear
//! `NoPath` error at the punching deadline.

mod sim;

use std::time::Duration;

use punch_proto::agent::PunchConfig;
use punch_proto::client::{ConnectError, Event, PathKind, RelayMode};
use sim::recovery::streaming_pair;
use sim::{HostConfig, NatType, Sim, SiteConfig};

#[test]
fn the_stream_starts_on_the_relay_and_moves_to_direct() {
    let mut started_on_relay = 0;
    for seed in 0..10 {
        // Messages queued before the connection exists, so the first go out at once.
        let mut sim = Sim::new(seed);
        let site = |nat| SiteConfig {
            wan_latency: Duration::from_millis(20),
            ..SiteConfig::new(nat)
        };
        let sa = sim.add_site(site(NatType::PortRestricted));
        let sb = sim.add_site(site(NatType::RestrictedCone));
        let a = sim.add_host(sa, 5000, HostConfig::new("a"));
        let b = sim.add_host(sb, 5000, HostConfig::new("b"));
        sim.run_until(Duration::from_secs(1));
        let until = Duration::from_secs(6);
        sim.stream(
            b,
            a,
            Duration::from_millis(20),
            Duration::from_secs(1),
            until,
        );
        sim.stream(
            a,
            b,
            Duration::from_millis(20),
            Duration::from_secs(1),
            until,
        );
        sim.connect(b, "a");
        sim.run_until(until + Duration::from_secs(5));
        for (from, to) in [(a, b), (b, a)] {
            let f = sim.flow(from, to);
            f.check_complete()
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let first = f.received.first().expect("delivered");
            let last = f.received.last().expect("delivered");
            if first.via == PathKind::Relay {
                started_on_relay += 1;
            }
            assert_eq!(last.via, PathKind::Direct, "seed {seed}: ended direct");
            // Once direct, it stays direct on a quiet network.
            let k = f.received.iter().position(|r| r.via == PathKind::Direct);
            assert!(f.received[k.expect("some direct")..]
                .iter()
                .all(|r| r.via == PathKind::Direct));
        }
    }
    // The relay carries the first messages while punching is under way (20 ms each way
    // to the core: punching needs a few round trips, the relay one).
    assert!(
        started_on_relay >= 15,
        "{started_on_relay} of 20 streams started on the relay"
    );
}

#[test]
fn the_relay_carries_a_pair_with_no_direct_path() {
    for seed in 0..5 {
        let s = streaming_pair(
            seed,
            NatType::Symmetric,
            NatType::PortRestricted,
            Duration::from_secs(15),
        );
        let (a, b) = (s.a, s.b);
        let (_, sim) = s.finish(Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        let f = sim.flow(b, a);
        assert_eq!(f.relayed(), f.received.len(), "seed {seed}: all relayed");
        let failed = sim
            .host(b)
            .events
            .iter()
            .any(|(_, ev)| matches!(ev, Event::DirectFailed { .. }));
        assert!(
            failed,
            "seed {seed}: b was told punching found no direct path"
        );
    }
}

#[test]
fn without_the_relay_an_impossible_pair_fails_clearly_at_the_deadline() {
    let deadline = Duration::from_secs(3);
    let cfg = |name: &str| HostConfig {
        relay: RelayMode::Never,
        punch: PunchConfig {
            deadline,
            ..PunchConfig::default()
        },
        ..HostConfig::new(name)
    };
    let mut sim = Sim::new(7);
    let sa = sim.add_site(SiteConfig::new(NatType::Symmetric));
    let sb = sim.add_site(SiteConfig::new(NatType::Symmetric));
    let _a = sim.add_host(sa, 5000, cfg("a"));
    let b = sim.add_host(sb, 5000, cfg("b"));
    sim.run_until(Duration::from_secs(1));
    let id = sim.connect(b, "a");
    let asked = sim.now();
    sim.run_until(Duration::from_secs(10));
    let done = sim.host(b).events.iter().find_map(|(t, ev)| match ev {
        Event::ConnectDone { id: x, result } if *x == id => Some((*t, result.clone())),
        _ => None,
    });
    let (at, result) = done.expect("the request was answered");
    match result {
        Err(ConnectError::NoPath {
            deadline: d, tried, ..
        }) => {
            assert_eq!(d, deadline);
            assert!(!tried.is_empty());
        }
        other => panic!("expected NoPath, got {other:?}"),
    }
    let took = at - asked;
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(500),
        "answered after {took:?}"
    );
}
