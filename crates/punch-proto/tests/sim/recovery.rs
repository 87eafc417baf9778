//! Recovery scenarios on the simulated network: two hosts stream numbered messages both
//! ways (one every 50 ms) while a fault strikes, and the run measures how long the streams
//! stood still and when a direct path was back for good. At the end, what each side last
//! told its application of the other's path must be where its datagrams go.
//!
//! Owns the scenario's setup and its measurements; the faults are [`super::faults`]'s
//! and the streams [`super::stream`]'s.

use std::time::Duration;

use punch_proto::client::{Event, PathKind, Route};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::stream::spread;
use super::{HostConfig, HostId, NatType, Sim, SiteConfig, SiteId};

/// Gap between the messages of each stream.
pub const GAP: Duration = Duration::from_millis(50);
/// The fault strikes at about this virtual time (plus up to a second, by seed).
pub const FAULT_AT: Duration = Duration::from_secs(20);
/// Messages must flow again this soon after the fault (the goal).
pub const FLOW_BOUND: Duration = Duration::from_secs(5);
/// A direct path must be back this soon after the fault, where one can exist.
pub const DIRECT_BOUND: Duration = Duration::from_secs(15);
/// Seeds per scenario.
pub const SEEDS: u64 = 10;

/// A pair of hosts streaming to each other: a on site `sa`, b on site `sb`.
pub struct Streaming {
    pub sim: Sim,
    pub a: HostId,
    pub b: HostId,
    pub sa: SiteId,
    pub sb: SiteId,
    /// When the fault is to strike.
    pub fault_at: Duration,
    /// When the streams stop.
    pub until: Duration,
}

/// The recovery tests' usual pair: two port-restricted cones streaming for 50 s.
pub fn port_restricted_pair(seed: u64) -> Streaming {
    streaming_pair(
        seed,
        NatType::PortRestricted,
        NatType::PortRestricted,
        Duration::from_secs(50),
    )
}

/// Two sites of `na` and `nb` with random small latencies and some jitter, a host on
/// each; b asks for a at 1 s; both stream from 2 s until `until`.
pub fn streaming_pair(seed: u64, na: NatType, nb: NatType, until: Duration) -> Streaming {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
    let mut site = |nat| SiteConfig {
        wan_latency: Duration::from_micros(rng.random_range(1_000..=15_000)),
        lan_latency: Duration::from_micros(rng.random_range(100..=1_000)),
        wan_jitter: Duration::from_millis(2),
        ..SiteConfig::new(nat)
    };
    let (ca, cb) = (site(na), site(nb));
    let mut sim = Sim::new(seed);
    let sa = sim.add_site(ca);
    let sb = sim.add_site(cb);
    let a = sim.add_host(sa, 5000, HostConfig::new("a"));
    let b = sim.add_host(sb, 5000, HostConfig::new("b"));
    sim.run_until(Duration::from_secs(1));
    sim.connect(b, "a");
    let offset = Duration::from_micros(rng.random_range(0..50_000));
    sim.stream(a, b, GAP, Duration::from_secs(2), until);
    sim.stream(b, a, GAP, Duration::from_secs(2) + offset, until);
    let fault_at = FAULT_AT + Duration::from_micros(rng.random_range(0..1_000_000));
    Streaming {
        sim,
        a,
        b,
        sa,
        sb,
        fault_at,
        until,
    }
}

/// What one run measured after the fault at `since`.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// The longest a message waited for delivery after the fault, either way.
    pub stall: Duration,
    /// When the direct path was back for good, both ways (`None`: it never was).
    pub direct: Option<Duration>,
}

impl Streaming {
    /// Run to the end (and a little past, for the last deliveries), then check both
    /// streams arrived whole and measure from `since`.
    pub fn finish(mut self, since: Duration) -> Result<(Recovery, Sim), String> {
        self.sim.run_until(self.until + Duration::from_secs(10));
        let (ab, ba) = (self.sim.flow(self.a, self.b), self.sim.flow(self.b, self.a));
        ab.check_complete().map_err(|e| format!("a -> b: {e}"))?;
        ba.check_complete().map_err(|e| format!("b -> a: {e}"))?;
        told_where_it_goes(&self.sim, self.a, self.b).map_err(|e| format!("a: {e}"))?;
        told_where_it_goes(&self.sim, self.b, self.a).map_err(|e| format!("b: {e}"))?;
        let stall = ab.stall_after(since).max(ba.stall_after(since));
        let direct = match (ab.direct_from(since), ba.direct_from(since)) {
            (Some(x), Some(y)) => Some(x.max(y).saturating_sub(since)),
            _ => None,
        };
        Ok((Recovery { stall, direct }, self.sim))
    }
}

/// Whether the last path `h` reported to its application for `peer` is its route now
/// (kind and address; a host with no route yet is not judged).
fn told_where_it_goes(sim: &Sim, h: HostId, peer: HostId) -> Result<(), String> {
    let key = sim.key(peer);
    let host = sim.host(h);
    let told = host.events.iter().rev().find_map(|(_, ev)| match ev {
        Event::PathChanged { peer, path, .. } if *peer == key => {
            Some(path.map(|p| (p.kind, p.remote)))
        }
        _ => None,
    });
    let route = match host.route(&key) {
        Route::Direct(to) => (PathKind::Direct, to),
        Route::Relay { server, .. } => (PathKind::Relay, server),
        Route::None => return Ok(()),
    };
    match told {
        // Nothing reported since the connection came up: the path it came up on holds.
        None => Ok(()),
        Some(told) if told == Some(route) => Ok(()),
        Some(told) => Err(format!("last told {told:?}, but the route is {route:?}")),
    }
}

/// Check a scenario's runs against the bounds (`direct`: a direct path must come back)
/// and print its line.
pub fn report(name: &str, runs: &[Recovery], direct: bool) {
    let stalls: Vec<Duration> = runs.iter().map(|r| r.stall).collect();
    let directs: Vec<Duration> = runs.iter().filter_map(|r| r.direct).collect();
    println!(
        "{name:<56} {} runs: flowing again {}; direct again {}",
        runs.len(),
        spread(stalls),
        spread(directs)
    );
    for (i, r) in runs.iter().enumerate() {
        assert!(r.stall <= FLOW_BOUND, "{name}: run {i} stood still {r:?}");
        if direct {
            assert!(
                r.direct.is_some_and(|d| d <= DIRECT_BOUND),
                "{name}: run {i} had no direct path within {DIRECT_BOUND:?}: {r:?}"
            );
        }
    }
}
