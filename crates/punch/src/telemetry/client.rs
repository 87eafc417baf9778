//! The client's metrics, all named `punch_client_*`, driven by what the client reports.
//!
//! Owns the names, labels and help texts, and [`ClientMetrics`], which an application
//! feeds with the [`ClientEvent`]s it receives and with what only it sees (when it asked
//! for a connection, when a connection was taken in or ended, its own NAT type). It
//! decides nothing about connections: it only counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};
use punch_proto::client::{Path, PathKind, PathReason, Transport};
use punch_proto::nat::Classic;

use crate::client::ClientEvent;

/// The path carrying each peer (labels `peer`, `path`): one series at 1 per peer.
pub const PATH: &str = "punch_client_path";
/// Time from asking for a connection to its first direct path.
pub const TIME_TO_DIRECT: &str = "punch_client_time_to_direct_seconds";
/// Punching outcomes (labels `outcome`, `pair`).
pub const PUNCH_OUTCOMES: &str = "punch_client_punch_outcomes_total";
/// Connections asked for (label `result`).
pub const CONNECTS: &str = "punch_client_connects_total";
/// Connections from peers (label `result`).
pub const INCOMING: &str = "punch_client_incoming_total";
/// Registrations with the server.
pub const REGISTRATIONS: &str = "punch_client_registrations_total";
/// Times the server stopped answering.
pub const SERVER_LOST: &str = "punch_client_server_lost_total";

/// Peers given metrics of their own; more are counted in the totals only (a peer's name
/// is a label, and labels must stay bounded).
pub const MAX_PEERS: usize = 256;

/// The values of the `path` label of [`PATH`].
const PATHS: [&str; 5] = ["direct", "relay", "tcp-direct", "tcp-relay", "none"];

/// The `path` label of a path (`None`: no path now).
pub fn path_label(path: Option<&Path>) -> &'static str {
    match path.map(|p| (p.kind, p.transport)) {
        Some((PathKind::Direct, Transport::Udp)) => "direct",
        Some((PathKind::Relay, Transport::Udp)) => "relay",
        Some((PathKind::Direct, Transport::Tcp)) => "tcp-direct",
        Some((PathKind::Relay, Transport::Tcp)) => "tcp-relay",
        None => "none",
    }
}

/// The `pair` label of [`PUNCH_OUTCOMES`]: the two NAT types in alphabetical order (the
/// class is the same from either side), `unknown` for a type not known.
pub fn pair_label(a: Option<Classic>, b: Option<Classic>) -> String {
    let name = |c: Option<Classic>| c.map_or("unknown", Classic::as_str);
    let (a, b) = (name(a), name(b));
    if a <= b {
        format!("{a}/{b}")
    } else {
        format!("{b}/{a}")
    }
}

fn describe() {
    describe_gauge!(
        PATH,
        "The path carrying each peer's connection: direct, relay (UDP), tcp-direct, tcp-relay, \
         or none (no path now, or the connection ended). Exactly one path is 1 per peer."
    );
    describe_histogram!(
        TIME_TO_DIRECT,
        Unit::Seconds,
        "Seconds from asking for a connection (a peer we named) to its first direct path, \
         UDP or TCP. Connections that never get one are not counted."
    );
    describe_counter!(
        PUNCH_OUTCOMES,
        "Punching outcomes by NAT pair (both types, alphabetical; unknown when not known): \
         direct or tcp_direct (a direct path was found), failed (none within the deadline), \
         impossible (the two NAT types rule it out, so punching was skipped)."
    );
    describe_counter!(
        CONNECTS,
        "Connections we asked for, by result: ok or failed."
    );
    describe_counter!(
        INCOMING,
        "Connections peers opened to us, by result: ok or failed."
    );
    describe_counter!(
        REGISTRATIONS,
        "Registrations with the server: the first, and each after the server was lost."
    );
    describe_counter!(SERVER_LOST, "Times the server stopped answering.");
}

/// One peer's series and what is known of it.
#[derive(Debug)]
struct Peer {
    gauges: [Gauge; PATHS.len()],
    /// The `path` label now at 1.
    path: &'static str,
    /// When we asked for a connection, until it first has a direct path.
    asked: Option<Instant>,
    nat: Option<Classic>,
}

#[derive(Debug, Default)]
struct State {
    own_nat: Option<Classic>,
    peers: HashMap<String, Peer>,
}

