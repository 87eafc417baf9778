//! The control task's path decisions: what a punching result, a lost direct path or a
//! closed relay session means for a peer's route, and what the application is told.

use std::net::SocketAddr;
use std::time::Duration;

use punch_proto::agent::Event as AgentEvent;
use punch_proto::wire::PeerInfo;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::super::INITIAL_RTO;
use super::super::{lock, ClientEvent, ConnectError, Current, PathInfo, RelayMode};
use super::{
    Check, Control, Direct, Peer, Quic, PATH_CHECK_INTERVAL, PATH_DEAD_AFTER, REPUNCH_AFTER_LOSS,
    REPUNCH_FIRST, REPUNCH_MAX,
};
use crate::identity::PublicKey;
use crate::paths::{Active, PathTable, RelayRoute};

impl Control {
    pub(super) fn on_relay_closed(&mut self, now: Instant, session: u64, reason: String) {
        let Some(key) = self.sessions.get(&session).copied() else {
            return;
        };
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.session != session || p.relay_refused.is_some() {
            return;
        }
        warn!(peer = %p.name, %reason, "relay closed");
        p.relay_refused = Some(reason.clone());
        let restarted = reason.starts_with("unknown relay session");
        if let Some(Active::Relay(_)) = self.paths.active(p.virt) {
            set_path(
                &self.paths,
                &self.current,
                key,
                p.virt,
                Active::None,
                relay_info(self.cfg.server),
            );
            let ev = ClientEvent::PathError {
                peer: p.name.clone(),
                reason: format!("relay closed: {reason}"),
            };
            p.reported = "none";
            emit(&self.events, ev);
        }
        if restarted && p.initiator {
            // The server lost its state: register again, then ask for a new session.
            self.next_register = now;
            p.retry_at = Some(now + INITIAL_RTO * 2);
        }
        // A pending connect that now has no path at all and no punching left fails.
        if p.agent.as_ref().is_none_or(|a| a.is_done()) && p.direct.is_none() {
            if let Some(r) = p.reply.take() {
                let _ = r.send(Err(ConnectError::NoPath(
                    self.cfg.punch.deadline,
                    candidates_text(&p.info),
                    format!("; relay refused: {reason}"),
                )));
            }
        }
    }

    pub(super) fn on_path_lost(&mut self, now: Instant, key: PublicKey) {
        let (server, mode) = (self.cfg.server, self.cfg.relay);
        let events = self.events.clone();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(d) = p.direct.take() else { return };
        p.check = None;
        warn!(peer = %p.name, addr = %d.addr, "direct path lost");
        let relay = RelayRoute {
            server,
            side: p.side,
            session: p.session,
        };
        let ev = if mode != RelayMode::Never && p.relay_refused.is_none() {
            set_path(
                &self.paths,
                &self.current,
                key,
                p.virt,
                Active::Relay(relay),
                relay_info(server),
            );
            p.reported = "relay";
            ClientEvent::Path {
                peer: p.name.clone(),
                path: relay_info(server),
                reason: format!(
                    "direct path lost (no answer from {} for {PATH_DEAD_AFTER:?})",
                    d.addr
                ),
            }
        } else {
            set_path(
                &self.paths,
                &self.current,
                key,
                p.virt,
                Active::None,
                relay_info(server),
            );
            p.reported = "none";
            ClientEvent::PathError {
                peer: p.name.clone(),
                reason: format!(
                    "direct path lost (no answer from {}); punching again",
                    d.addr
                ),
            }
        };
        if p.initiator {
            p.backoff = REPUNCH_FIRST;
            p.retry_at = Some(now + REPUNCH_AFTER_LOSS);
        }
        emit(&events, ev);
    }

    /// End punching toward `key` for good (the NAT types rule it out): stay on the relay
    /// if it may be used, else fail with `reason`.
    pub(super) fn give_up_punching(&mut self, key: PublicKey, reason: String) {
        let (server, mode) = (self.cfg.server, self.cfg.relay);
        let events = self.events.clone();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        p.agent = None;
        p.retry_at = None;
        if punching_ended(p, mode, &events, &reason) {
            staying_on_relay(
                p,
                server,
                &events,
                format!("{reason}; staying on the relay"),
            );
            return;
        }
        self.no_path_left(key, ConnectError::Impossible(reason));
    }

    /// A peer has no path and will get none soon: fail the pending connect (or tell the
    /// application about an incoming peer that could not connect) and forget the peer; an
    /// established connection stays, and the application hears it has no path for now.
    /// True if the peer was kept.
    fn no_path_left(&mut self, key: PublicKey, err: ConnectError) -> bool {
        let Some(p) = self.peers.get_mut(&key) else {
            return false;
        };
        let peer = p.name.clone();
        if let Some(r) = p.reply.take() {
            let _ = r.send(Err(err));
        } else if !matches!(p.quic, Quic::Up(_)) {
            let reason = err.to_string();
            emit(&self.events, ClientEvent::IncomingFailed { peer, reason });
        } else {
            let reason = err.to_string();
            emit(&self.events, ClientEvent::PathError { peer, reason });
            return true;
        }
        self.forget(key);
        false
    }

