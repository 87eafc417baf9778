//! Two port-restricted cones (Linux `masquerade`) and the conntrack race of design.md.
//!
//! Without the opening low-TTL round, the earlier peer's first probe reaches the later
//! peer's NAT before the later peer has sent anything, leaves a dead conntrack entry
//! there, and the later peer's own packets then leave on another public port that the
//! earlier peer's NAT filters: the pair fails in a large share of runs with skew, and
//! every failure is that race. With the opening round (the default), the same runs all
//! connect. With no skew the race never happens even without the opening round.

mod sim;

use std::time::Duration;

use punch_proto::agent::{Event, FailReason, PunchConfig};
use sim::{random_pair, run_pair, NatType, PairScenario, Tally};

const RUNS: u64 = 100;

fn scenarios(cfg: &PunchConfig) -> impl Iterator<Item = PairScenario> + '_ {
    (0..RUNS).map(move |seed| {
        random_pair(NatType::PortRestricted, NatType::PortRestricted, seed).with_config(cfg.clone())
    })
}

fn no_open_round() -> PunchConfig {
    PunchConfig {
        open_ttl: None,
        ..PunchConfig::default()
    }
}

#[test]
fn without_opening_round_the_race_bites() {
    let mut tally = Tally::new("port-restricted pair, open_ttl None");
    for sc in scenarios(&no_open_round()) {
        let out = run_pair(&sc);
        tally.add(&out);
        let ctx = format!("seed {}: {:?} {:?} {:?}", sc.seed, out.a, out.b, out.stats);
        if out.connected() {
            assert_eq!(
                out.stats.race_remaps, 0,
                "a run that connects never lost its port: {ctx}"
            );
        } else {
            // The model's race, and nothing else, is why it failed.
            assert!(
                out.stats.dead_entries > 0 && out.stats.race_remaps > 0,
                "{ctx}"
            );
            assert!(
                out.stats.black_holed > 0,
                "the peer kept probing into the dead entry: {ctx}"
            );
            for side in [&out.a, &out.b] {
                assert_eq!(
                    side.event.as_ref().map(|e| &e.0),
                    Some(&Event::Failed(FailReason::Deadline))
                );
            }
        }
    }
    println!("{tally}");
    let failures = tally.runs - tally.connected;
    assert!(
        failures >= 20,
        "the race should bite often with up to 30 ms of skew: {tally}"
    );
    assert!(tally.connected >= 20, "and not always: {tally}");
}

#[test]
fn opening_round_beats_the_race() {
    let mut tally = Tally::new("port-restricted pair, default");
    for sc in scenarios(&PunchConfig::default()) {
        let out = run_pair(&sc);
        tally.add(&out);
        assert!(out.connected(), "seed {}: {:?} {:?}", sc.seed, out.a, out.b);
        assert_eq!(out.stats.race_remaps, 0, "seed {}", sc.seed);
        // The low-TTL probes really died in the core (one per candidate per side).
        assert!(
            out.stats.ttl_expired >= 4,
            "seed {}: {:?}",
            sc.seed,
            out.stats
        );
        // No probe ever reached a NAT before its host had opened it.
        assert_eq!(
            out.stats.dead_entries, 0,
            "seed {}: {:?}",
            sc.seed, out.stats
        );
    }
    println!("{tally}");
    assert_eq!(tally.connected, RUNS as usize);
}

#[test]
fn without_skew_there_is_no_race() {
    for sc in scenarios(&no_open_round()) {
        let sc = PairScenario {
            start: (Duration::ZERO, Duration::ZERO),
            ..sc
        };
        let out = run_pair(&sc);
        assert!(out.connected(), "seed {}: {:?} {:?}", sc.seed, out.a, out.b);
        assert_eq!(out.stats.dead_entries, 0, "seed {}", sc.seed);
    }
}
