//! Frames of another session, and frames of other kinds, are ignored: no answer, no
//! candidate, no early start of the probe rounds, no event. The same probe with the
//! right session id is answered, so the test would see a leak.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{Agent, CandidateKind, PunchConfig};
use punch_proto::wire::{ErrorCode, Frame, PeerInfo};
use sim::{agent_events, drain_agent, Sent};

const SESSION: u64 = 0xabcd_0001;
const OTHER: u64 = 0xabcd_0002;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

#[test]
fn other_sessions_and_kinds_are_ignored() {
    let t0 = Instant::now();
    let srflx = addr("203.0.113.99:5000");
    let stranger = addr("198.18.0.7:4444");
    let mut agent = Agent::new(
        PunchConfig::default(),
        SESSION,
        [(srflx, CandidateKind::ServerReflexive)],
        t0,
    );
    let opening = drain_agent(&mut agent);
    let open_seq = opening[0].probe_seq().expect("an opening probe");
    let timer = agent.poll_timeout();
    let t = t0 + Duration::from_millis(20);

    let peer = PeerInfo {
        name: "mallory".into(),
        key: [7; 32],
        public: stranger,
        private: vec![],
    };
    let frames = [
        Frame::Probe {
            session: OTHER,
            seq: 1,
        },
        Frame::ProbeAck {
            session: OTHER,
            seq: open_seq,
            observed: srflx,
        },
        Frame::Register {
            txn: 1,
            name: "mallory".into(),
            key: [7; 32],
            private: vec![],
            nat: None,
            nonce: [1; 16],
            sig: punch_proto::auth::Signature::empty(),
        },
        Frame::Registered {
            txn: 1,
            observed: stranger,
            expires_secs: 90,
            nonce: [2; 16],
        },
        Frame::Challenge {
            txn: 1,
            nonce: [3; 16],
        },
        Frame::Connect {
            txn: 2,
            target: "alice".into(),
        },
        Frame::Introduce {
            txn: 0,
            session: SESSION,
            initiator: true,
            peer,
        },
        Frame::IntroduceAck { session: SESSION },
        Frame::Error {
            txn: 3,
            code: ErrorCode::Busy,
            reason: "busy".into(),
        },
        // The ready signal reaches the agent through `peer_ready`, not `handle_frame`.
        Frame::PeerReady { session: SESSION },
    ];
    for frame in &frames {
        for from in [stranger, srflx] {
            agent.handle_frame(t, from, frame);
            assert_eq!(
                drain_agent(&mut agent),
                vec![],
                "answered {frame:?} from {from}"
            );
            assert_eq!(agent_events(&mut agent), vec![], "{frame:?} from {from}");
            assert_eq!(agent.poll_timeout(), timer, "{frame:?} moved the timer");
        }
    }

    // The first full round probes only the reported candidate: the stranger's probe of
    // another session did not make it a candidate.
    let t1 = timer.expect("punching");
    agent.handle_timeout(t1);
    let round: Vec<SocketAddr> = drain_agent(&mut agent).iter().map(|s| s.dest).collect();
    assert_eq!(round, vec![srflx]);

    // Control: the same probe with our session is answered and its source probed back.
    agent.handle_frame(
        t1,
        stranger,
        &Frame::Probe {
            session: SESSION,
            seq: 1,
        },
    );
    let sent = drain_agent(&mut agent);
    assert!(
        sent.iter()
            .any(|s| s.dest == stranger && s.probe_seq().is_none()),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|s| s.dest == stranger && s.probe_seq().is_some()),
        "{sent:?}"
    );
    assert!(sent.iter().all(|s: &Sent| s.ttl.is_none()));
}
