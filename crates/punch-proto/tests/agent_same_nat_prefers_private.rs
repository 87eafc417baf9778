//! Two peers on one LAN behind one NAT: each gets the other's private address as a host
//! candidate and the NAT's public address as server-reflexive. Both select the private
//! path, whatever the NAT type, with or without hairpinning. With hairpinning the public
//! path works too, and LAN jitter sometimes brings its ack first: the agent must still
//! wait (the private grace) and pick the private path.

mod sim;

use std::time::Duration;

use punch_proto::agent::{CandidateKind, PunchConfig};
use punch_proto::wire::Frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sim::{run_pair, NatType, PairOutcome, PairScenario, SiteConfig, Tally, Topology, MAX_SKEW};

const RUNS: u64 = 40;

fn same_site(nat: NatType, hairpin: bool, seed: u64) -> PairScenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let site = SiteConfig {
        lan_latency: Duration::from_micros(rng.random_range(100..=1_000)),
        lan_jitter: Duration::from_millis(10),
        hairpin,
        ..SiteConfig::new(nat)
    };
    let skew = Duration::from_micros(rng.random_range(0..=MAX_SKEW.as_micros() as u64));
    PairScenario {
        ports: (5000, 6000),
        start: if rng.random_bool(0.5) {
            (Duration::ZERO, skew)
        } else {
            (skew, Duration::ZERO)
        },
        ..PairScenario::new(Topology::SameSite(site), seed)
    }
}

/// For each side (A = host 0, B = host 1): whether the first ack it received came from a
/// public address.
fn public_ack_first(out: &PairOutcome) -> [bool; 2] {
    let locals = [out.a.local, out.b.local];
    [0, 1].map(|h| {
        out.log
            .iter()
            .find(|d| d.host == h && matches!(d.frame, Some(Frame::ProbeAck { .. })))
            .is_some_and(|d| d.from != locals[1 - h])
    })
}

fn check(nat: NatType, hairpin: bool) -> (usize, usize) {
    let mut tally = Tally::new(format!("same {} NAT, hairpin {hairpin}", nat.name()));
    let (mut public_first, mut public_acks) = (0, 0);
    for seed in 0..RUNS {
        let out = run_pair(&same_site(nat, hairpin, seed));
        tally.add(&out);
        let ctx = format!(
            "{} hairpin {hairpin} seed {seed}: {:?} {:?}",
            nat.name(),
            out.a,
            out.b
        );
        assert_eq!(
            out.a.selected(),
            Some((out.b.local, CandidateKind::Host)),
            "{ctx}"
        );
        assert_eq!(
            out.b.selected(),
            Some((out.a.local, CandidateKind::Host)),
            "{ctx}"
        );
        assert!(out.a.path_works && out.b.path_works, "{ctx}");
        public_first += public_ack_first(&out).iter().filter(|&&p| p).count();
        public_acks += out
            .log
            .iter()
            .filter(|d| matches!(d.frame, Some(Frame::ProbeAck { .. })))
            .filter(|d| d.from != out.a.local && d.from != out.b.local)
            .count();
        if !hairpin {
            assert_eq!(out.stats.hairpinned, 0, "{ctx}");
        }
    }
    println!("{tally}  (public ack first on {public_first} sides, {public_acks} public acks)");
    assert_eq!(tally.connected, RUNS as usize);
    (public_first, public_acks)
}

#[test]
fn private_path_without_hairpinning() {
    for nat in [
        NatType::FullCone,
        NatType::RestrictedCone,
        NatType::PortRestricted,
        NatType::Symmetric,
    ] {
        let (first, acks) = check(nat, false);
        assert_eq!(
            (first, acks),
            (0, 0),
            "no public path exists without hairpinning"
        );
    }
}

#[test]
fn private_path_preferred_when_public_answers_first() {
    let mut total_first = 0;
    for nat in [NatType::PortRestricted, NatType::Symmetric] {
        let (first, acks) = check(nat, true);
        assert!(
            acks > 0,
            "the hairpinned public path works on a {} NAT",
            nat.name()
        );
        total_first += first;
    }
    // The jitter really put a working public path first in some runs: an agent that took
    // the first ack would have failed this test.
    assert!(
        total_first >= 5,
        "public ack first on only {total_first} sides"
    );
}

#[test]
fn without_the_grace_the_first_ack_wins() {
    // Contrast: with no private grace, the runs where the public ack came first select
    // the public path. This is what the test above would catch.
    let cfg = PunchConfig {
        private_grace: Duration::ZERO,
        ..PunchConfig::default()
    };
    let mut public_selected = 0;
    for nat in [NatType::PortRestricted, NatType::Symmetric] {
        for seed in 0..RUNS {
            let out = run_pair(&same_site(nat, true, seed).with_config(cfg.clone()));
            let first = public_ack_first(&out);
            for (side, public_first) in [&out.a, &out.b].into_iter().zip(first) {
                let (_, kind) = side.selected().expect("selected");
                // A public path is only chosen when a public ack came first. (Not every
                // first public ack wins: one from another address than the one probed
                // proves nothing, RFC 8445 §7.2.5.2.1.)
                if kind != CandidateKind::Host {
                    assert!(public_first, "seed {seed}: {side:?}");
                    public_selected += 1;
                }
            }
        }
    }
    assert!(public_selected >= 5, "{public_selected}");
}
