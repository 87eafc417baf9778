//! The punch client: registration, introductions, hole punching and QUIC sessions.
//!
//! Owns one [`DemuxSocket`], the quinn endpoint on it, and a control task that drives the
//! rendezvous exchange (with retransmission and backoff) and one sans-IO
//! [`punch_proto::agent::Agent`] per punching session. It hands out authenticated
//! [`PeerConnection`]s: [`Client::connect`] for peers we ask for, [`Client::next_event`]
//! for peers that reach us and for failures. It does not own what runs over a connection
//! (chat, file transfer): callers open QUIC streams on [`PeerConnection::connection`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punch_proto::agent::{Agent, CandidateKind, Event as AgentEvent, PunchConfig};
use punch_proto::wire::{ErrorCode, Frame, PeerInfo, HI_RESPONSE};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::identity::{Identity, PublicKey};
use crate::socket::{ControlDatagram, DemuxSocket};
use crate::tls;

/// Interval of registration refreshes, which double as the keepalive toward the server:
/// below the 30 s after which many NATs drop idle UDP mappings (RFC 4787 REQ-5 asks for
/// at least 2 minutes, but real devices are often shorter).
pub const DEFAULT_SERVER_KEEPALIVE: Duration = Duration::from_secs(25);
/// QUIC keep-alive on a chosen peer path (the default).
pub const DEFAULT_PEER_KEEPALIVE: Duration = Duration::from_secs(15);
/// Give up reaching the server after this long without an answer.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// First retransmission timeout of a request to the server (RFC 8489 §6.2.1 uses 500 ms
/// for STUN over UDP; the rendezvous server is usually closer, so start lower), doubled
/// after each retransmission up to [`MAX_RTO`].
pub const INITIAL_RTO: Duration = Duration::from_millis(250);
/// Cap of the retransmission timeout.
pub const MAX_RTO: Duration = Duration::from_secs(2);
/// How long a finished punching session keeps answering the peer's probes, so the peer
/// can finish choosing its own path.
pub const SESSION_LINGER: Duration = Duration::from_secs(15);
/// Most punching sessions at once (bounds what a server or peer can make us hold).
pub const MAX_SESSIONS: usize = 256;
/// Most events queued for the application.
pub const EVENT_QUEUE: usize = 256;

/// How a client is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The rendezvous server.
    pub server: SocketAddr,
    /// The name to register.
    pub name: String,
    /// Local address to bind (default: any address, a random port).
    pub bind: SocketAddr,
    /// Registration refresh interval.
    pub server_keepalive: Duration,
    /// QUIC keep-alive on peer paths.
    pub peer_keepalive: Duration,
    /// How long to wait for the server before saying it is unreachable.
    pub server_timeout: Duration,
    /// The punching schedule.
    pub punch: PunchConfig,
}

impl ClientConfig {
    /// Defaults for everything but the server and the name.
    pub fn new(server: SocketAddr, name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            server,
            name: name.into(),
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            server_keepalive: DEFAULT_SERVER_KEEPALIVE,
            peer_keepalive: DEFAULT_PEER_KEEPALIVE,
            server_timeout: DEFAULT_SERVER_TIMEOUT,
            punch: PunchConfig::default(),
        }
    }
}

/// How a connection reaches the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// Always `"direct"` for now: a punched path.
    pub kind: &'static str,
    /// Which candidate won: `"private"`, `"public"` or `"peer-reflexive"`.
    pub candidate: &'static str,
    /// The peer's address on the path.
    pub remote: SocketAddr,
    /// Round-trip time of the probe that proved the path.
    pub probe_rtt: Duration,
}

/// An authenticated QUIC connection to a named peer.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    /// The peer's registered name.
    pub name: String,
    /// The peer's key, proven in the handshake.
    pub key: PublicKey,
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// The path it runs on.
    pub path: PathInfo,
}

