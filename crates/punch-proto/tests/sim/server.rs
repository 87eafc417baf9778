//! The server node: the real [`Rendezvous`] behind the server's one address, driven as
//! `punch::server` drives it.
//!
//! Owns the demultiplexing of what reaches the server (relayed datagrams, first byte
//! [`wire::RELAY_TAG`], go to [`Rendezvous::relay`] and on unchanged to the address it
//! returns; punch frames are decoded and go to [`Rendezvous::handle_frame`]; the rest is
//! dropped), its timers, draining its transmits after every input and timeout, and being
//! down or restarted with empty state. It does not own the network (the parent module
//! drops datagrams to a server that is down, and carries what it sends).

use std::net::SocketAddr;
use std::time::Instant;

use punch_proto::rendezvous::{Rendezvous, RendezvousConfig, Stats};
use punch_proto::wire::{self, Frame};

/// The rendezvous server of the simulated network.
pub struct ServerNode {
    rdv: Rendezvous,
    cfg: RendezvousConfig,
    seed: u64,
    up: bool,
    /// Restarts so far.
    pub restarts: u64,
    /// Counters of the instances before the current one.
    pub past: Vec<Stats>,
}

impl ServerNode {
    /// A running server with the default configuration; `seed` drives its session ids.
    pub fn new(seed: u64) -> ServerNode {
        let cfg = RendezvousConfig::default();
        ServerNode {
            rdv: Rendezvous::new(cfg.clone(), seed),
            cfg,
            seed,
            up: true,
            restarts: 0,
            past: Vec::new(),
        }
    }

    /// True while it runs.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The running state machine.
    pub fn rendezvous(&self) -> &Rendezvous {
        &self.rdv
    }

    /// Stop: nothing reaches it or leaves it until [`ServerNode::restart`].
    pub fn stop(&mut self) {
        self.up = false;
    }

    /// Start again with empty state (a new process: no registrations, no sessions).
    pub fn restart(&mut self) {
        self.restarts += 1;
        let fresh = Rendezvous::new(self.cfg.clone(), self.seed ^ self.restarts);
        let old = std::mem::replace(&mut self.rdv, fresh);
        self.past.push(old.stats().clone());
        self.up = true;
    }

    /// A datagram from `from`: what to send (and forward) in answer.
    pub fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        if data.first() == Some(&wire::RELAY_TAG) {
            if let Some(to) = self.rdv.relay(now, from, data) {
                out.push((to, data.to_vec()));
            }
        } else if let Ok(frame) = Frame::decode(data) {
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!("{now:?} server <- {from} {frame:?}");
            }
            self.rdv.handle_frame(now, from, frame);
        }
        out.extend(self.wake(now));
        if std::env::var_os("SIM_TRACE").is_some() {
            for (to, d) in &out {
                if let Ok(f) = Frame::decode(d) {
                    eprintln!("{now:?} server -> {to} {f:?}");
                }
            }
        }
        out
    }

    /// Timers, then everything the state machine wants sent.
    pub fn wake(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        self.rdv.handle_timeout(now);
        std::iter::from_fn(|| self.rdv.poll_transmit()).collect()
    }

    /// When [`ServerNode::wake`] should run next (never while down).
    pub fn next_wake(&self) -> Option<Instant> {
        self.rdv.poll_timeout().filter(|_| self.up)
    }
}
