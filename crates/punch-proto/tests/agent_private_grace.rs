//! Path choice when several candidates work: a private (host) path beats a public one,
//! and a working public path waits `private_grace` for an untried private one, exactly
//! that long, and no longer than needed.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, Event, PunchConfig, DEFAULT_PRIVATE_GRACE};
use punch_proto::wire::Frame;
use sim::{agent_events, drain_agent, Sent};

const SESSION: u64 = 9;
const GRACE: Duration = DEFAULT_PRIVATE_GRACE;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

fn host() -> SocketAddr {
    addr("192.168.1.20:5000")
}

fn srflx() -> SocketAddr {
    addr("203.0.113.5:5000")
}

/// An agent that has sent its first full round at `t0`; returns it with the sequence
/// number of the probe to each candidate.
fn probing(
    candidates: &[(SocketAddr, CandidateKind)],
    t0: Instant,
) -> (Agent, Vec<(SocketAddr, u32)>) {
    let cfg = PunchConfig {
        open_ttl: None,
        ..PunchConfig::default()
    };
    let mut agent = Agent::new(cfg, SESSION, candidates.iter().copied(), t0);
    let sent = drain_agent(&mut agent);
    let seqs = sent
        .iter()
        .filter_map(|s: &Sent| Some((s.dest, s.probe_seq()?)))
        .collect();
    (agent, seqs)
}

fn ack(agent: &mut Agent, now: Instant, from: SocketAddr, seqs: &[(SocketAddr, u32)]) {
    let seq = seqs.iter().find(|(d, _)| *d == from).expect("probed").1;
    agent.handle_frame(
        now,
        from,
        &Frame::ProbeAck {
            session: SESSION,
            seq,
            observed: from,
        },
    );
}

fn both() -> [(SocketAddr, CandidateKind); 2] {
    [
        (host(), CandidateKind::Host),
        (srflx(), CandidateKind::ServerReflexive),
    ]
}

#[test]
fn private_answering_within_the_grace_wins() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(&both(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, t0 + ms(10), srflx(), &seqs);
    assert_eq!(agent_events(&mut agent), vec![]);
    assert_eq!(agent.poll_timeout(), Some(t0 + ms(10) + GRACE));
    ack(&mut agent, t0 + ms(40), host(), &seqs);
    let selected = Event::Selected {
        addr: host(),
        kind: CandidateKind::Host,
        rtt: ms(40),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
    assert!(agent.is_done());
}

#[test]
fn public_is_chosen_when_the_grace_runs_out() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(&both(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, t0 + ms(10), srflx(), &seqs);
    let until = agent.poll_timeout().expect("grace timer");
    assert_eq!(until, t0 + ms(10) + GRACE);
    agent.handle_timeout(until - ms(1));
    assert_eq!(
        agent_events(&mut agent),
        vec![],
        "not before the grace ends"
    );
    agent.handle_timeout(until);
    let selected = Event::Selected {
        addr: srflx(),
        kind: CandidateKind::ServerReflexive,
        rtt: ms(10),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
    // A late private ack changes nothing: the choice is made.
    ack(&mut agent, until + ms(5), host(), &seqs);
    assert_eq!(agent_events(&mut agent), vec![]);
}

#[test]
fn private_first_is_chosen_at_once() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(&both(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, t0 + ms(3), host(), &seqs);
    let selected = Event::Selected {
        addr: host(),
        kind: CandidateKind::Host,
        rtt: ms(3),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}

#[test]
fn without_private_candidates_public_is_chosen_at_once() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(&[(srflx(), CandidateKind::ServerReflexive)], t0);
    let ms = Duration::from_millis;
    ack(&mut agent, t0 + ms(12), srflx(), &seqs);
    let selected = Event::Selected {
        addr: srflx(),
        kind: CandidateKind::ServerReflexive,
        rtt: ms(12),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}
