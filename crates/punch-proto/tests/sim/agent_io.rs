//! Helpers for tests that drive an [`Agent`] directly, without a network: drain and
//! decode what it wants to send, collect its events.
//!
//! Owns nothing of the simulation; it only reads the agent's outputs.

use std::net::SocketAddr;

use punch_proto::agent::{Agent, Event};
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
