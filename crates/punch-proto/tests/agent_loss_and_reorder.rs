//! 20% loss on every WAN crossing (each way) and up to 25 ms of jitter, which reorders
//! packets: every pair with a direct path still connects in every run, on a path that
//! carries data, well before the deadline. Probes are repeated and every probe has its
//! own sequence number, so a late or reordered ack can neither stall nor confuse a side.
//! The loss also hits the rendezvous ready signal (`PeerReady`, sent once), so some runs
//! exercise the fallback start of full probes. LAN hops stay lossless here: a lost
//! opening probe is `agent_lost_opening_probe.rs`.

mod sim;

use std::time::Duration;

use punch_proto::agent::PunchConfig;
use sim::{direct_path_exists, random_pair, run_pair, NatType, PairScenario, Tally, Topology};

const RUNS: u64 = 20;
const LOSS: f64 = 0.2;
const JITTER: Duration = Duration::from_millis(25);

fn lossy(a: NatType, b: NatType, seed: u64) -> PairScenario {
    let mut sc = random_pair(a, b, seed);
    if let Topology::TwoSites(sa, sb) = &mut sc.topology {
        for s in [sa, sb] {
            s.wan_loss = LOSS;
            s.wan_jitter = JITTER;
            s.lan_jitter = Duration::from_micros(500);
        }
    }
    sc
}

#[test]
fn direct_pairs_connect_through_loss_and_reordering() {
    let (mut lost, mut reordered) = (0, 0);
    let mut slowest = Duration::ZERO;
    for (i, &a) in NatType::ALL.iter().enumerate() {
        for &b in &NatType::ALL[i..] {
            if !direct_path_exists(a, b) {
                continue;
            }
            let mut tally = Tally::new(format!("{} <-> {} lossy", a.name(), b.name()));
            for seed in 0..RUNS {
                let out = run_pair(&lossy(a, b, seed));
                tally.add(&out);
                assert!(
                    out.connected(),
                    "{} <-> {} seed {seed}: {:?} {:?} {:?}",
                    a.name(),
                    b.name(),
                    out.a,
                    out.b,
                    out.stats
                );
                lost += out.stats.lost;
                reordered += out.stats.reordered;
            }
            println!("{tally}");
            slowest = slowest.max(tally.times.iter().copied().max().unwrap_or_default());
        }
    }
    println!("lost {lost}, reordered {reordered}, slowest {slowest:?}");
    // The conditions were really there.
    assert!(lost > 200, "lost {lost}");
    assert!(reordered > 20, "reordered {reordered}");
    // A probe round trip crosses four lossy links and succeeds 41% of the time: a few
    // rounds suffice, well before the deadline.
    let deadline = PunchConfig::default().deadline;
    assert!(slowest < deadline / 2, "slowest {slowest:?}");
}