/// Why a connection could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server refused the introduction.
    #[error("{}", .0.describe())]
    Refused(ErrorCode, String),
    /// The server did not answer.
    #[error("server unreachable: no answer from {0} within {1:?}")]
    ServerUnreachable(SocketAddr, Duration),
    /// No candidate answered before the punching deadline.
    #[error("no direct path within {0:?} (tried {1})")]
    NoPath(Duration, String),
    /// The path worked but the QUIC handshake failed (wrong key, peer gone).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// Too many sessions at once.
    #[error("too many punching sessions in progress")]
    Busy,
    /// The client shut down.
    #[error("client closed")]
    Closed,
}

/// Errors starting a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be bound.
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The server did not answer the registration.
    #[error("server unreachable: no answer from {0} within {1:?}")]
    ServerUnreachable(SocketAddr, Duration),
    /// The server refused the registration.
    #[error("registration refused: {0}")]
    Refused(String),
    /// TLS or QUIC setup failed.
    #[error("setup failed: {0}")]
    Setup(String),
}

/// Something the application should hear about.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A peer we were introduced to connected to us.
    Incoming(PeerConnection),
    /// A peer that wanted to reach us could not (no path, failed handshake).
    IncomingFailed {
        /// The peer's name.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The server answered a registration refresh after having been silent.
    ServerBack {
        /// The public address it observed.
        public: SocketAddr,
    },
    /// The server stopped answering registration refreshes.
    ServerLost,
}

enum Command {
    Connect {
        target: String,
        reply: oneshot::Sender<Result<PeerConnection, ConnectError>>,
    },
}

/// A running client. Dropping it stops its tasks.
pub struct Client {
    cmd_tx: mpsc::Sender<Command>,
    events: tokio::sync::Mutex<mpsc::Receiver<ClientEvent>>,
    endpoint: quinn::Endpoint,
    public: SocketAddr,
    local: SocketAddr,
    key: PublicKey,
    _tasks: Vec<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Peers we were introduced to as the passive side, by key.
type Introduced = Arc<Mutex<HashMap<PublicKey, PeerInfo>>>;

/// Which of a peer's reported candidates `remote` is.
fn classify(peer: &PeerInfo, remote: SocketAddr) -> &'static str {
    if peer.private.contains(&remote) {
        CandidateKind::Host.as_str()
    } else if peer.public == remote {
        CandidateKind::ServerReflexive.as_str()
    } else {
        CandidateKind::PeerReflexive.as_str()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Bind, register with the server and start serving. Fails if the server does not
    /// answer within `cfg.server_timeout` or refuses the name.
    pub async fn start(cfg: ClientConfig, identity: Identity) -> Result<Client, ClientError> {
        let (socket, mut ctl_rx) = DemuxSocket::bind(cfg.bind)
            .await
            .map_err(|e| ClientError::Bind(cfg.bind, e))?;
        let local = socket
            .local_addr()
            .map_err(|e| ClientError::Bind(cfg.bind, e))?;
        let ip = crate::nat::local_ip_toward(cfg.server, cfg.bind.ip());
        let private: Vec<SocketAddr> = if ip.is_unspecified() {
            Vec::new()
        } else {
            vec![SocketAddr::new(ip, local.port())]
        };
        let key = identity.public_key();

        // Register first, synchronously, so a bad server or a taken name fails start().
        let mut rng = rand::rng();
        let txn: u64 = rng.random();
        let register = Frame::Register {
            txn,
            name: cfg.name.clone(),
            key: *key.as_bytes(),
            private: private.clone(),
        }
        .encode()
        .map_err(|e| ClientError::Refused(format!("invalid registration: {e}")))?;
        let public = register_once(
            &socket,
            &mut ctl_rx,
            cfg.server,
            &register,
            txn,
            cfg.server_timeout,
        )
        .await?;
        info!(%public, %local, "registered with {}", cfg.server);

        let introduced: Introduced = Arc::new(Mutex::new(HashMap::new()));
        let accept_set = introduced.clone();
        let accept: tls::AcceptPeer =
            Arc::new(move |k: &PublicKey| lock(&accept_set).contains_key(k));
        let mut server_cfg =
            tls::server_config(&identity, accept).map_err(|e| ClientError::Setup(e.to_string()))?;
        server_cfg.transport_config(
            tls::transport_config(cfg.peer_keepalive)
                .map_err(|e| ClientError::Setup(e.to_string()))?,
        );
        let mut ep_cfg = quinn::EndpointConfig::default();
        // The first byte must tell QUIC from STUN and punch frames (see socket.rs).
        ep_cfg.grease_quic_bit(false);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            ep_cfg,
            Some(server_cfg),
            Arc::new(socket.clone()),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| ClientError::Setup(e.to_string()))?;

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let control = Control {
            cfg: cfg.clone(),
            identity: Arc::new(identity),
            socket,
            endpoint: endpoint.clone(),
            register,
            reg_txn: txn,
            private,
            server_ok: true,
            last_reg_answer: Instant::now(),
            next_register: Instant::now() + cfg.server_keepalive,
            reg_rto: INITIAL_RTO,
            connects: HashMap::new(),
            sessions: HashMap::new(),
            introduced: introduced.clone(),
            events: ev_tx.clone(),
        };
        let control_task = tokio::spawn(control.run(ctl_rx, cmd_rx));
        let accept_task = tokio::spawn(accept_loop(endpoint.clone(), introduced, ev_tx));
        Ok(Client {
            cmd_tx,
            events: tokio::sync::Mutex::new(ev_rx),
            endpoint,
            public,
            local,
            key,
            _tasks: vec![AbortOnDrop(control_task), AbortOnDrop(accept_task)],
        })
    }

