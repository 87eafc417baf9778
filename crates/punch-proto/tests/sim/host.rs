//! The host driver: one UDP socket running the real client [`Session`] and the app
//! transport ([`super::stream`]), the way the tokio driver in `crates/punch` runs them.
//!
//! Owns the demultiplexing of what arrives on the socket (relayed datagrams from the
//! server go to the app transport, after checking the relay session is the sender's;
//! punch frames, first byte below 64, go to the session; the rest is the app's, as QUIC's
//! would be), waking the session and the app at their deadlines, turning the session's
//! events into per-peer routes, relay sessions and connections, sending each peer's app
//! datagrams along its route, and the record of every event with its time. The test knobs
//! of the pair scenarios live here too (a delayed server, dropped acknowledgements of
//! introductions, a lost opening probe). It does not own the session's decisions, the
//! transport's reliability ([`super::stream`]) or the network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch_proto::agent::{PunchConfig, Transmit};
use punch_proto::auth::SigningKey;
use punch_proto::client::{Config, Event, PathKind, PeerKey, RelayMode, Route, Session};
use punch_proto::nat::Classic;
use punch_proto::wire::{self, Frame};

use super::stream::{self, App};
use super::{SiteId, SERVER};

/// How a host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The name it registers.
    pub name: String,
    /// Its relay use.
    pub relay: RelayMode,
    /// Its punching schedule.
    pub punch: PunchConfig,
    /// Its NAT type, told to the session at start as NAT discovery would (`None`: never).
    pub nat: Option<Classic>,
    /// Extra one-way delay of every datagram from the server to this host.
    pub server_delay: Duration,
    /// Drop every `IntroduceAck` it sends (the server then never relays a ready signal).
    pub drop_intro_acks: bool,
    /// Lose the first low-TTL datagram it sends to each destination, on its first LAN
    /// hop: its NAT never sees it. Later copies pass.
    pub lose_opening: bool,
    /// Open the connection when the session says so (`false`: punching only).
    pub open_connections: bool,
}

impl HostConfig {
    /// A host named `name` with the session's defaults (relay `Auto`).
    pub fn new(name: &str) -> HostConfig {
        HostConfig {
            name: name.to_string(),
            relay: RelayMode::Auto,
            punch: PunchConfig::default(),
            nat: None,
            server_delay: Duration::ZERO,
            drop_intro_acks: false,
            lose_opening: false,
            open_connections: true,
        }
    }
}

/// A route as it was set, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    /// Virtual time.
    pub at: Duration,
    /// The peer.
    pub peer: PeerKey,
    /// The new route.
    pub route: Route,
}

/// One simulated host.
pub struct Host {
    pub(super) site: SiteId,
    pub(super) addr: SocketAddr,
    base: Instant,
    cfg: HostConfig,
    /// Its key.
    pub key: PeerKey,
    /// The real client session.
    pub session: Session,
    /// The app transport.
    pub app: App,
    routes: BTreeMap<PeerKey, Route>,
    relay_sessions: BTreeMap<PeerKey, [Option<u64>; 2]>,
    /// Every session event, with its virtual time, in order.
    pub events: Vec<(Duration, Event)>,
    /// When the first introduction arrived.
    pub started: Option<Duration>,
    /// Datagrams the host sent (including those its knobs dropped).
    pub sent: usize,
    /// App datagrams dropped for want of a route.
    pub no_route: usize,
    /// Relayed datagrams dropped: not app traffic of a relay session of the sender.
    pub relay_unknown: usize,
    outbox: Vec<Transmit>,
    /// Destinations whose first low-TTL datagram was lost.
    lost_opening: Vec<SocketAddr>,
    /// The session asked for a fresh port ([`Event::Rebind`]); the network gives it one.
    pub(super) rebind: bool,
}

impl Host {
    pub(super) fn new(
        cfg: HostConfig,
        site: SiteId,
        addr: SocketAddr,
        signer: SigningKey,
        base: Instant,
        now: Instant,
        seed: u64,
    ) -> Host {
        let key: PeerKey = signer.public_key();
        let mut scfg = Config::new(SERVER, cfg.name.clone(), signer);
        scfg.private = vec![addr];
        scfg.punch = cfg.punch.clone();
        scfg.relay = cfg.relay;
        let mut session = Session::new(scfg, now, seed).expect("a valid session config");
        if let Some(classic) = cfg.nat {
            session.set_nat(now, classic);
        }
        let mut host = Host {
            site,
            addr,
            base,
            cfg,
            key,
            session,
            app: App::new(key, seed ^ 0xa99),
            routes: BTreeMap::new(),
            relay_sessions: BTreeMap::new(),
            events: Vec::new(),
            started: None,
            sent: 0,
            no_route: 0,
            relay_unknown: 0,
            outbox: Vec::new(),
            lost_opening: Vec::new(),
            rebind: false,
        };
        host.pump(now.saturating_duration_since(base), now);
        host
    }

    pub(super) fn server_delay(&self) -> Duration {
        self.cfg.server_delay
    }

    /// The route of `peer`'s datagrams now.
    pub fn route(&self, peer: &PeerKey) -> Route {
        self.routes.get(peer).copied().unwrap_or(Route::None)
    }

