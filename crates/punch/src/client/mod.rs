//! The punch client: registration, introductions, hole punching, relay and QUIC sessions.
//!
//! Owns one [`DemuxSocket`], the quinn endpoint on it, and a control task
//! (the private `control` module) that drives the rendezvous exchange (with retransmission and backoff),
//! one sans-IO [`punch_proto::agent::Agent`] per punching attempt, the relay fallback and
//! the checks of direct paths. Each peer has a stable virtual address
//! ([`crate::paths`]); the control task points it at the relay or at a direct path, and
//! the QUIC connection on top never notices the switch.
//!
//! It hands out authenticated [`PeerConnection`]s: [`Client::connect`] for peers we ask
//! for, [`Client::next_event`] for peers that reach us, path changes and failures. It does
//! not own what runs over a connection (chat, file transfer): callers open QUIC streams on
//! [`PeerConnection::connection`].

mod control;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punch_proto::agent::PunchConfig;
use punch_proto::nat::Classic;
use punch_proto::wire::{ErrorCode, Frame};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};

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
/// Most events queued for the application.
pub const EVENT_QUEUE: usize = 256;

/// Whether connections may, must or must not use the server's relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Start on the relay at once, punch in parallel, move to direct when it works.
    #[default]
    Auto,
    /// Direct only: wait for punching, fail if it fails.
    Never,
    /// Relay only: no punching.
    Only,
}

impl std::str::FromStr for RelayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RelayMode::Auto),
            "never" => Ok(RelayMode::Never),
            "only" => Ok(RelayMode::Only),
            other => Err(format!(
                "relay mode must be auto, never or only, not {other:?}"
            )),
        }
    }
}

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
    /// Relay use.
    pub relay: RelayMode,
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
            relay: RelayMode::default(),
        }
    }
}

/// How a connection reaches the peer at some moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// `"direct"` (a punched path) or `"relay"` (through the server).
    pub kind: &'static str,
    /// For direct paths, which candidate won: `"private"`, `"public"` or
    /// `"peer-reflexive"`; `"relay"` for the relay.
    pub candidate: &'static str,
    /// The peer's real address on a direct path; the server's on the relay.
    pub remote: SocketAddr,
    /// Round-trip time of the probe that proved a direct path (zero for the relay).
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
    /// The path it ran on when it was established (changes arrive as
    /// [`ClientEvent::Path`]).
    pub path: PathInfo,
    /// We opened it (else the peer did: when both ask for each other at once, one
    /// connection serves both requests).
    pub opened_by_us: bool,
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
    /// No candidate answered before the punching deadline, and no relay could be used.
    #[error("no direct path within {0:?} (tried {1}){2}")]
    NoPath(Duration, String, String),
    /// The two NAT types rule out a direct path, and no relay may be used.
    #[error("{0}")]
    Impossible(String),
    /// The path worked but the QUIC handshake failed (wrong key, peer gone).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// Too many peers at once.
    #[error("too many peers at once")]
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
    /// The path carrying a peer's traffic changed.
    Path {
        /// The peer's name.
        peer: String,
        /// The path now.
        path: PathInfo,
        /// Why it changed, in words.
        reason: String,
    },
    /// A peer lost every path for now (the relay ended, no direct path); the connection
    /// stays open and recovers when a path comes back.
    PathError {
        /// The peer's name.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Punching toward a peer ended without a direct path (it failed, or the NAT types
    /// rule one out). The connection carries on over the relay if it may, and punching is
    /// retried later where it can succeed; an application may try another transport.
    DirectFailed {
        /// The peer's name.
        peer: String,
        /// Why, in words.
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

pub(crate) enum Command {
    Connect {
        target: String,
        reply: oneshot::Sender<Result<PeerConnection, ConnectError>>,
    },
    SetNat(Classic),
}

/// A running client. Dropping it stops its tasks.
pub struct Client {
    cmd_tx: mpsc::Sender<Command>,
    events: tokio::sync::Mutex<mpsc::Receiver<ClientEvent>>,
    endpoint: quinn::Endpoint,
    public: SocketAddr,
    local: SocketAddr,
    key: PublicKey,
    current: Current,
    _tasks: Vec<AbortOnDrop>,
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The path each peer's traffic takes now, as the application sees it.
pub(crate) type Current = Arc<Mutex<HashMap<PublicKey, PathInfo>>>;

/// Keys of the peers we were introduced to: the only ones whose connections we accept.
pub(crate) type Introduced = Arc<Mutex<HashSet<PublicKey>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        let txn: u64 = rand::rng().random();
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

        let introduced: Introduced = Arc::new(Mutex::new(HashSet::new()));
        let accept_set = introduced.clone();
        let accept: tls::AcceptPeer = Arc::new(move |k: &PublicKey| lock(&accept_set).contains(k));
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

        let current: Current = Arc::new(Mutex::new(HashMap::new()));
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let control = control::Control::new(control::Setup {
            cfg: cfg.clone(),
            identity: Arc::new(identity),
            socket,
            endpoint: endpoint.clone(),
            register,
            reg_txn: txn,
            private,
            introduced: introduced.clone(),
            current: current.clone(),
            events: ev_tx,
        });
        let internal = control.internal();
        let control_task = tokio::spawn(control.run(ctl_rx, cmd_rx));
        let accept_task =
            tokio::spawn(control::accept_loop(endpoint.clone(), introduced, internal));
        Ok(Client {
            cmd_tx,
            events: tokio::sync::Mutex::new(ev_rx),
            endpoint,
            public,
            local,
            key,
            current,
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

    /// The path a peer's traffic takes right now (`None` if it has none or is unknown).
    /// Path changes after this are reported as [`ClientEvent::Path`].
    pub fn current_path(&self, peer: &PublicKey) -> Option<PathInfo> {
        lock(&self.current).get(peer).cloned()
    }

    /// Ask the server for `peer` and open an authenticated QUIC connection: through the
    /// relay at once and moving to a punched direct path when one works
    /// ([`RelayMode::Auto`]), or as [`ClientConfig::relay`] says.
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

    /// Tell the client what our NAT is (from [`crate::nat::discover`]). The server passes
    /// it to the peers we meet, and punching is skipped where the two types rule out a
    /// direct path (the relay carries the connection at once instead of after a deadline).
    pub async fn set_nat(&self, classic: Classic) {
        let _ = self.cmd_tx.send(Command::SetNat(classic)).await;
    }

    /// The next event (incoming peers, path changes, failures, server state); `None` once
    /// closed.
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