    /// The public address the server observed at registration.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// The bound local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Our identity key.
    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    /// Ask the server for `peer`, punch a hole and open an authenticated QUIC connection.
    pub async fn connect(&self, peer: &str) -> Result<PeerConnection, ConnectError> {
        let (reply, rx) = oneshot::channel();
        self.cmd_tx
            .send(Command::Connect {
                target: peer.to_string(),
                reply,
            })
            .await
            .map_err(|_| ConnectError::Closed)?;
        rx.await.map_err(|_| ConnectError::Closed)?
    }

    /// The next event (incoming peers, failures, server state); `None` once closed.
    pub async fn next_event(&self) -> Option<ClientEvent> {
        self.events.lock().await.recv().await
    }

    /// Close every connection and wait briefly for the peers to hear it.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

async fn register_once(
    socket: &DemuxSocket,
    ctl_rx: &mut mpsc::Receiver<ControlDatagram>,
    server: SocketAddr,
    register: &[u8],
    txn: u64,
    timeout: Duration,
) -> Result<SocketAddr, ClientError> {
    let give_up = Instant::now() + timeout;
    let mut rto = INITIAL_RTO;
    loop {
        if let Err(e) = socket.send_to(register, server, None) {
            debug!(error = %e, "send to server failed");
        }
        let wait = (Instant::now() + rto).min(give_up);
        loop {
            let d = match tokio::time::timeout_at(wait, ctl_rx.recv()).await {
                Ok(Some(d)) => d,
                Ok(None) => return Err(ClientError::Setup("socket closed".into())),
                Err(_) => break,
            };
            if d.from != server {
                continue;
            }
            match Frame::decode(&d.data) {
                Ok(Frame::Registered {
                    txn: t, observed, ..
                }) if t == txn => return Ok(observed),
                Ok(Frame::Error { txn: t, reason, .. }) if t == txn => {
                    return Err(ClientError::Refused(reason))
                }
                _ => {}
            }
        }
        if Instant::now() >= give_up {
            return Err(ClientError::ServerUnreachable(server, timeout));
        }
        rto = (rto * 2).min(MAX_RTO);
    }
}

struct PendingConnect {
    target: String,
    frame: Vec<u8>,
    reply: oneshot::Sender<Result<PeerConnection, ConnectError>>,
    next: Instant,
    rto: Duration,
    give_up: Instant,
}

struct Session {
    agent: Agent,
    peer: PeerInfo,
    /// For the initiator: where to send the result.
    reply: Option<oneshot::Sender<Result<PeerConnection, ConnectError>>>,
    /// When a finished session is dropped.
    linger_until: Option<Instant>,
}

struct Control {
    cfg: ClientConfig,
    identity: Arc<Identity>,
    socket: DemuxSocket,
    endpoint: quinn::Endpoint,
    register: Vec<u8>,
    reg_txn: u64,
    private: Vec<SocketAddr>,
    server_ok: bool,
    last_reg_answer: Instant,
    next_register: Instant,
    reg_rto: Duration,
    connects: HashMap<u64, PendingConnect>,
    sessions: HashMap<u64, Session>,
    introduced: Introduced,
    events: mpsc::Sender<ClientEvent>,
}

impl Control {
    async fn run(
        mut self,
        mut ctl_rx: mpsc::Receiver<ControlDatagram>,
        mut cmd_rx: mpsc::Receiver<Command>,
    ) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                d = ctl_rx.recv() => match d {
                    Some(d) => self.on_datagram(d),
                    None => return,
                },
                c = cmd_rx.recv() => match c {
                    Some(Command::Connect { target, reply }) => self.start_connect(target, reply),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.on_timeout(Instant::now());
            self.flush();
        }
    }

