//! Every pair of NAT types, 50 seeded runs each with random latencies and introduction
//! skew: pairs with a direct path connect in every run, both sides, on a path that
//! carries data, within a bound; the impossible pairs fail at the deadline on both sides.
//!
//! `cargo test -p punch-proto --test agent_nat_pairs -- --nocapture --test-threads=1`
//! prints the table (success rate, median and max virtual connect time, packets).

mod sim;

use std::time::Duration;

use punch_proto::agent::{Event, FailReason, PunchConfig};
use sim::{direct_path_exists, random_pair, run_pair, NatType, Tally};

const RUNS: u64 = 50;

/// Worst case for a direct pair with the default schedule and `random_pair`'s network
/// (WAN links <= 15 ms, LAN hops <= 1 ms, the server 5 ms off the core): the skew
/// (30 ms); the later side's acknowledgement relayed to the earlier side as `PeerReady`
/// (<= 42 ms); two round trips of <= 64 ms (the earlier side's first probe wakes the
/// later side, whose probe is then answered; or, with a symmetric side, learning its
/// peer-reflexive port and probing it); and the private grace (50 ms) for the unreachable
/// host candidates of another site. 250 ms, and some slack: slower means a wasted round.
const CONNECT_BOUND: Duration = Duration::from_millis(270);

/// A symmetric side introduced after its peer's `PeerReady` reached it drops that signal
/// (as `client.rs` does), and its peer's probes go to a port that never reaches it, so it
/// starts full probes only at the `open_delay` fallback (1 s). The pairs with a symmetric
/// side get that much more; `agent_symmetric_late_introduction.rs` pins the regression.
fn bound(a: NatType, b: NatType) -> Duration {
    if a == NatType::Symmetric || b == NatType::Symmetric {
        CONNECT_BOUND + PunchConfig::default().open_delay
    } else {
        CONNECT_BOUND
    }
}

fn check_pair(a: NatType, b: NatType) {
    let deadline = PunchConfig::default().deadline;
    let mut tally = Tally::new(format!("{} <-> {}", a.name(), b.name()));
    for seed in 0..RUNS {
        let out = run_pair(&random_pair(a, b, seed));
        tally.add(&out);
        let ctx = format!(
            "{} <-> {} seed {seed}: {:?} / {:?}",
            a.name(),
            b.name(),
            out.a,
            out.b
        );
        assert_eq!(
            (out.a.events, out.b.events),
            (1, 1),
            "one event per side: {ctx}"
        );
        if direct_path_exists(a, b) {
            let selected = out.a.selected().is_some() && out.b.selected().is_some();
            assert!(selected, "both select: {ctx}");
            assert!(
                out.a.path_works && out.b.path_works,
                "paths carry data: {ctx}"
            );
            let (t, max) = (out.connect_time().expect("both selected"), bound(a, b));
            assert!(t <= max, "connect time {t:?} over {max:?}: {ctx}");
        } else {
            for side in [&out.a, &out.b] {
                let (event, at) = side.event.clone().expect("reported");
                assert_eq!(event, Event::Failed(FailReason::Deadline), "{ctx}");
                assert_eq!(
                    at - side.started,
                    deadline,
                    "fails exactly at the deadline: {ctx}"
                );
            }
        }
    }
    let slow = tally.times.iter().filter(|&&t| t > CONNECT_BOUND).count();
    println!("{tally}  over {CONNECT_BOUND:?}: {slow}");
    if direct_path_exists(a, b) {
        assert_eq!(tally.connected, RUNS as usize);
    } else {
        assert_eq!(tally.connected, 0);
    }
}

macro_rules! pairs {
    ($($name:ident: $a:ident, $b:ident;)*) => {
        $(
            #[test]
            fn $name() {
                check_pair(NatType::$a, NatType::$b);
            }
        )*
    };
}

pairs! {
    open_open: Open, Open;
    open_firewall: Open, Firewall;
    open_full_cone: Open, FullCone;
    open_restricted_cone: Open, RestrictedCone;
    open_port_restricted: Open, PortRestricted;
    open_symmetric: Open, Symmetric;
    firewall_firewall: Firewall, Firewall;
    firewall_full_cone: Firewall, FullCone;
    firewall_restricted_cone: Firewall, RestrictedCone;
    firewall_port_restricted: Firewall, PortRestricted;
    firewall_symmetric: Firewall, Symmetric;
    full_cone_full_cone: FullCone, FullCone;
    full_cone_restricted_cone: FullCone, RestrictedCone;
    full_cone_port_restricted: FullCone, PortRestricted;
    full_cone_symmetric: FullCone, Symmetric;
    restricted_cone_restricted_cone: RestrictedCone, RestrictedCone;
    restricted_cone_port_restricted: RestrictedCone, PortRestricted;
    restricted_cone_symmetric: RestrictedCone, Symmetric;
    port_restricted_port_restricted: PortRestricted, PortRestricted;
    port_restricted_symmetric: PortRestricted, Symmetric;
    symmetric_symmetric: Symmetric, Symmetric;
}

/// The matrix above covers each unordered pair once; `direct_path_exists` must agree
/// with itself both ways round, or a pair would be checked against the wrong outcome.
#[test]
fn direct_path_table_is_symmetric() {
    for a in NatType::ALL {
        for b in NatType::ALL {
            assert_eq!(direct_path_exists(a, b), direct_path_exists(b, a));
        }
    }
    let impossible = NatType::ALL
        .iter()
        .flat_map(|&a| NatType::ALL.iter().map(move |&b| (a, b)))
        .filter(|&(a, b)| a <= b && !direct_path_exists(a, b))
        .count();
    assert_eq!(
        impossible, 3,
        "symmetric with port-restricted, firewall and symmetric"
    );
}
