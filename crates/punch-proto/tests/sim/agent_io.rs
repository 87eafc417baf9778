//! Helpers for tests that drive an [`Agent`] directly, without a network: drain and
//! decode what it wants to send, collect its events.
//!
//! Owns nothing of the simulation; it only reads the agent's outputs.

use std::net::SocketAddr;
use std::time::Instant;

use punch_proto::agent::{Agent, CandidateKind, Event, PunchConfig};
use punch_proto::wire::Frame;

/// A probe or ack an agent asked to send, decoded (for tests that drive an [`Agent`]
/// directly, without a network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Destination.
    pub dest: SocketAddr,
    /// Explicit TTL, if any.
    pub ttl: Option<u32>,
    /// The decoded frame.
    pub frame: Frame,
}

impl Sent {
    /// The sequence number if this is a probe.
    pub fn probe_seq(&self) -> Option<u32> {
        match self.frame {
            Frame::Probe { seq, .. } => Some(seq),
            _ => None,
        }
    }
}

/// Everything the agent wants to send now, decoded; panics on a frame that does not
/// decode (the agent must only send valid frames).
pub fn drain_agent(agent: &mut Agent) -> Vec<Sent> {
    std::iter::from_fn(|| agent.poll_transmit())
        .map(|t| {
            let frame = Frame::decode(&t.payload).expect("the agent sends valid frames");
            Sent {
                dest: t.dest,
                ttl: t.ttl,
                frame,
            }
        })
        .collect()
}

/// Every event the agent has queued.
pub fn agent_events(agent: &mut Agent) -> Vec<Event> {
    std::iter::from_fn(|| agent.poll_event()).collect()
}

/// An agent of `session` (no opening round) that has sent its first full round of probes
/// at `t0`; returns it with the sequence number of the probe to each candidate.
pub fn probing(
    session: u64,
    candidates: &[(SocketAddr, CandidateKind)],
    t0: Instant,
) -> (Agent, Vec<(SocketAddr, u32)>) {
    let cfg = PunchConfig {
        open_ttl: None,
        ..PunchConfig::default()
    };
    let mut agent = Agent::new(cfg, session, candidates.iter().copied(), t0);
    let seqs = drain_agent(&mut agent)
        .iter()
        .filter_map(|s| Some((s.dest, s.probe_seq()?)))
        .collect();
    (agent, seqs)
}

/// Feed `agent` (of `session`) the answer from `from` to the probe it sent there.
pub fn ack(
    agent: &mut Agent,
    session: u64,
    now: Instant,
    from: SocketAddr,
    seqs: &[(SocketAddr, u32)],
) {
    let seq = seqs.iter().find(|(d, _)| *d == from).expect("probed").1;
    agent.handle_frame(
        now,
        from,
        &Frame::ProbeAck {
            session,
            seq,
            observed: from,
        },
    );
}