    fn next_wake(&self) -> Instant {
        let mut t = self.next_register;
        for c in self.connects.values() {
            t = t.min(c.next).min(c.give_up);
        }
        for s in self.sessions.values() {
            if let Some(a) = s.agent.poll_timeout() {
                t = t.min(Instant::from_std(a));
            }
            if let Some(l) = s.linger_until {
                t = t.min(l);
            }
        }
        t
    }

    fn send(&self, data: &[u8], dest: SocketAddr, ttl: Option<u32>) {
        if let Err(e) = self.socket.send_to(data, dest, ttl) {
            debug!(%dest, error = %e, "send failed");
        }
    }

    fn start_connect(
        &mut self,
        target: String,
        reply: oneshot::Sender<Result<PeerConnection, ConnectError>>,
    ) {
        let txn: u64 = rand::rng().random();
        let frame = match (Frame::Connect {
            txn,
            target: target.clone(),
        })
        .encode()
        {
            Ok(f) => f,
            Err(e) => {
                let _ = reply.send(Err(ConnectError::Refused(
                    ErrorCode::BadRequest,
                    e.to_string(),
                )));
                return;
            }
        };
        if self.connects.len() + self.sessions.len() >= MAX_SESSIONS {
            let _ = reply.send(Err(ConnectError::Busy));
            return;
        }
        self.send(&frame, self.cfg.server, None);
        let now = Instant::now();
        self.connects.insert(
            txn,
            PendingConnect {
                target,
                frame,
                reply,
                next: now + INITIAL_RTO,
                rto: INITIAL_RTO,
                give_up: now + self.cfg.server_timeout,
            },
        );
    }