    /// Every route change, in order.
    pub fn route_changes(&self) -> Vec<RouteChange> {
        self.events
            .iter()
            .filter_map(|(at, ev)| match ev {
                Event::Route { peer, route, .. } => Some(RouteChange {
                    at: *at,
                    peer: *peer,
                    route: *route,
                }),
                _ => None,
            })
            .collect()
    }

    /// A datagram arrived on the socket from `from`.
    pub(super) fn receive(&mut self, at: Duration, now: Instant, from: SocketAddr, data: &[u8]) {
        let first = data.first().copied().unwrap_or(0);
        if from == SERVER && first == wire::RELAY_TAG {
            self.receive_relayed(at, now, data);
        } else if first < stream::QUIC_FIRST {
            if self.started.is_none() && from == SERVER {
                if let Ok(Frame::Introduce { .. }) = Frame::decode(data) {
                    self.started = Some(at);
                }
            }
            self.session.handle_datagram(now, from, data);
        } else {
            self.app
                .receive(at, now, PathKind::Direct, data, &mut self.session);
        }
        self.pump(at, now);
    }

    /// A relayed datagram: the app's, if its session is one of the sender's.
    fn receive_relayed(&mut self, at: Duration, now: Instant, data: &[u8]) {
        let Some((_, session, inner)) = wire::decode_relay(data) else {
            self.relay_unknown += 1;
            return;
        };
        let known = stream::sender(inner).is_some_and(|peer| {
            self.relay_sessions
                .get(&peer)
                .is_some_and(|s| s.contains(&Some(session)))
        });
        if !known {
            self.relay_unknown += 1;
            return;
        }
        self.app
            .receive(at, now, PathKind::Relay, inner, &mut self.session);
    }

    /// When [`Host::wake`] should run next, as virtual time.
    pub(super) fn next_wake(&self) -> Option<Duration> {
        let session = self
            .session
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.base));
        match (session, self.app.next_wake()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers: the session's when due, then the app's.
    pub(super) fn wake(&mut self, at: Duration, now: Instant) {
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
        self.app.wake(at, now, &mut self.session);
        self.pump(at, now);
    }

    /// After every input: handle the session's events, queue its datagrams, then the
    /// app's along the peers' routes; repeat while the app's reports make more.
    pub(super) fn pump(&mut self, at: Duration, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.session.poll_event() {
                busy = true;
                if std::env::var_os("SIM_TRACE").is_some() {
                    eprintln!("{at:?} {} {ev:?}", self.cfg.name);
                }
                self.on_event(at, now, &ev);
                self.events.push((at, ev));
            }
            while let Some(t) = self.session.poll_transmit() {
                if std::env::var_os("SIM_TRACE").is_some() {
                    if let Ok(f) = Frame::decode(&t.payload) {
                        if !matches!(f, Frame::Probe { .. } | Frame::ProbeAck { .. }) {
                            eprintln!("{at:?} {} sends {f:?} to {}", self.cfg.name, t.dest);
                        }
                    }
                }
                self.outbox.push(t);
            }
            for (peer, payload) in self.app.take_out() {
                busy = true;
                self.send_app(peer, payload);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_event(&mut self, at: Duration, now: Instant, ev: &Event) {
        match ev {
            Event::Route { peer, route, .. } => {
                self.routes.insert(*peer, *route);
            }
            Event::RelaySessions { peer, sessions } => {
                self.relay_sessions.insert(*peer, *sessions);
            }
            Event::OpenConnection { peer } if self.cfg.open_connections => {
                self.app.open(at, now, *peer)
            }
            Event::PeerRemoved { peer, .. } => {
                self.routes.remove(peer);
                self.relay_sessions.remove(peer);
            }
            Event::Rebind => self.rebind = true,
            _ => {}
        }
    }

    /// Send an app datagram to `peer` the way its route says (none: drop it).
    fn send_app(&mut self, peer: PeerKey, payload: Vec<u8>) {
        let (dest, payload) = match self.route(&peer) {
            Route::None => {
                self.no_route += 1;
                return;
            }
            Route::Direct(addr) => (addr, payload),
            Route::Relay {
                server,
                side,
                session,
            } => (server, wire::encode_relay(side, session, &payload)),
        };
        self.outbox.push(Transmit {
            dest,
            ttl: None,
            payload,
        });
    }

    /// What to put on the wire, and how many datagrams the knobs dropped.
    pub(super) fn take_outbox(&mut self) -> (Vec<Transmit>, usize) {
        let out = std::mem::take(&mut self.outbox);
        self.sent += out.len();
        let before = out.len();
        let cfg = &self.cfg;
        let lost = &mut self.lost_opening;
        let out: Vec<Transmit> = out
            .into_iter()
            .filter(|t| {
                if cfg.drop_intro_acks
                    && matches!(Frame::decode(&t.payload), Ok(Frame::IntroduceAck { .. }))
                {
                    return false;
                }
                if cfg.lose_opening && t.ttl.is_some() && !lost.contains(&t.dest) {
                    lost.push(t.dest);
                    return false;
                }
                true
            })
            .collect();
        let dropped = before - out.len();
        (out, dropped)
    }
}
