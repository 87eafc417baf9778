//! The client session in virtual time: two port-restricted cones stream to each other on
//! a direct path when both routers forget every mapping (`conntrack -F`). Each side's next
//! packets race the other's, and Linux conntrack then often gives a side a new public
//! port toward its peer. Every message arrives once and in order; the streams flow again
//! within 5 s (over the relay) and a direct path is back within 15 s (after a punching
//! attempt from the old port fails, the session moves to a fresh port).
//!
//! `cargo test -p punch-proto --test session_conntrack_flush -- --nocapture` prints the
//! figures.

mod sim;

use sim::recovery::{port_restricted_pair, report, SEEDS};

#[test]
fn flushed_routers_recover_with_every_message_in_order() {
    let mut runs = Vec::new();
    let (mut remaps, mut rebinds) = (0, 0);
    for seed in 0..SEEDS {
        let mut s = port_restricted_pair(seed);
        let (sa, sb) = (s.sa, s.sb);
        let f = s.sim.fault_at(s.fault_at, |sim| {
            assert!(sim.flush_conntrack(sa) > 0, "the router held mappings");
            sim.flush_conntrack(sb);
        });
        let (r, sim) = s.finish(f).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        remaps += sim.stats.race_remaps;
        rebinds += sim.stats.rebinds;
        runs.push(r);
    }
    report("conntrack -F on both routers, pr x pr", &runs, true);
    println!("  race remaps {remaps}, moves to a fresh port {rebinds} over {SEEDS} runs");
    assert!(
        remaps > 0,
        "the runs must include the race that moves a port, or they prove little"
    );
}
