//! Path choice across address families: an IPv6 path beats an IPv4 one when both work,
//! also when the IPv4 one answered first (it waits the grace for the IPv6 one), and
//! IPv4 is chosen when IPv6 does not answer in time.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{CandidateKind, Event, DEFAULT_PRIVATE_GRACE};
use sim::{ack, agent_events, probing};

const SESSION: u64 = 11;
const GRACE: Duration = DEFAULT_PRIVATE_GRACE;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

fn v4_public() -> SocketAddr {
    addr("198.51.100.6:5000")
}

fn v6_public() -> SocketAddr {
    addr("[2001:db8:2::2]:5000")
}

fn v4_private() -> SocketAddr {
    addr("10.0.2.2:5000")
}

/// The candidates of a dual-stack peer registered over IPv4: its public IPv4 address,
/// its private one, and its global IPv6 address (offered as a host candidate).
fn dual_stack() -> [(SocketAddr, CandidateKind); 3] {
    [
        (v4_private(), CandidateKind::Host),
        (v6_public(), CandidateKind::Host),
        (v4_public(), CandidateKind::ServerReflexive),
    ]
}

#[test]
fn ipv6_answering_after_ipv4_within_the_grace_wins() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(SESSION, &dual_stack(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(5), v4_public(), &seqs);
    assert_eq!(agent_events(&mut agent), vec![], "IPv4 waits for IPv6");
    ack(&mut agent, SESSION, t0 + ms(20), v6_public(), &seqs);
    let selected = Event::Selected {
        addr: v6_public(),
        kind: CandidateKind::Host,
        rtt: ms(20),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}

#[test]
fn ipv6_beats_even_a_private_ipv4_path() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(SESSION, &dual_stack(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(1), v4_private(), &seqs);
    assert_eq!(agent_events(&mut agent), vec![]);
    ack(&mut agent, SESSION, t0 + ms(2), v6_public(), &seqs);
    let selected = Event::Selected {
        addr: v6_public(),
        kind: CandidateKind::Host,
        rtt: ms(2),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}

#[test]
fn ipv4_is_chosen_when_ipv6_stays_silent() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(SESSION, &dual_stack(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(5), v4_public(), &seqs);
    let until = agent.poll_timeout().expect("grace timer");
    assert_eq!(until, t0 + ms(5) + GRACE);
    agent.handle_timeout(until);
    let selected = Event::Selected {
        addr: v4_public(),
        kind: CandidateKind::ServerReflexive,
        rtt: ms(5),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}

#[test]
fn ipv6_first_is_chosen_at_once() {
    let t0 = Instant::now();
    let (mut agent, seqs) = probing(SESSION, &dual_stack(), t0);
    let ms = Duration::from_millis;
    ack(&mut agent, SESSION, t0 + ms(4), v6_public(), &seqs);
    let selected = Event::Selected {
        addr: v6_public(),
        kind: CandidateKind::Host,
        rtt: ms(4),
    };
    assert_eq!(agent_events(&mut agent), vec![selected]);
}
