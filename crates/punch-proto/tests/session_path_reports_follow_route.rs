//! The client session in virtual time: what it tells the application about a peer's path
//! agrees with the route it gives the driver. From the moment a connection is handed out
//! (its path is the route's then), every change of the route's kind comes with a
//! `PathChanged` of that kind in the same batch of events, so the path in the
//! application's `connected` line followed by its `path` lines ends on the route's path;
//! in particular a working direct path never moves back to the relay unannounced.
//!
//! The scenarios cover the order of the lab flake in `lab_relay_upgrade_to_direct`
//! (the connection up on the relay a moment before the direct path is chosen, both ways
//! round), a second introduction of the pair (both sides asking for each other), and a
//! relay session closed under a connection (the server restarted) before a new
//! introduction puts the pair back on the relay.

mod sim;

use std::time::Duration;

use punch_proto::client::{Event, PathKind, PathReason};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sim::{HostConfig, HostId, NatType, Sim, SiteConfig};

/// What one run showed about host `h`'s paths toward its peer.
#[derive(Debug, Default)]
struct Seen {
    /// The connection was handed out while the route was the relay, and the direct path
    /// came later.
    up_on_relay_first: bool,
    /// The direct path was the route before the connection was handed out.
    direct_before_up: bool,
    /// The application saw a direct path last.
    ended_direct: bool,
}

/// Check host `h`'s events: after the connection is handed out (`ConnectDone` or
/// `Incoming`), at the end of every batch of events (one input to the session), the
/// path kind the application was last told equals the route's.
fn check(sim: &Sim, h: HostId, label: &str) -> Seen {
    let events = &sim.host(h).events;
    let mut seen = Seen::default();
    let mut route: Option<PathKind> = None;
    // The path the application was last told: `None` until the connection is up.
    let mut told: Option<Option<PathKind>> = None;
    for (i, (at, ev)) in events.iter().enumerate() {
        match ev {
            Event::Route { path, .. } => {
                route = path.map(|p| p.kind);
                if told.is_none() && route == Some(PathKind::Direct) {
                    seen.direct_before_up = true;
                }
                if told == Some(Some(PathKind::Relay)) && route == Some(PathKind::Direct) {
                    seen.up_on_relay_first = true;
                }
            }
            Event::ConnectDone { result: Ok(_), .. } | Event::Incoming { .. } => {
                told.get_or_insert(route);
            }
            Event::PathChanged { path, .. } => told = Some(path.map(|p| p.kind)),
            _ => {}
        }
        let batch_ends = events.get(i + 1).is_none_or(|(next, _)| next != at);
        if let (true, Some(told)) = (batch_ends, told) {
            assert_eq!(
                told, route,
                "{label}: at {at:?} the application was last told {told:?} but the route is \
                 {route:?}; events: {events:#?}"
            );
        }
    }
    seen.ended_direct = told == Some(Some(PathKind::Direct));
    seen
}

