//! After choosing a path the agent keeps it watched: a check probe every interval to the
//! chosen address only, answers keep it alive, and silence for `dead_after` ends it with
//! one `Disconnected` event, after which the agent sends nothing more on its own.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, Event, Liveness, PunchConfig};
use punch_proto::wire::Frame;
use sim::{agent_events, drain_agent};

const SESSION: u64 = 42;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An agent that has selected `peer` at the returned time.
fn selected_agent(liveness: Liveness) -> (Agent, Instant, SocketAddr) {
    let t0 = Instant::now();
    let peer = addr("198.51.100.2:4000");
    let cfg = PunchConfig {
        open_ttl: None,
        liveness: Some(liveness),
        ..PunchConfig::default()
    };
    let mut agent = Agent::new(cfg, SESSION, [(peer, CandidateKind::ServerReflexive)], t0);
    let probe = drain_agent(&mut agent)
        .into_iter()
        .find_map(|s| s.probe_seq())
        .expect("a probe at once without the opening round");
    let now = t0 + Duration::from_millis(10);
    let ack = Frame::ProbeAck {
        session: SESSION,
        seq: probe,
        observed: addr("203.0.113.5:5000"),
    };
    agent.handle_frame(now, peer, &ack);
    let events = agent_events(&mut agent);
    assert!(
        matches!(events.as_slice(), [Event::Selected { addr, .. }] if *addr == peer),
        "{events:?}"
    );
    assert!(agent.is_done());
    assert_eq!(agent.nominated(), Some(peer));
    (agent, now, peer)
}

#[test]
fn answered_checks_keep_the_path_and_silence_ends_it_once() {
    let l = Liveness::default();
    let (mut agent, mut now, peer) = selected_agent(l);
    // Ten seconds of answered checks: one probe per interval, only to the chosen path.
    let until = now + Duration::from_secs(10);
    let mut checks = 0;
    while now < until {
        now = agent.poll_timeout().expect("watching");
        agent.handle_timeout(now);
        for s in drain_agent(&mut agent) {
            assert_eq!(s.dest, peer, "checks go to the chosen path only");
            let seq = s.probe_seq().expect("only probes");
            checks += 1;
            let ack = Frame::ProbeAck {
                session: SESSION,
                seq,
                observed: addr("203.0.113.5:5000"),
            };
            agent.handle_frame(now + Duration::from_millis(20), peer, &ack);
        }
        assert!(agent_events(&mut agent).is_empty(), "alive while answered");
    }
    assert!(
        (9..=11).contains(&checks),
        "{checks} checks in 10 s at 1 s intervals"
    );
    // Now the peer goes silent.
    let silent_from = now;
    let mut events = Vec::new();
    while let Some(t) = agent.poll_timeout() {
        assert!(
            t <= silent_from + l.dead_after + l.interval,
            "timer {t:?} too late"
        );
        now = t;
        agent.handle_timeout(now);
        drain_agent(&mut agent);
        events.extend(agent_events(&mut agent));
    }
    match events.as_slice() {
        [Event::Disconnected { addr, silent_for }] => {
            assert_eq!(*addr, peer);
            assert!(*silent_for >= l.dead_after, "{silent_for:?}");
            assert!(now - silent_from <= l.dead_after + Duration::from_millis(100));
        }
        other => panic!("one Disconnected expected, got {other:?}"),
    }
    assert_eq!(agent.nominated(), None);
    agent.handle_timeout(now + Duration::from_secs(60));
    assert!(drain_agent(&mut agent).is_empty(), "nothing sent once dead");
}

#[test]
fn answers_from_elsewhere_do_not_keep_the_path_alive() {
    let l = Liveness::default();
    let (mut agent, _, _peer) = selected_agent(l);
    let stranger = addr("192.0.2.99:6000");
    let mut events = Vec::new();
    while let Some(now) = agent.poll_timeout() {
        agent.handle_timeout(now);
        for s in drain_agent(&mut agent) {
            if let Some(seq) = s.probe_seq() {
                // A forged answer from another address must not count.
                let ack = Frame::ProbeAck {
                    session: SESSION,
                    seq,
                    observed: stranger,
                };
                agent.handle_frame(now, stranger, &ack);
            }
        }
        events.extend(agent_events(&mut agent));
    }
    assert!(
        matches!(events.as_slice(), [Event::Disconnected { .. }]),
        "{events:?}"
    );
}
