//! Peer-reflexive candidates are bounded: an agent sprayed with probes (or acks) from
//! many source ports answers every probe but never tracks, and so never probes, more
//! than `MAX_CANDIDATES` distinct addresses; the candidates the server reported stay.

mod sim;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use punch_proto::agent::{Agent, CandidateKind, PunchConfig, MAX_CANDIDATES};
use punch_proto::wire::Frame;
use sim::{agent_events, drain_agent, Sent};

const SESSION: u64 = 0x5e55;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

fn reported() -> [(SocketAddr, CandidateKind); 2] {
    [
        (addr("10.9.0.2:5000"), CandidateKind::Host),
        (addr("203.0.113.99:5000"), CandidateKind::ServerReflexive),
    ]
}

fn spray_source(i: u16) -> SocketAddr {
    SocketAddr::new(addr("198.18.0.1:0").ip(), 1024 + i)
}

/// Distinct destinations of full (no explicit TTL) probes in `sent`.
fn probed(sent: &[Sent]) -> BTreeSet<SocketAddr> {
    sent.iter()
        .filter(|s| s.probe_seq().is_some() && s.ttl.is_none())
        .map(|s| s.dest)
        .collect()
}

#[test]
fn sprayed_probes_are_answered_but_candidates_stay_bounded() {
    let t0 = Instant::now();
    let mut agent = Agent::new(PunchConfig::default(), SESSION, reported(), t0);
    drain_agent(&mut agent);
    let mut all = Vec::new();
    for i in 0..200 {
        let from = spray_source(i);
        agent.handle_frame(
            t0,
            from,
            &Frame::Probe {
                session: SESSION,
                seq: u32::from(i),
            },
        );
        let sent = drain_agent(&mut agent);
        // Every probe is answered, to its source, echoing its sequence number.
        let acks: Vec<_> = sent.iter().filter(|s| s.probe_seq().is_none()).collect();
        assert_eq!(acks.len(), 1, "probe {i}: {sent:?}");
        assert_eq!(acks[0].dest, from);
        assert!(
            matches!(acks[0].frame, Frame::ProbeAck { seq, observed, .. }
            if seq == u32::from(i) && observed == from)
        );
        all.extend(sent);
    }
    // Three more rounds: every tracked candidate is probed, no more than the bound.
    let mut t = t0;
    for _ in 0..3 {
        t = agent.poll_timeout().expect("still punching");
        agent.handle_timeout(t);
        let round = drain_agent(&mut agent);
        let dests = probed(&round);
        assert_eq!(dests.len(), MAX_CANDIDATES, "{dests:?}");
        for (a, _) in reported() {
            assert!(dests.contains(&a), "reported candidate {a} still probed");
        }
        all.extend(round);
    }
    assert!(t > t0);
    assert_eq!(probed(&all).len(), MAX_CANDIDATES);
    assert!(
        agent_events(&mut agent).is_empty(),
        "probes alone select nothing"
    );
}

#[test]
fn sprayed_acks_keep_candidates_bounded() {
    // A long private grace keeps the agent probing while acks of its own probes arrive
    // from ever new ports (the reported host candidate never answers).
    let cfg = PunchConfig {
        private_grace: Duration::from_secs(5),
        ..PunchConfig::default()
    };
    let t0 = Instant::now();
    let mut agent = Agent::new(cfg, SESSION, reported(), t0);
    drain_agent(&mut agent);
    agent.peer_ready(t0);
    let (mut t, mut most, mut port) = (t0, 0, 0);
    while !agent.is_done() {
        let round = drain_agent(&mut agent);
        let dests = probed(&round);
        most = most.max(dests.len());
        assert!(dests.len() <= MAX_CANDIDATES, "{dests:?}");
        // Four acks per round, each of a probe of this round, each from a new port.
        for seq in round.iter().filter_map(Sent::probe_seq).take(4) {
            port += 1;
            let ack = Frame::ProbeAck {
                session: SESSION,
                seq,
                observed: spray_source(0),
            };
            agent.handle_frame(t, spray_source(port), &ack);
        }
        t = agent.poll_timeout().expect("not done yet");
        agent.handle_timeout(t);
    }
    assert!(
        port > 2 * MAX_CANDIDATES as u16,
        "enough acks to overflow ({port})"
    );
    assert_eq!(most, MAX_CANDIDATES, "the acks filled the table");
}

#[derive(Debug, Clone)]
enum Op {
    /// A probe from port `1024 + p`.
    Probe(u16),
    /// An ack, from port `1024 + p`, of the probe `back` probes before the newest one.
    Ack(u16, u8),
    /// Time passes until the agent's next timer.
    Wait,
    /// The server relays the peer's ready signal.
    Ready,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..400).prop_map(Op::Probe),
        2 => ((0u16..400), any::<u8>()).prop_map(|(p, b)| Op::Ack(p, b)),
        2 => Just(Op::Wait),
        1 => Just(Op::Ready),
    ]
}

proptest! {
    /// Whatever arrives, in whatever order: at most `MAX_CANDIDATES` distinct addresses
    /// are ever probed, low-TTL datagrams go only to the reported candidates, and the
    /// agent reports at most one event.
    #[test]
    fn never_more_than_max_candidates(ops in proptest::collection::vec(op(), 1..300)) {
        let t0 = Instant::now();
        // The punching phase only: liveness after selection has its own tests.
        let cfg = PunchConfig { private_grace: Duration::from_secs(3), liveness: None, ..PunchConfig::default() };
        let mut agent = Agent::new(cfg, SESSION, reported(), t0);
        let mut now = t0;
        let mut sent: Vec<Sent> = drain_agent(&mut agent);
        let mut events = 0;
        for op in ops {
            match op {
                Op::Probe(p) => {
                    agent.handle_frame(now, spray_source(p), &Frame::Probe { session: SESSION, seq: 1 });
                }
                Op::Ack(p, back) => {
                    let seqs: Vec<u32> = sent.iter().filter_map(Sent::probe_seq).collect();
                    if let Some(&seq) = seqs.iter().rev().nth(usize::from(back) % seqs.len().max(1)) {
                        let ack = Frame::ProbeAck { session: SESSION, seq, observed: spray_source(0) };
                        agent.handle_frame(now, spray_source(p), &ack);
                    }
                }
                Op::Wait => {
                    if let Some(t) = agent.poll_timeout() {
                        prop_assert!(t <= t0 + PunchConfig::default().deadline, "timer past the deadline");
                        now = now.max(t);
                        agent.handle_timeout(now);
                    }
                }
                Op::Ready => agent.peer_ready(now),
            }
            sent.extend(drain_agent(&mut agent));
            events += agent_events(&mut agent).len();
        }
        let dests: BTreeSet<SocketAddr> =
            sent.iter().filter(|s| s.probe_seq().is_some()).map(|s| s.dest).collect();
        prop_assert!(dests.len() <= MAX_CANDIDATES, "{} destinations", dests.len());
        let reported: Vec<SocketAddr> = reported().iter().map(|c| c.0).collect();
        for s in sent.iter().filter(|s| s.ttl.is_some()) {
            prop_assert!(reported.contains(&s.dest), "low-TTL probe to {}", s.dest);
        }
        prop_assert!(events <= 1, "{events} events");
    }
}