#[test]
fn the_path_told_ends_on_the_route_whichever_comes_first() {
    let pairs = [
        (NatType::Open, NatType::Open),
        (NatType::FullCone, NatType::FullCone),
        (NatType::RestrictedCone, NatType::PortRestricted),
        (NatType::Open, NatType::Symmetric),
    ];
    let (mut relay_first, mut direct_first, mut ended_direct, mut runs) = (0, 0, 0, 0);
    for (na, nb) in pairs {
        for seed in 0..60u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sim = Sim::new(seed);
            // Lab-like sub-millisecond to few-millisecond links, so the handshake over the
            // relay and the punching race each other.
            let mut site = |nat| SiteConfig {
                wan_latency: Duration::from_micros(rng.random_range(100..=3_000)),
                lan_latency: Duration::from_micros(rng.random_range(20..=300)),
                ..SiteConfig::new(nat)
            };
            let (sa, sb) = (site(na), site(nb));
            let delay = Duration::from_micros(rng.random_range(0..=3_000));
            let both_ask = seed % 3 == 0;
            let sa = sim.add_site(sa);
            let sb = sim.add_site(sb);
            let a = sim.add_host(
                sa,
                5000,
                HostConfig {
                    server_delay: delay,
                    ..HostConfig::new("a")
                },
            );
            let b = sim.add_host(sb, 5000, HostConfig::new("b"));
            sim.run_until(Duration::from_secs(1));
            sim.connect(b, "a");
            if both_ask {
                sim.run_until(sim.now() + Duration::from_micros(rng.random_range(0..=5_000)));
                sim.connect(a, "b");
            }
            sim.run_until(Duration::from_secs(8));
            for h in [a, b] {
                let label = format!("{na:?} x {nb:?}, seed {seed}, both ask {both_ask}, host {h}");
                let seen = check(&sim, h, &label);
                runs += 1;
                relay_first += usize::from(seen.up_on_relay_first);
                direct_first += usize::from(seen.direct_before_up);
                ended_direct += usize::from(seen.ended_direct);
            }
        }
    }
    eprintln!(
        "{runs} sides: up on the relay first {relay_first}, direct before up {direct_first}, \
         ended direct {ended_direct}"
    );
    // Both orders happened, so the check above covered each.
    assert!(relay_first >= 20, "up on the relay first: {relay_first}");
    assert!(direct_first >= 20, "direct before up: {direct_first}");
    assert!(
        ended_direct >= runs / 2,
        "ended direct: {ended_direct} of {runs}"
    );
}

/// The relay closes under a connection (the server restarted and lost the session), then a
/// new introduction puts the pair back on the relay while punching is tried again: the
/// application hears the relay is back at once, not only when punching ends.
#[test]
fn the_relay_back_after_a_server_restart_is_told() {
    let pairs = [
        (NatType::Symmetric, NatType::Symmetric),
        (NatType::Symmetric, NatType::PortRestricted),
        (NatType::Symmetric, NatType::RestrictedCone),
    ];
    let (mut runs, mut runs_closed, mut told_back) = (0, 0, 0);
    for (na, nb) in pairs {
        for seed in 0..10u64 {
            let mut sim = Sim::new(seed);
            let sa = sim.add_site(SiteConfig::new(na));
            let sb = sim.add_site(SiteConfig::new(nb));
            let a = sim.add_host(sa, 5000, HostConfig::new("a"));
            let b = sim.add_host(sb, 5000, HostConfig::new("b"));
            sim.run_until(Duration::from_secs(1));
            sim.connect(b, "a");
            let (every, until) = (Duration::from_millis(200), Duration::from_secs(45));
            sim.stream(a, b, every, Duration::ZERO, until);
            sim.stream(b, a, every, Duration::ZERO, until);
            let restart = sim.fault_at(Duration::from_secs(20), |sim| sim.server_restart());
            sim.run_until(restart + Duration::from_secs(30));
            for h in [a, b] {
                let label = format!("{na:?} x {nb:?}, seed {seed}, host {h}");
                runs += 1;
                check(&sim, h, &label);
                let reasons: Vec<&PathReason> = sim
                    .host(h)
                    .events
                    .iter()
                    .filter_map(|(_, ev)| match ev {
                        Event::PathChanged { reason, .. } => Some(reason),
                        _ => None,
                    })
                    .collect();
                let closed = reasons
                    .iter()
                    .position(|r| matches!(r, PathReason::RelayClosed(_)));
                if let Some(i) = closed {
                    runs_closed += 1;
                    if reasons.get(i + 1) == Some(&&PathReason::Reintroduced) {
                        told_back += 1;
                    }
                }
            }
        }
    }
    eprintln!(
        "{runs} sides: relay closed under {runs_closed}, told the relay was back next {told_back}"
    );
    // The fault struck where it should: the relay closed under most connections, so the
    // check above saw the new introduction put them back on it.
    assert!(
        runs_closed >= runs / 2,
        "relay closed in {runs_closed} of {runs}"
    );
    assert_eq!(told_back, runs_closed);
}
