//! The probe schedule: `OPEN_COPIES` low-TTL opening probes per candidate; full probe rounds start
//! on the peer's ready signal, on a probe from the peer, or at `open_delay` without
//! either; then every `probe_interval`, growing by half up to `max_probe_interval`.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, PunchConfig, DEFAULT_OPEN_TTL, OPEN_COPIES};
use punch_proto::wire::Frame;
use sim::{drain_agent, Sent};

const SESSION: u64 = 3;

fn candidates() -> [(SocketAddr, CandidateKind); 2] {
    [
        ("10.9.0.2:5000".parse().expect("addr"), CandidateKind::Host),
        (
            "203.0.113.99:5000".parse().expect("addr"),
            CandidateKind::ServerReflexive,
        ),
    ]
}

fn full_round(sent: &[Sent]) -> bool {
    let dests: Vec<SocketAddr> = sent
        .iter()
        .filter(|s| s.probe_seq().is_some())
        .map(|s| s.dest)
        .collect();
    let all: Vec<SocketAddr> = candidates().iter().map(|c| c.0).collect();
    dests == all && sent.iter().all(|s| s.ttl.is_none())
}

/// Run timers until `until`, returning the offsets (from `t0`) of full probe rounds.
fn rounds(agent: &mut Agent, t0: Instant, until: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    while let Some(t) = agent.poll_timeout().filter(|&t| t <= t0 + until) {
        agent.handle_timeout(t);
        let sent = drain_agent(agent);
        if !sent.is_empty() {
            assert!(full_round(&sent), "{sent:?}");
            out.push(t - t0);
        }
    }
    out
}

#[test]
fn opening_then_fallback_then_growing_rounds() {
    let cfg = PunchConfig::default();
    let t0 = Instant::now();
    let mut agent = Agent::new(cfg.clone(), SESSION, candidates(), t0);
    let opening = drain_agent(&mut agent);
    assert_eq!(opening.len(), 2 * OPEN_COPIES);
    let each = candidates().into_iter().cycle().take(2 * OPEN_COPIES);
    for (s, (addr, _)) in opening.iter().zip(each) {
        assert_eq!((s.dest, s.ttl), (addr, Some(DEFAULT_OPEN_TTL)));
    }
    let ms = Duration::from_millis;
    let got = rounds(&mut agent, t0, cfg.open_delay + ms(2_000));
    let d = cfg.open_delay;
    // 100, 150, 225, 337.5 ms, then capped at 500 ms.
    let want = [
        d,
        d + ms(100),
        d + ms(250),
        d + ms(475),
        d + Duration::from_micros(812_500),
        d + Duration::from_micros(1_312_500),
        d + Duration::from_micros(1_812_500),
    ];
    assert_eq!(got, want);
}

#[test]
fn ready_signal_starts_rounds_at_once() {
    let t0 = Instant::now();
    let mut agent = Agent::new(PunchConfig::default(), SESSION, candidates(), t0);
    drain_agent(&mut agent);
    let ms = Duration::from_millis;
    agent.peer_ready(t0 + ms(20));
    assert!(full_round(&drain_agent(&mut agent)));
    assert_eq!(agent.poll_timeout(), Some(t0 + ms(120)));
    // A second signal (a retransmitted introduction) adds no round.
    agent.peer_ready(t0 + ms(30));
    assert_eq!(drain_agent(&mut agent), vec![]);
    assert_eq!(rounds(&mut agent, t0, ms(400)), vec![ms(120), ms(270)]);
}

#[test]
fn a_probe_from_the_peer_starts_rounds_at_once() {
    let t0 = Instant::now();
    let mut agent = Agent::new(PunchConfig::default(), SESSION, candidates(), t0);
    drain_agent(&mut agent);
    let ms = Duration::from_millis;
    let peer = candidates()[1].0;
    agent.handle_frame(
        t0 + ms(25),
        peer,
        &Frame::Probe {
            session: SESSION,
            seq: 1,
        },
    );
    let sent = drain_agent(&mut agent);
    let (acks, probes): (Vec<Sent>, Vec<Sent>) =
        sent.into_iter().partition(|s| s.probe_seq().is_none());
    assert_eq!(acks.len(), 1);
    assert!(full_round(&probes), "{probes:?}");
    assert_eq!(agent.poll_timeout(), Some(t0 + ms(125)));
}

#[test]
fn without_an_opening_round_probing_starts_at_once() {
    let cfg = PunchConfig {
        open_ttl: None,
        ..PunchConfig::default()
    };
    let t0 = Instant::now();
    let mut agent = Agent::new(cfg, SESSION, candidates(), t0);
    assert!(full_round(&drain_agent(&mut agent)));
    assert_eq!(agent.poll_timeout(), Some(t0 + Duration::from_millis(100)));
}