/// The client's metric handles and the little state they need.
#[derive(Debug)]
pub struct ClientMetrics {
    state: Mutex<State>,
    time_to_direct: Histogram,
    connects_ok: Counter,
    connects_failed: Counter,
    incoming_ok: Counter,
    incoming_failed: Counter,
    registrations: Counter,
    server_lost: Counter,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        ClientMetrics::new()
    }
}

impl ClientMetrics {
    /// Register the handles with the current recorder (no-ops without one).
    pub fn new() -> ClientMetrics {
        describe();
        ClientMetrics {
            state: Mutex::new(State::default()),
            time_to_direct: histogram!(TIME_TO_DIRECT),
            connects_ok: counter!(CONNECTS, "result" => "ok"),
            connects_failed: counter!(CONNECTS, "result" => "failed"),
            incoming_ok: counter!(INCOMING, "result" => "ok"),
            incoming_failed: counter!(INCOMING, "result" => "failed"),
            registrations: counter!(REGISTRATIONS),
            server_lost: counter!(SERVER_LOST),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client registered with the server.
    pub fn registered(&self) {
        self.registrations.increment(1);
    }

    /// Our own NAT type, once discovery found it.
    pub fn own_nat(&self, classic: Classic) {
        self.state().own_nat = Some(classic);
    }

    /// We asked for a connection to `peer` (the clock of [`TIME_TO_DIRECT`] starts).
    pub fn connect_started(&self, peer: &str) {
        if let Some(p) = peer_entry(&mut self.state(), peer) {
            p.asked = Some(Instant::now());
        }
    }

    /// Our request for a connection to `peer` ended: `ok` when connected.
    pub fn connect_done(&self, peer: &str, ok: bool) {
        if ok {
            self.connects_ok.increment(1);
        } else {
            self.connects_failed.increment(1);
            if let Some(p) = self.state().peers.get_mut(peer) {
                p.asked = None;
            }
        }
    }

    /// A connection to `peer` was taken into use, on `path` (`incoming`: the peer opened it).
    pub fn connected(&self, peer: &str, path: Option<&Path>, incoming: bool) {
        if incoming {
            self.incoming_ok.increment(1);
        }
        self.set_path(peer, path_label(path));
    }

    /// The connection to `peer` ended.
    pub fn disconnected(&self, peer: &str) {
        let mut state = self.state();
        if let Some(p) = state.peers.get_mut(peer) {
            p.asked = None;
            set_gauges(p, "none");
        }
    }

    /// Take in what the client reported.
    pub fn event(&self, ev: &ClientEvent) {
        match ev {
            ClientEvent::IncomingFailed { .. } => self.incoming_failed.increment(1),
            ClientEvent::Path { peer, path, .. } => self.set_path(peer, path_label(path.as_ref())),
            ClientEvent::DirectFailed { peer, reason } => {
                let outcome = match reason {
                    PathReason::Impossible(_) => "impossible",
                    _ => "failed",
                };
                self.outcome(peer, outcome);
            }
            ClientEvent::PeerNat { peer, classic } => {
                if let Some(p) = peer_entry(&mut self.state(), peer) {
                    p.nat = Some(*classic);
                }
            }
            ClientEvent::ServerBack { .. } => self.registered(),
            ClientEvent::ServerLost => self.server_lost.increment(1),
            _ => {}
        }
    }

    /// `peer` is on the path labelled `label` now: move its gauge; a move onto a direct
    /// path is a punching success (and, the first time after we asked, a time to direct).
    fn set_path(&self, peer: &str, label: &'static str) {
        let mut state = self.state();
        let own = state.own_nat;
        let Some(p) = peer_entry(&mut state, peer) else {
            return;
        };
        let direct = |l: &str| l == "direct" || l == "tcp-direct";
        let punched = direct(label) && !direct(p.path);
        set_gauges(p, label);
        if !punched {
            return;
        }
        if let Some(asked) = p.asked.take() {
            self.time_to_direct.record(asked.elapsed().as_secs_f64());
        }
        let outcome = if label == "direct" {
            "direct"
        } else {
            "tcp_direct"
        };
        let pair = pair_label(own, p.nat);
        drop(state);
        counter!(PUNCH_OUTCOMES, "outcome" => outcome, "pair" => pair).increment(1);
    }

    fn outcome(&self, peer: &str, outcome: &'static str) {
        let state = self.state();
        let theirs = state.peers.get(peer).and_then(|p| p.nat);
        let pair = pair_label(state.own_nat, theirs);
        drop(state);
        counter!(PUNCH_OUTCOMES, "outcome" => outcome, "pair" => pair).increment(1);
    }
}

/// `peer`'s entry, made (with its series) on first sight while fewer than [`MAX_PEERS`].
fn peer_entry<'a>(state: &'a mut State, peer: &str) -> Option<&'a mut Peer> {
    if !state.peers.contains_key(peer) {
        if state.peers.len() >= MAX_PEERS {
            return None;
        }
        let gauges = PATHS.map(|path| gauge!(PATH, "peer" => peer.to_string(), "path" => path));
        let mut entry = Peer {
            gauges,
            path: "none",
            asked: None,
            nat: None,
        };
        set_gauges(&mut entry, "none");
        state.peers.insert(peer.to_string(), entry);
    }
    state.peers.get_mut(peer)
}

