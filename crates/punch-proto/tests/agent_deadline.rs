//! The deadline: an agent nobody answers reports `Failed(Deadline)` exactly at
//! `started + deadline`, once, then sends nothing more and asks for no further timer;
//! on the simulated network an impossible pair fails at each side's own deadline.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, Event, FailReason, PunchConfig};
use sim::{agent_events, drain_agent, run_pair, NatType, PairScenario, SiteConfig, Topology};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

#[test]
fn fails_exactly_at_the_deadline() {
    let deadline = Duration::from_millis(2_345);
    let cfg = PunchConfig {
        deadline,
        ..PunchConfig::default()
    };
    let t0 = Instant::now();
    let candidates = [
        (addr("10.9.0.2:5000"), CandidateKind::Host),
        (addr("203.0.113.99:5000"), CandidateKind::ServerReflexive),
    ];
    let mut agent = Agent::new(cfg, 7, candidates, t0);
    let mut rounds = 0;
    let mut failed_at = None;
    let mut wakes = 0;
    while let Some(t) = agent.poll_timeout() {
        wakes += 1;
        assert!(wakes < 1_000, "the agent keeps asking to wake");
        assert!(
            t >= t0 && t <= t0 + deadline,
            "timer {:?} past the deadline",
            t - t0
        );
        agent.handle_timeout(t);
        let sent = drain_agent(&mut agent);
        let events = agent_events(&mut agent);
        if t < t0 + deadline {
            assert!(events.is_empty(), "{events:?} at {:?}", t - t0);
            rounds += usize::from(!sent.is_empty());
        } else {
            assert_eq!(events, vec![Event::Failed(FailReason::Deadline)]);
            assert!(sent.is_empty(), "no probe at the deadline itself: {sent:?}");
            failed_at = Some(t - t0);
        }
    }
    assert_eq!(failed_at, Some(deadline));
    assert!(agent.is_done());
    assert!(rounds >= 3, "it probed until then ({rounds} rounds)");
    // Later calls change nothing.
    agent.handle_timeout(t0 + deadline * 2);
    assert_eq!(agent.poll_timeout(), None);
    assert!(agent_events(&mut agent).is_empty());
    assert!(drain_agent(&mut agent)
        .iter()
        .all(|s| s.probe_seq().is_none()));
}

#[test]
fn a_late_timer_call_still_fails_once() {
    // The caller may wake late (a busy runtime): one call far past the deadline fails
    // the session at once, without a burst of overdue probe rounds first.
    let t0 = Instant::now();
    let mut agent = Agent::new(
        PunchConfig::default(),
        7,
        [(addr("203.0.113.99:5000"), CandidateKind::ServerReflexive)],
        t0,
    );
    drain_agent(&mut agent);
    agent.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(
        agent_events(&mut agent),
        vec![Event::Failed(FailReason::Deadline)]
    );
    assert!(drain_agent(&mut agent).is_empty());
    assert_eq!(agent.poll_timeout(), None);
}

#[test]
fn impossible_pair_fails_at_each_sides_deadline() {
    let deadline = Duration::from_secs(3);
    let cfg = PunchConfig {
        deadline,
        ..PunchConfig::default()
    };
    for seed in 0..10 {
        let topology = Topology::TwoSites(
            SiteConfig::new(NatType::Symmetric),
            SiteConfig::new(NatType::PortRestricted),
        );
        let sc = PairScenario {
            start: (Duration::from_millis(seed), Duration::ZERO),
            ..PairScenario::new(topology, seed).with_config(cfg.clone())
        };
        let out = run_pair(&sc);
        for side in [&out.a, &out.b] {
            let (event, at) = side.event.clone().expect("reported");
            assert_eq!(event, Event::Failed(FailReason::Deadline), "seed {seed}");
            assert_eq!(at, side.started + deadline, "seed {seed}");
            assert_eq!(side.events, 1);
        }
    }
}
