//! Rendezvous frames, taken in the receive task that read them: decoded there, fed to the
//! registry under its lock, and the registrations whose signature must be checked taken
//! out of it and checked outside the lock, a batch at a time
//! ([`punch_proto::auth::Unchecked::check_all`]). With `--workers N` every worker's core
//! checks its own share, and the registry's lock is held for the table work only.
//!
//! Owns the per-batch lists of frames. Not the registry
//! ([`punch_proto::rendezvous::Rendezvous`]), nor the sockets and answers ([`super::send`]).

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use punch_proto::auth::Unchecked;
use punch_proto::rendezvous::Rendezvous;
use punch_proto::stun::responder::SocketId;
use punch_proto::wire::{self, Frame};
use tracing::debug;

use super::lock;
use super::send::{Answers, Outs};
use crate::telemetry::server::{UdpMetrics, UdpRequest};

/// The frames of one receive batch.
#[derive(Default)]
pub(super) struct Frames {
    /// Decoded frames and where they came from.
    frames: Vec<(SocketAddr, Frame)>,
    /// Frames of another wire version (an old client's registration is told to upgrade).
    others: Vec<(SocketAddr, Vec<u8>)>,
    /// Registrations the registry gave back to be checked.
    unchecked: Vec<Unchecked>,
}

impl Frames {
    /// Take `data`, a datagram that looks like a punch frame ([`wire::is_frame`]) from
    /// `from`; false if it does not decode (the caller counts it malformed).
    pub(super) fn push(&mut self, from: SocketAddr, data: &[u8]) -> bool {
        match Frame::decode(data) {
            Ok(frame) => self.frames.push((from, frame)),
            Err(wire::WireError::Version(v)) => {
                debug!(%from, version = v, "frame of another wire version");
                self.others.push((from, data.to_vec()));
            }
            Err(e) => {
                debug!(%from, error = %e, "malformed frame");
                return false;
            }
        }
        true
    }

    /// Whether the batch held no frame.
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.others.is_empty()
    }

    /// Feed the batch's frames to `registry` (through `held`, the batch's lock if it took
    /// one already), check the signatures it gives back with the lock released, feed
    /// those, and queue every answer in `answers`, leaving from `group`'s primary socket
    /// (or the one that reaches the destination's family).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle<'a, 'm>(
        &mut self,
        registry: &'m Mutex<Rendezvous>,
        held: &mut Option<MutexGuard<'m, Rendezvous>>,
        now: Instant,
        outs: &'a Outs,
        group: usize,
        answers: &mut Answers<'a>,
        metrics: &UdpMetrics,
    ) {
        {
            let reg = held.get_or_insert_with(|| lock(registry));
            for (from, frame) in self.frames.drain(..) {
                debug!(%from, ?frame, "frame");
                metrics.requests(UdpRequest::of(&frame), 1);
                if let Some(unchecked) = reg.screen(now, from, frame) {
                    self.unchecked.push(unchecked);
                }
            }
            for (from, data) in self.others.drain(..) {
                metrics.requests(UdpRequest::OtherVersion, 1);
                reg.handle_other_version(now, from, &data);
            }
            queue_transmits(reg, outs, group, answers);
        }
        if self.unchecked.is_empty() {
            return;
        }
        // The costly part, with the lock released.
        *held = None;
        let checked = Unchecked::check_all(std::mem::take(&mut self.unchecked));
        let mut reg = lock(registry);
        for c in checked {
            reg.handle_checked(now, c);
        }
        queue_transmits(&mut reg, outs, group, answers);
    }
}

/// Move what the registry has to send into `answers`.
fn queue_transmits<'a>(
    reg: &mut Rendezvous,
    outs: &'a Outs,
    group: usize,
    answers: &mut Answers<'a>,
) {
    while let Some((to, bytes)) = reg.poll_transmit() {
        match outs.toward(group, SocketId::PRIMARY, to) {
            Some(out) => {
                answers.next_buf().extend_from_slice(&bytes);
                answers.queue(out, to);
            }
            None => debug!(%to, "no socket reaches that address family"),
        }
    }
}
