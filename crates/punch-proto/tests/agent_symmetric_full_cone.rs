//! A symmetric NAT (`masquerade fully-random`) facing a full cone: the symmetric side's
//! probes leave on a fresh port the server never saw, the full-cone side learns that
//! port as a peer-reflexive candidate (RFC 8445 §7.3.1.3) and selects it, while the
//! symmetric side selects the full cone's server-reflexive address. The address the
//! server observed for the symmetric side is useless to its peer: probes to it die in a
//! dead conntrack entry.

mod sim;

use punch_proto::agent::CandidateKind;
use sim::{random_pair, run_pair, NatType};

const RUNS: u64 = 30;

#[test]
fn full_cone_learns_the_symmetric_port() {
    for seed in 0..RUNS {
        let out = run_pair(&random_pair(NatType::Symmetric, NatType::FullCone, seed));
        let ctx = format!("seed {seed}: {:?} {:?}", out.a, out.b);
        assert!(out.connected(), "{ctx}");
        let (sym, cone) = (&out.a, &out.b);
        let sym_public = sym.public.expect("registered");
        let cone_public = cone.public.expect("registered");

        assert_eq!(
            sym.selected(),
            Some((cone_public, CandidateKind::ServerReflexive)),
            "{ctx}"
        );

        let (learned, kind) = cone.selected().expect("selected");
        assert_eq!(kind, CandidateKind::PeerReflexive, "{ctx}");
        assert_eq!(learned.ip(), sym_public.ip(), "{ctx}");
        assert_ne!(
            learned.port(),
            sym_public.port(),
            "a fresh mapping per destination: {ctx}"
        );

        // The full cone's probes to the address the server saw were dropped at the
        // symmetric NAT (no mapping there toward the full cone) and left dead entries.
        assert!(out.stats.dead_entries > 0, "{ctx}: {:?}", out.stats);
    }
}

#[test]
fn either_side_first() {
    // The same with the roles of the two sites swapped, so the symmetric side is B.
    for seed in 0..RUNS {
        let out = run_pair(&random_pair(NatType::FullCone, NatType::Symmetric, seed));
        assert!(out.connected(), "seed {seed}: {:?} {:?}", out.a, out.b);
        assert_eq!(
            out.a.selected().map(|s| s.1),
            Some(CandidateKind::PeerReflexive)
        );
        assert_eq!(
            out.b.selected().map(|s| s.1),
            Some(CandidateKind::ServerReflexive)
        );
    }
}