    pub(super) fn on_agent_event(&mut self, key: PublicKey, ev: AgentEvent) {
        let now = Instant::now();
        let (server, mode, deadline) = (self.cfg.server, self.cfg.relay, self.cfg.punch.deadline);
        let events = self.events.clone();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        match ev {
            AgentEvent::Selected { addr, kind, rtt } => {
                info!(peer = %p.name, %addr, candidate = kind.as_str(), ?rtt, "direct path selected");
                let d = Direct { addr, kind, rtt };
                p.direct = Some(d);
                p.backoff = REPUNCH_FIRST;
                p.check = Some(Check {
                    addr,
                    next: now + PATH_CHECK_INTERVAL,
                    last_answer: now,
                    seq: 0,
                });
                self.paths.alias(addr, p.virt);
                if mode != RelayMode::Only {
                    set_path(
                        &self.paths,
                        &self.current,
                        key,
                        p.virt,
                        Active::Direct(addr),
                        direct_info(d),
                    );
                }
                let up = matches!(p.quic, Quic::Up(_));
                if up && p.reported != "direct" {
                    p.reported = "direct";
                    let ev = ClientEvent::Path {
                        peer: p.name.clone(),
                        path: direct_info(d),
                        reason: format!(
                            "direct path confirmed: {} address {addr} answered in {:.1} ms",
                            kind.as_str(),
                            rtt.as_secs_f64() * 1000.0
                        ),
                    };
                    emit(&events, ev);
                }
                if p.initiator && matches!(p.quic, Quic::NotStarted) {
                    self.start_quic(key);
                }
            }
            // Liveness is off in the agents this task runs (it checks paths itself).
            AgentEvent::Disconnected { .. } => {}
            AgentEvent::Failed(_) => {
                let tried = candidates_text(&p.info);
                let failed = format!("no direct path within {deadline:?} (tried {tried})");
                warn!(peer = %p.name, "{failed}");
                let relay_usable = punching_ended(p, mode, &events, &failed);
                // On the relay the handshake takes one round trip through the server; still
                // not done when punching gave up means the peer answers on no path at all.
                let silent = matches!(p.quic, Quic::Connecting);
                if relay_usable && !silent {
                    // Stay on the relay; punch again later, less and less often.
                    let reason = format!(
                        "{failed}; staying on the relay, punching again in {:?}",
                        p.backoff
                    );
                    if p.initiator {
                        repunch_later(p, now);
                    }
                    staying_on_relay(p, server, &events, reason);
                    return;
                }
                let why = match (&p.relay_refused, relay_usable) {
                    (Some(r), _) => format!("; relay refused: {r}"),
                    (None, true) => "; no answer through the relay either".to_string(),
                    (None, false) => String::new(),
                };
                let err = ConnectError::NoPath(deadline, tried, why);
                if self.no_path_left(key, err) {
                    // Still connected (the path may come back): punch again later.
                    if let Some(p) = self.peers.get_mut(&key).filter(|p| p.initiator) {
                        repunch_later(p, now);
                    }
                }
            }
        }
    }
}

/// Punching toward `p` ended without a direct path: the application hears it (it may try
/// another transport). True if the relay may still carry the peer.
fn punching_ended(
    p: &Peer,
    mode: RelayMode,
    events: &mpsc::Sender<ClientEvent>,
    reason: &str,
) -> bool {
    let ev = ClientEvent::DirectFailed {
        peer: p.name.clone(),
        reason: reason.to_string(),
    };
    emit(events, ev);
    mode != RelayMode::Never && p.relay_refused.is_none()
}

/// The peer stays on the relay: an established connection's application hears why.
fn staying_on_relay(
    p: &Peer,
    server: SocketAddr,
    events: &mpsc::Sender<ClientEvent>,
    reason: String,
) {
    if matches!(p.quic, Quic::Up(_)) {
        let ev = ClientEvent::Path {
            peer: p.name.clone(),
            path: relay_info(server),
            reason,
        };
        emit(events, ev);
    }
}

/// Punch again after the current backoff, and back off further for the time after.
fn repunch_later(p: &mut Peer, now: Instant) {
    p.retry_at = Some(now + p.backoff);
    p.backoff = (p.backoff * 2).min(REPUNCH_MAX);
}

pub(super) fn direct_info(d: Direct) -> PathInfo {
    PathInfo {
        kind: "direct",
        candidate: d.kind.as_str(),
        remote: d.addr,
        probe_rtt: d.rtt,
    }
}

pub(super) fn relay_info(server: SocketAddr) -> PathInfo {
    PathInfo {
        kind: "relay",
        candidate: "relay",
        remote: server,
        probe_rtt: Duration::ZERO,
    }
}

/// Point `virt` at `active`, and keep the application-visible description in step.
pub(super) fn set_path(
    paths: &PathTable,
    current: &Current,
    key: PublicKey,
    virt: SocketAddr,
    active: Active,
    info: PathInfo,
) {
    paths.set_active(virt, active);
    let mut c = lock(current);
    match active {
        Active::None => {
            c.remove(&key);
        }
        _ => {
            c.insert(key, info);
        }
    }
}

pub(super) fn emit(events: &mpsc::Sender<ClientEvent>, ev: ClientEvent) {
    if events.try_send(ev).is_err() {
        debug!("event queue full; event dropped");
    }
}

pub(super) fn candidates_text(info: &PeerInfo) -> String {
    let mut tried: Vec<String> = Vec::new();
    for a in info.private.iter().chain(std::iter::once(&info.public)) {
        let a = a.to_string();
        if !tried.contains(&a) {
            tried.push(a);
        }
    }
    tried.join(", ")
}
