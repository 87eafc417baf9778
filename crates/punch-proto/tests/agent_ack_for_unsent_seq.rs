//! An ack whose sequence number the agent never sent proves nothing: it is ignored (no
//! selection, no grace timer, no new candidate). The ack of a real probe then selects,
//! with the round-trip time of that very probe.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, Event, PunchConfig};
use punch_proto::wire::Frame;
use sim::{agent_events, drain_agent, Sent};

const SESSION: u64 = 42;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

#[test]
fn acks_of_unsent_probes_are_ignored() {
    let t0 = Instant::now();
    let srflx = addr("203.0.113.99:5000");
    let host = addr("10.9.0.2:5000");
    let stranger = addr("198.18.0.7:4444");
    let candidates = [
        (host, CandidateKind::Host),
        (srflx, CandidateKind::ServerReflexive),
    ];
    let mut agent = Agent::new(PunchConfig::default(), SESSION, candidates, t0);
    let mut sent = drain_agent(&mut agent);
    let t1 = t0 + Duration::from_millis(10);
    agent.peer_ready(t1);
    sent.extend(drain_agent(&mut agent));
    let seqs: Vec<u32> = sent.iter().filter_map(Sent::probe_seq).collect();
    let newest = *seqs.iter().max().expect("probes sent");
    let timer = agent.poll_timeout();

    let t2 = t1 + Duration::from_millis(20);
    let unsent = [0, newest + 1, newest + 1000, u32::MAX];
    for seq in unsent {
        assert!(!seqs.contains(&seq));
        for from in [srflx, host, stranger] {
            agent.handle_frame(
                t2,
                from,
                &Frame::ProbeAck {
                    session: SESSION,
                    seq,
                    observed: from,
                },
            );
            assert_eq!(agent_events(&mut agent), vec![], "seq {seq} from {from}");
            assert_eq!(drain_agent(&mut agent), vec![], "seq {seq} from {from}");
            assert_eq!(agent.poll_timeout(), timer, "seq {seq} started a timer");
        }
    }
    // The stranger did not become a candidate.
    let t3 = timer.expect("punching");
    agent.handle_timeout(t3);
    let round = drain_agent(&mut agent);
    let dests: Vec<SocketAddr> = round.iter().map(|s| s.dest).collect();
    assert_eq!(dests, vec![host, srflx]);

    // Control: the ack of the probe the first round sent to the host candidate selects it.
    let probe_to_host = sent
        .iter()
        .find(|s| s.dest == host && s.ttl.is_none())
        .and_then(Sent::probe_seq)
        .expect("a full probe to the host candidate");
    let t4 = t1 + Duration::from_millis(33);
    let ack = Frame::ProbeAck {
        session: SESSION,
        seq: probe_to_host,
        observed: host,
    };
    agent.handle_frame(t4, host, &ack);
    let events = agent_events(&mut agent);
    let rtt = Duration::from_millis(33);
    assert_eq!(
        events,
        vec![Event::Selected {
            addr: host,
            kind: CandidateKind::Host,
            rtt
        }]
    );
}