/// Set `label`'s series of `p` to 1 and the others to 0.
fn set_gauges(p: &mut Peer, label: &'static str) {
    p.path = label;
    for (g, l) in p.gauges.iter().zip(PATHS) {
        g.set(if l == label { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PublicKey;
    use punch_proto::agent::CandidateKind;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn path_event(peer: &str, path: Option<Path>, reason: PathReason) -> ClientEvent {
        ClientEvent::Path {
            peer: peer.into(),
            key: PublicKey::from_bytes([7; 32]),
            path,
            reason,
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn pairs_read_the_same_from_both_sides() {
        let (a, b) = (Some(Classic::Symmetric), Some(Classic::PortRestrictedCone));
        assert_eq!(pair_label(a, b), "port-restricted-cone/symmetric");
        assert_eq!(pair_label(b, a), pair_label(a, b));
        assert_eq!(pair_label(None, a), "symmetric/unknown");
    }

    #[test]
    fn one_path_per_peer_and_a_move_to_direct_is_a_punch_and_a_time_to_direct() {
        let recorder = super::super::recorder();
        let handle = recorder.handle();
        let server = SocketAddr::from(([192, 0, 2, 1], 3478));
        let peer_addr = SocketAddr::from(([198, 51, 100, 9], 4000));
        metrics::with_local_recorder(&recorder, || {
            let m = ClientMetrics::new();
            m.own_nat(Classic::FullCone);
            m.connect_started("bob");
            m.connect_done("bob", true);
            m.connected("bob", Some(&Path::relay(server)), false);
            m.event(&ClientEvent::PeerNat {
                peer: "bob".into(),
                classic: Classic::Symmetric,
            });
            let direct = Path::direct(
                peer_addr,
                CandidateKind::ServerReflexive,
                Duration::from_millis(3),
            );
            let confirmed = PathReason::DirectConfirmed {
                candidate: CandidateKind::ServerReflexive,
                addr: peer_addr,
                rtt: Duration::from_millis(3),
            };
            m.event(&path_event("bob", Some(direct), confirmed.clone()));
            // A second report of the same direct path is no new punch.
            m.event(&path_event("bob", Some(direct), confirmed));
            m.event(&ClientEvent::DirectFailed {
                peer: "carol".into(),
                reason: PathReason::Impossible("both NATs randomise ports".into()),
            });
        });
        let text = handle.render();
        let bob = |path: &str| {
            value(
                &text,
                &format!("punch_client_path{{peer=\"bob\",path=\"{path}\"}}"),
            )
        };
        assert_eq!(bob("direct"), Some(1.0), "{text}");
        assert_eq!(bob("relay"), Some(0.0));
        assert_eq!(bob("none"), Some(0.0));
        let outcome =
            "punch_client_punch_outcomes_total{outcome=\"direct\",pair=\"full-cone/symmetric\"}";
        assert_eq!(value(&text, outcome), Some(1.0), "{text}");
        let impossible =
            "punch_client_punch_outcomes_total{outcome=\"impossible\",pair=\"full-cone/unknown\"}";
        assert_eq!(value(&text, impossible), Some(1.0), "{text}");
        assert_eq!(
            value(&text, "punch_client_time_to_direct_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "punch_client_connects_total{result=\"ok\"}"),
            Some(1.0)
        );
    }
}