    fn on_datagram(&mut self, d: ControlDatagram) {
        let now = Instant::now();
        if d.data == HI_RESPONSE {
            return;
        }
        let frame = match Frame::decode(&d.data) {
            Ok(f) => f,
            Err(e) => {
                debug!(from = %d.from, error = %e, "dropping undecodable datagram");
                return;
            }
        };
        let from_server = d.from == self.cfg.server;
        match frame {
            Frame::Registered { txn, observed, .. } if from_server && txn == self.reg_txn => {
                self.last_reg_answer = now;
                self.reg_rto = INITIAL_RTO;
                self.next_register = now + self.cfg.server_keepalive;
                if !self.server_ok {
                    self.server_ok = true;
                    let _ = self
                        .events
                        .try_send(ClientEvent::ServerBack { public: observed });
                }
            }
            Frame::Error { txn, code, reason } if from_server => {
                if let Some(c) = self.connects.remove(&txn) {
                    let _ = c.reply.send(Err(ConnectError::Refused(code, reason)));
                } else if txn == self.reg_txn {
                    warn!(%reason, "server refused registration refresh");
                }
            }
            Frame::Introduce {
                txn,
                session,
                initiator,
                peer,
            } if from_server => self.on_introduce(now, txn, session, initiator, peer),
            Frame::PeerReady { session } if from_server => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.agent.peer_ready(now.into_std());
                }
            }
            f @ (Frame::Probe { .. } | Frame::ProbeAck { .. }) => {
                let session = match f {
                    Frame::Probe { session, .. } | Frame::ProbeAck { session, .. } => session,
                    _ => return,
                };
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.agent.handle_frame(now.into_std(), d.from, &f);
                }
            }
            _ => debug!(from = %d.from, "ignoring unexpected frame"),
        }
    }

    fn on_introduce(
        &mut self,
        now: Instant,
        txn: u64,
        session: u64,
        initiator: bool,
        peer: PeerInfo,
    ) {
        if self.sessions.contains_key(&session) {
            // A retransmitted introduction: our acknowledgement was lost.
            self.ack_introduction(session);
            return;
        }
        let reply = if initiator {
            match self.connects.remove(&txn) {
                Some(c) => Some(c.reply),
                None => return, // stale: we gave up on that request
            }
        } else {
            None
        };
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(r) = reply {
                let _ = r.send(Err(ConnectError::Busy));
            }
            return;
        }
        let key = PublicKey::from_bytes(peer.key);
        if !initiator {
            lock(&self.introduced).insert(key, peer.clone());
        }
        let mut candidates: Vec<(SocketAddr, CandidateKind)> = peer
            .private
            .iter()
            // Our own address would answer our own probes; and a "private" address equal
            // to the public one (a host with a public address) is simply the public one.
            .filter(|a| !self.private.contains(a) && **a != peer.public)
            .map(|a| (*a, CandidateKind::Host))
            .collect();
        candidates.push((peer.public, CandidateKind::ServerReflexive));
        info!(peer = %peer.name, ?candidates, initiator, "introduced; punching");
        let agent = Agent::new(self.cfg.punch.clone(), session, candidates, now.into_std());
        self.sessions.insert(
            session,
            Session {
                agent,
                peer,
                reply,
                linger_until: None,
            },
        );
        // The opening probes must be on the wire before the acknowledgement: the server
        // relays it to the peer as the signal that our NAT is open (see agent docs).
        self.flush();
        self.ack_introduction(session);
    }

    fn ack_introduction(&self, session: u64) {
        if let Ok(ack) = (Frame::IntroduceAck { session }).encode() {
            self.send(&ack, self.cfg.server, None);
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        // Registration refresh / retransmission.
        if now >= self.next_register {
            self.send(&self.register.clone(), self.cfg.server, None);
            let silent_for = now.saturating_duration_since(self.last_reg_answer);
            if self.server_ok && silent_for > self.cfg.server_keepalive + self.cfg.server_timeout {
                self.server_ok = false;
                let _ = self.events.try_send(ClientEvent::ServerLost);
            }
            // Until the answer comes, retransmit with backoff; the answer resets the timer.
            self.next_register = now + self.reg_rto;
            self.reg_rto = (self.reg_rto * 2).min(self.cfg.server_keepalive);
        }
        // Connect requests.
        let mut expired = Vec::new();
        for (txn, c) in self.connects.iter_mut() {
            if now >= c.give_up {
                expired.push(*txn);
            } else if now >= c.next {
                if let Err(e) = self.socket.send_to(&c.frame, self.cfg.server, None) {
                    debug!(error = %e, "send failed");
                }
                c.rto = (c.rto * 2).min(MAX_RTO);
                c.next = now + c.rto;
            }
        }
        for txn in expired {
            if let Some(c) = self.connects.remove(&txn) {
                debug!(target = %c.target, "connect request timed out");
                let _ = c.reply.send(Err(ConnectError::ServerUnreachable(
                    self.cfg.server,
                    self.cfg.server_timeout,
                )));
            }
        }
        // Punching sessions.
        let std_now = now.into_std();
        let mut finished = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            s.agent.handle_timeout(std_now);
            if s.linger_until.is_some_and(|l| now >= l) {
                finished.push(*id);
            }
        }
        for id in finished {
            self.sessions.remove(&id);
        }
    }

    /// Drain every agent's transmits and events.
    fn flush(&mut self) {
        let now = Instant::now();
        let mut results = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            while let Some(t) = s.agent.poll_transmit() {
                if let Err(e) = self.socket.send_to(&t.payload, t.dest, t.ttl) {
                    debug!(dest = %t.dest, error = %e, "probe send failed");
                }
            }
            while let Some(ev) = s.agent.poll_event() {
                s.linger_until = Some(now + SESSION_LINGER);
                results.push((*id, ev));
            }
        }
        for (id, ev) in results {
            self.on_agent_event(id, ev);
        }
    }

    fn on_agent_event(&mut self, id: u64, ev: AgentEvent) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let peer = s.peer.clone();
        let key = PublicKey::from_bytes(peer.key);
        match ev {
            AgentEvent::Selected { addr, kind, rtt } => {
                let path = PathInfo {
                    kind: "direct",
                    candidate: kind.as_str(),
                    remote: addr,
                    probe_rtt: rtt,
                };
                info!(peer = %peer.name, %addr, candidate = kind.as_str(), ?rtt, "path selected");
                // The passive side (no reply waiting) learns its path from the QUIC
                // connection itself, in the accept loop.
                if let Some(reply) = s.reply.take() {
                    let endpoint = self.endpoint.clone();
                    let identity = self.identity.clone();
                    let keepalive = self.cfg.peer_keepalive;
                    tokio::spawn(async move {
                        let r =
                            quic_connect(&endpoint, &identity, key, keepalive, &peer.name, path)
                                .await;
                        let _ = reply.send(r);
                    });
                }
            }
            AgentEvent::Failed(_) => {
                let mut tried: Vec<String> = peer.private.iter().map(|a| a.to_string()).collect();
                tried.push(peer.public.to_string());
                let err = ConnectError::NoPath(self.cfg.punch.deadline, tried.join(", "));
                warn!(peer = %peer.name, "{err}");
                match s.reply.take() {
                    Some(reply) => {
                        let _ = reply.send(Err(err));
                    }
                    None => {
                        let _ = self.events.try_send(ClientEvent::IncomingFailed {
                            peer: peer.name,
                            reason: err.to_string(),
                        });
                    }
                }
            }
        }
    }
}

