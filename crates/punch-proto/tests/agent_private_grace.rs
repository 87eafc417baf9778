//! Path choice when several candidates work: a private (host) path beats a public one,
//! and a working public path waits `private_grace` for an untried private one, exactly
//! that long, and no longer than needed.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{CandidateKind, Event, DEFAULT_PRIVATE_GRACE};
use sim::{ack, agent_events, probing};

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

fn both() -> [(SocketAddr, CandidateKind); 2] {
    [
        (host(), CandidateKind::Host),
        (srflx(), CandidateKind::ServerReflexive),
    ]
}

#[test]
fn private_answering_within_the_grace_wins() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(SESSION, &both(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(10), srflx(), &seqs);
    assert_eq!(agent_events(&mut agent), vec![]);
    assert_eq!(agent.poll_timeout(), Some(t0 + ms(10) + GRACE));
    ack(&mut agent, SESSION, t0 + ms(40), host(), &seqs);
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
    let (mut agent, seqs) = probing(SESSION, &both(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(10), srflx(), &seqs);
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
    ack(&mut agent, SESSION, until + ms(5), host(), &seqs);
    assert_eq!(agent_events(&mut agent), vec![]);
}

#[test]
fn private_first_is_chosen_at_once() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(SESSION, &both(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(3), host(), &seqs);
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
    let (mut agent, seqs) = probing(SESSION, &[(srflx(), CandidateKind::ServerReflexive)], t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(12), srflx(), &seqs);
    let selected = Event::Selected {
        addr: srflx(),
        kind: CandidateKind::ServerReflexive,
        rtt: ms(12),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}
