//! The punch client: the tokio driver of [`punch_proto::client::Session`].
//!
//! Owns one [`DemuxSocket`], the quinn endpoint on it, and one driver task that feeds the
//! sans-IO session datagrams, time, local address changes and what became of each QUIC
//! connection, and carries out what the session decides: datagrams to send, each peer's
//! route ([`crate::paths`]: a stable virtual address per peer, pointed at the relay or a
//! direct path underneath a live QUIC connection), connections to open. Every task it
//! starts belongs to the driver and stops with the [`Client`].
//!
//! It hands out authenticated [`PeerConnection`]s: [`Client::connect`] for peers we ask
//! for, [`Client::next_event`] for peers that reach us, path changes and failures. It does
//! not own what runs over a connection (chat, file transfer): callers open QUIC streams on
//! [`PeerConnection::connection`].

mod driver;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punch_proto::agent::PunchConfig;
pub use punch_proto::client::{
    ConnectError, Path, PathKind, PathReason, RelayMode, DEFAULT_SERVER_KEEPALIVE,
    DEFAULT_SERVER_TIMEOUT, INITIAL_RTO,
};
use punch_proto::nat::Classic;
use punch_proto::wire::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::identity::{Identity, PublicKey};
use crate::socket::DemuxSocket;
use crate::tls;

/// QUIC keep-alive on a chosen peer path (holds the NAT mapping open).
pub const DEFAULT_PEER_KEEPALIVE: Duration = Duration::from_secs(15);
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
    pub path: Option<Path>,
    /// We opened it (else the peer did: when both ask for each other at once, one
    /// connection serves both requests).
    pub opened_by_us: bool,
}

/// Errors starting a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The name is empty or too long, or the configuration is unusable.
    #[error("invalid setup: {0}")]
    Setup(#[from] punch_proto::client::SetupError),
    /// The socket could not be bound.
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The server did not answer the registration.
    #[error("server unreachable: no answer from {0} within {1:?}")]
    ServerUnreachable(SocketAddr, Duration),
    /// The server refused the registration.
    #[error("registration refused: {}: {reason}", code.describe())]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        reason: String,
    },
    /// TLS or QUIC setup failed.
    #[error("TLS/QUIC setup failed: {0}")]
    Tls(String),
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
        error: ConnectError,
    },
    /// The path carrying a peer's connection changed.
    Path {
        /// The peer's name.
        peer: String,
        /// Its key.
        key: PublicKey,
        /// The path now; `None` while it has none (the connection stays open and recovers
        /// when a path comes back).
        path: Option<Path>,
        /// Why it changed.
        reason: PathReason,
    },
    /// Punching toward a peer ended without a direct path (it failed, or the NAT types
    /// rule one out). The connection carries on over the relay if it may, and punching is
    /// retried later where it can succeed; an application may try another transport.
    DirectFailed {
        /// The peer's name.
        peer: String,
        /// Why.
        reason: PathReason,
    },
    /// The server sees us at a new public address (our NAT gave us a new mapping).
    PublicAddress {
        /// The address now.
        public: SocketAddr,
    },
    /// Our local address changed (the host moved, DHCP gave a new address): every peer
    /// punches again.
    LocalAddress {
        /// The address now.
        local: IpAddr,
    },
    /// The client moved to a fresh local port: punching again after a lost direct path
    /// failed, a sign that NAT state still blocks the old port's paths.
    Rebound {
        /// The new local address.
        local: SocketAddr,
    },
    /// The server answers again after having been silent.
    ServerBack {
        /// The public address it observed.
        public: SocketAddr,
    },
    /// The server stopped answering; the client keeps asking.
    ServerLost,
    /// The server refused a registration refresh (another key took the name while it
    /// did not know ours, e.g. after a restart).
    RegistrationRefused {
        /// The server's words.
        reason: String,
    },
}

pub(crate) enum Command {
    Connect {
        target: String,
        reply: oneshot::Sender<Result<PeerConnection, ConnectError>>,
    },
    SetNat(Classic),
    Close(oneshot::Sender<()>),
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
    _driver: AbortOnDrop,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("public", &self.public)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Aborts a task when dropped: how every task the client starts is owned.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The path each peer's traffic takes now, as the application sees it.
pub(crate) type Current = Arc<Mutex<HashMap<PublicKey, Path>>>;

/// Keys of the peers we were introduced to: the only ones whose connections we accept.
pub(crate) type Introduced = Arc<Mutex<HashSet<PublicKey>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Bind, register with the server and start serving. Fails if the name is invalid,
    /// the server does not answer within `cfg.server_timeout`, or it refuses the name.
    pub async fn start(cfg: ClientConfig, identity: Identity) -> Result<Client, ClientError> {
        let (socket, ctl_rx) = DemuxSocket::bind(cfg.bind)
            .await
            .map_err(|e| ClientError::Bind(cfg.bind, e))?;
        let local = socket
            .local_addr()
            .map_err(|e| ClientError::Bind(cfg.bind, e))?;
        let key = identity.public_key();

        let introduced: Introduced = Arc::new(Mutex::new(HashSet::new()));
        let accept_set = introduced.clone();
        let accept: tls::AcceptPeer = Arc::new(move |k: &PublicKey| lock(&accept_set).contains(k));
        let mut server_cfg =
            tls::server_config(&identity, accept).map_err(|e| ClientError::Tls(e.to_string()))?;
        server_cfg.transport_config(
            tls::transport_config(cfg.peer_keepalive)
                .map_err(|e| ClientError::Tls(e.to_string()))?,
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
        .map_err(|e| ClientError::Tls(e.to_string()))?;

        let current: Current = Arc::new(Mutex::new(HashMap::new()));
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = driver::Driver::new(driver::Setup {
            cfg: cfg.clone(),
            identity: Arc::new(identity),
            socket,
            local,
            endpoint: endpoint.clone(),
            introduced,
            current: current.clone(),
            events: ev_tx,
            ready: ready_tx,
        })?;
        let task = AbortOnDrop(tokio::spawn(driver.run(ctl_rx, cmd_rx)));
        let public = ready_rx
            .await
            .map_err(|_| ClientError::ServerUnreachable(cfg.server, cfg.server_timeout))??;
        Ok(Client {
            cmd_tx,
            events: tokio::sync::Mutex::new(ev_rx),
            endpoint,
            public,
            local,
            key,
            current,
            _driver: task,
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
    pub fn current_path(&self, peer: &PublicKey) -> Option<Path> {
        lock(&self.current).get(peer).copied()
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
        let (tx, rx) = oneshot::channel();
        if self.cmd_tx.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.endpoint.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}