async fn quic_connect(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    key: PublicKey,
    keepalive: Duration,
    name: &str,
    path: PathInfo,
) -> Result<PeerConnection, ConnectError> {
    let mut cfg =
        tls::client_config(identity, key).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    cfg.transport_config(
        tls::transport_config(keepalive).map_err(|e| ConnectError::Handshake(e.to_string()))?,
    );
    let connecting = endpoint
        .connect_with(cfg, path.remote, tls::SERVER_NAME)
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let connection = connecting
        .await
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    Ok(PeerConnection {
        name: name.to_string(),
        key,
        connection,
        path,
    })
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    introduced: Introduced,
    events: mpsc::Sender<ClientEvent>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let introduced = introduced.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, error = %e, "incoming handshake failed");
                    return;
                }
            };
            let Some(key) = tls::peer_public_key(&connection) else {
                return;
            };
            let Some(peer) = lock(&introduced).get(&key).cloned() else {
                connection.close(1u32.into(), b"not introduced");
                return;
            };
            let path = PathInfo {
                kind: "direct",
                candidate: classify(&peer, remote),
                remote,
                probe_rtt: connection.rtt(),
            };
            let name = peer.name;
            let _ = events
                .send(ClientEvent::Incoming(PeerConnection {
                    name,
                    key,
                    connection,
                    path,
                }))
                .await;
        });
    }
}
