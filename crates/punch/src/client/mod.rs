//! The punch client: the tokio driver of [`punch_proto::client::Session`].
//!
//! Owns one [`DemuxSocket`], the quinn endpoint on it, and one driver task that feeds the
//! sans-IO session datagrams, time, local address changes and what became of each QUIC
//! connection, and carries out what the session decides: datagrams to send, each peer's
//! route ([`crate::paths`]: a stable virtual address per peer, pointed at the relay or a
//! direct path underneath a live QUIC connection), connections to open. Every task it
//! starts belongs to the driver and stops with the [`Client`].
//!
//! TCP is a transport under the same [`Client::connect`] ([`TransportMode`]): with
//! `Tcp` the client registers over the server's TCP main port and punches TCP (relay
//! fallback included); with `Auto` it uses UDP and keeps a TCP control connection in the
//! background, which the session asks for a punched TCP connection when UDP finds no
//! direct path (a request UDP cannot serve, or an established connection that then moves
//! onto TCP), and which takes over entirely when the server does not answer over UDP.
//!
//! It hands out authenticated [`PeerConnection`]s: [`Client::connect`] for peers we ask
//! for, [`Client::next_event`] for peers that reach us, path changes and failures. It does
//! not own what runs over a connection: [`crate::conversation`] carries text messages,
//! and QUIC applications may open their own streams
//! ([`PeerConnection::quic_connection`]).
//!
//! Any tokio runtime with IO and time enabled will do. A current-thread runtime moves bulk
//! data fastest: a datagram's way through the socket, the driver, QUIC and the application
//! is then a chain of function calls, not of wake-ups between worker threads (`punch`'s
//! peer commands run on one, and pushed about 1.4x as much over a direct path with it on
//! two cores as on the multi-threaded runtime).

pub(crate) mod conn;
mod driver;
pub mod eyeballs;
mod outbox;
mod tcp_only;

pub use conn::PeerConnection;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use punch_proto::agent::PunchConfig;
pub use punch_proto::client::{
    ConnectError, Path, PathKind, PathReason, RelayMode, Transport, DEFAULT_SERVER_KEEPALIVE,
    DEFAULT_SERVER_TIMEOUT, INITIAL_RTO,
};
use punch_proto::nat::Classic;
use punch_proto::wire::{ErrorCode, KeyBytes};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use crate::identity::{Identity, PublicKey};
use crate::known_peers::{KnownPeers, KnownPeersError};
use crate::socket::DemuxSocket;
use crate::tcp::client::{TcpState, TcpTransport};
use crate::tcp::punch::TcpLink;
use crate::tls;

/// QUIC keep-alive on a chosen peer path (holds the NAT mapping open).
pub const DEFAULT_PEER_KEEPALIVE: Duration = Duration::from_secs(15);
/// Most events queued for the application.
pub const EVENT_QUEUE: usize = 256;

/// Which transports the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// QUIC over UDP only (punched, or through the UDP relay).
    #[default]
    Udp,
    /// TLS over TCP only (punched with the server's assist port, or the TCP relay).
    Tcp,
    /// UDP first; a punched TCP connection where UDP finds no direct path; TCP alone when
    /// the server does not answer over UDP.
    Auto,
}

impl std::str::FromStr for TransportMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(TransportMode::Udp),
            "tcp" => Ok(TransportMode::Tcp),
            "auto" => Ok(TransportMode::Auto),
            other => Err(format!("transport must be udp, tcp or auto, not {other:?}")),
        }
    }
}

/// How a client is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The rendezvous server.
    pub server: SocketAddr,
    /// Every address the server's name resolved to, both families: the client registers
    /// with the first to answer (Happy Eyeballs, [`eyeballs`]). Empty: just `server`.
    pub server_addrs: Vec<SocketAddr>,
    /// The name to register.
    pub name: String,
    /// Local address to bind (default: `[::]`, both families, a random port; `0.0.0.0`
    /// where the host has no IPv6).
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
    /// Transports to use.
    pub transport: TransportMode,
    /// The server's TCP assist port (default: the server's port + 1).
    pub tcp_assist_port: Option<u16>,
    /// The file that keeps the key first seen for each peer name
    /// ([`crate::known_peers`]); `None`: keys are remembered for this run only.
    pub known_peers: Option<std::path::PathBuf>,
    /// Names whose next introduction may come with a new key (the user knows the peer
    /// changed its key): it replaces the known one instead of being refused.
    pub accept_new_key: Vec<String>,
}

impl ClientConfig {
    /// Defaults for everything but the server and the name.
    pub fn new(server: SocketAddr, name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            server,
            server_addrs: Vec::new(),
            name: name.into(),
            bind: crate::socket::family::DUAL_STACK_ANY,
            server_keepalive: DEFAULT_SERVER_KEEPALIVE,
            peer_keepalive: DEFAULT_PEER_KEEPALIVE,
            server_timeout: DEFAULT_SERVER_TIMEOUT,
            punch: PunchConfig::default(),
            relay: RelayMode::default(),
            transport: TransportMode::default(),
            tcp_assist_port: None,
            known_peers: None,
            accept_new_key: Vec::new(),
        }
    }

    /// The TCP transport's settings.
    pub(crate) fn tcp(
        &self,
        known: Arc<KnownPeers>,
        events: mpsc::Sender<ClientEvent>,
    ) -> crate::tcp::client::TcpConfig {
        let assist = self
            .tcp_assist_port
            .unwrap_or(self.server.port().wrapping_add(1));
        let main_port = self.server.port();
        crate::tcp::client::TcpConfig {
            server_main: self.server,
            server_addrs: (self.server_addrs.iter())
                .map(|a| SocketAddr::new(a.ip(), main_port))
                .collect(),
            server_assist: SocketAddr::new(self.server.ip(), assist),
            name: self.name.clone(),
            punch_timeout: self.punch.deadline,
            punch: self.relay != RelayMode::Only,
            server_keepalive: self.server_keepalive,
            server_timeout: self.server_timeout,
            open_ttl: None,
            known,
            events: Some(events),
        }
    }
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
    /// The server could not be reached over TCP (or over either transport).
    #[error("server unreachable: {0}")]
    Unreachable(String),
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
    /// The known peers file cannot be used.
    #[error(transparent)]
    KnownPeers(#[from] KnownPeersError),
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
    /// The server told us what NAT a peer is behind (from the peer's own discovery).
    PeerNat {
        /// The peer's name.
        peer: String,
        /// Its NAT type.
        classic: Classic,
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
    /// The server did not answer over UDP: the client runs over TCP alone.
    TransportFallback {
        /// Why.
        reason: String,
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
    /// A peer name met for the first time (or with a new key the user accepted): its key
    /// is now the one we know for it.
    PeerKey {
        /// The peer's name.
        peer: String,
        /// Its key.
        key: PublicKey,
        /// The key it replaces (an accepted change).
        replaced: Option<PublicKey>,
        /// Where it is kept (`None`: for this run only).
        file: Option<std::path::PathBuf>,
    },
    /// A peer name was introduced with another key than the one we know for it: refused
    /// (nothing was sent to that key). If the peer really changed its key, remove `line`
    /// of `file`, or accept the change ([`ClientConfig::accept_new_key`]).
    PeerKeyRefused {
        /// The peer's name.
        peer: String,
        /// The key we know for it.
        known: PublicKey,
        /// The key it came with.
        offered: PublicKey,
        /// The file that keeps the known key, and its line there.
        file: Option<(std::path::PathBuf, usize)>,
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
    /// The UDP side (absent with [`TransportMode::Tcp`], or when UDP did not answer).
    udp: Option<UdpSide>,
    /// The TCP transport, when the client may use TCP.
    tcp: Option<TcpTransport>,
    events: tokio::sync::Mutex<mpsc::Receiver<ClientEvent>>,
    public: SocketAddr,
    local: SocketAddr,
    /// The server address registered with (the winner of Happy Eyeballs).
    server: SocketAddr,
    key: PublicKey,
    relay: RelayMode,
    _tasks: Vec<AbortOnDrop>,
}

struct UdpSide {
    cmd_tx: mpsc::Sender<Command>,
    endpoint: quinn::Endpoint,
    current: Current,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("public", &self.public)
            .field("key", &self.key)
            .field("udp", &self.udp.is_some())
            .finish_non_exhaustive()
    }
}

/// Aborts a task when dropped: how every task the client starts is owned.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The path each peer's traffic takes now, as the application sees it.
pub(crate) type Current = Arc<Mutex<HashMap<PublicKey, Path>>>;

/// TCP connections peers opened to us, shared by whichever part serves them.
pub(crate) type TcpIncoming = Arc<tokio::sync::Mutex<mpsc::Receiver<TcpLink>>>;

/// Keys of the peers we were introduced to: the only ones whose connections we accept.
pub(crate) type Introduced = Arc<Mutex<HashSet<PublicKey>>>;

impl ClientEvent {
    /// [`ClientEvent::PeerKey`] for a key the session or the TCP transport learned.
    pub(crate) fn key_learned(
        known: &KnownPeers,
        name: String,
        key: KeyBytes,
        replaced: Option<KeyBytes>,
        recorded: bool,
    ) -> ClientEvent {
        ClientEvent::PeerKey {
            peer: name,
            key: PublicKey::from_bytes(key),
            replaced: replaced.map(PublicKey::from_bytes),
            file: known.file().filter(|_| recorded).map(Into::into),
        }
    }

    /// [`ClientEvent::PeerKeyRefused`], with the file and line that hold the known key.
    pub(crate) fn key_refused(
        known_peers: &KnownPeers,
        name: String,
        known: KeyBytes,
        offered: KeyBytes,
    ) -> ClientEvent {
        let file = known_peers
            .file()
            .zip(known_peers.line_of(&name))
            .map(|(f, l)| (f.to_path_buf(), l));
        ClientEvent::PeerKeyRefused {
            peer: name,
            known: PublicKey::from_bytes(known),
            offered: PublicKey::from_bytes(offered),
            file,
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Bind, register with the server and start serving. Fails if the name is invalid,
    /// the server does not answer within `cfg.server_timeout` (over any transport the
    /// configuration allows), or it refuses the name.
    pub async fn start(cfg: ClientConfig, identity: Identity) -> Result<Client, ClientError> {
        let key = identity.public_key();
        let known = Arc::new(match &cfg.known_peers {
            Some(path) => KnownPeers::load(path)?,
            None => KnownPeers::in_memory(),
        });
        for name in &cfg.accept_new_key {
            known.accept_change(name);
        }
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let (tcp, incoming) = match cfg.transport {
            TransportMode::Udp => (None, None),
            _ => {
                let tcp_cfg = cfg.tcp(known.clone(), ev_tx.clone());
                let (t, incoming) = TcpTransport::start(tcp_cfg, identity.clone());
                (Some(t), Some(incoming))
            }
        };
        let incoming = incoming.map(|rx| Arc::new(tokio::sync::Mutex::new(rx)));
        let mut client = Client {
            udp: None,
            tcp,
            events: tokio::sync::Mutex::new(ev_rx),
            public: cfg.server,
            local: cfg.bind,
            server: cfg.server,
            key,
            relay: cfg.relay,
            _tasks: Vec::new(),
        };
        if cfg.transport != TransportMode::Tcp {
            match client
                .start_udp(&cfg, identity, known, incoming.clone(), ev_tx.clone())
                .await
            {
                Ok(()) => return Ok(client),
                Err(ClientError::ServerUnreachable(server, after)) if client.tcp.is_some() => {
                    let reason = format!("no UDP answer from {server} within {after:?}");
                    client
                        .start_tcp_only(incoming, ev_tx.clone())
                        .await
                        .map_err(|e| {
                            ClientError::Unreachable(format!("{reason}; over TCP: {e}"))
                        })?;
                    let reason = format!("{reason}; using TCP");
                    let _ = ev_tx.try_send(ClientEvent::TransportFallback { reason });
                    return Ok(client);
                }
                Err(e) => return Err(e),
            }
        }
        client.start_tcp_only(incoming, ev_tx).await?;
        Ok(client)
    }

    /// Serve over TCP alone: wait for the TCP registration and pass on what arrives.
    async fn start_tcp_only(
        &mut self,
        incoming: Option<TcpIncoming>,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<(), ClientError> {
        let (Some(tcp), Some(incoming)) = (self.tcp.as_ref(), incoming) else {
            return Err(ClientError::Unreachable("TCP is not enabled".into()));
        };
        let (public, local) = tcp.registered().await.map_err(|state| match state {
            TcpState::Refused(code, reason) => ClientError::Refused { code, reason },
            TcpState::Down(why) => ClientError::Unreachable(why),
            other => ClientError::Unreachable(format!("{other:?}")),
        })?;
        info!(%public, "registered over TCP");
        self.public = public;
        self.local = local;
        self._tasks
            .push(tcp_only::forward(incoming, tcp.state(), events));
        Ok(())
    }

    /// Bind, register over UDP and start the driver (with `incoming` TCP connections,
    /// under `Auto`).
    async fn start_udp(
        &mut self,
        cfg: &ClientConfig,
        identity: Identity,
        known: Arc<KnownPeers>,
        incoming: Option<TcpIncoming>,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<(), ClientError> {
        let (socket, ctl_rx) = DemuxSocket::bind(cfg.bind)
            .await
            .map_err(|e| ClientError::Bind(cfg.bind, e))?;
        let local = socket
            .local_addr()
            .map_err(|e| ClientError::Bind(cfg.bind, e))?;
        let mut ctl_rx = ctl_rx;
        let mut cfg = cfg.clone();
        let addrs = if cfg.server_addrs.is_empty() {
            vec![cfg.server]
        } else {
            cfg.server_addrs.clone()
        };
        let race_for = cfg.server_timeout.min(eyeballs::RACE_MAX);
        let race = eyeballs::race(&socket, &mut ctl_rx, &addrs, race_for).await;
        let server_other = match race {
            Some(o) => {
                info!(server = %o.server, answered = o.answered, took = ?o.took, other = ?o.other,
                      "server address chosen (Happy Eyeballs)");
                cfg.server = o.server;
                o.other
            }
            // Only IPv6 addresses, and a socket without IPv6.
            None => {
                return Err(ClientError::Unreachable(format!(
                "the server has no address this socket can reach ({} bound; addresses {addrs:?})",
                cfg.bind
            )))
            }
        };
        let cfg = &cfg;
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
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = driver::Driver::new(driver::Setup {
            cfg: cfg.clone(),
            known,
            identity: Arc::new(identity),
            socket,
            local,
            server_other,
            endpoint: endpoint.clone(),
            introduced,
            current: current.clone(),
            events,
            ready: ready_tx,
            tcp: self.tcp.as_ref().map(|t| t.connector()),
            tcp_incoming: incoming,
        })?;
        let task = AbortOnDrop(tokio::spawn(driver.run(ctl_rx, cmd_rx)));
        let public = ready_rx
            .await
            .map_err(|_| ClientError::ServerUnreachable(cfg.server, cfg.server_timeout))??;
        self.udp = Some(UdpSide {
            cmd_tx,
            endpoint,
            current,
        });
        self.public = public;
        self.local = local;
        self.server = cfg.server;
        self._tasks.push(task);
        Ok(())
    }

    /// The server address we registered with: over UDP, the one Happy Eyeballs chose
    /// among [`ClientConfig::server_addrs`].
    pub fn server_addr(&self) -> SocketAddr {
        self.server
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

    /// The path a peer's traffic takes right now (`None` if it has none or is unknown,
    /// or the client runs over TCP alone). Changes arrive as [`ClientEvent::Path`].
    pub fn current_path(&self, peer: &PublicKey) -> Option<Path> {
        lock(&self.udp.as_ref()?.current).get(peer).copied()
    }

    /// Reach `peer` and open an authenticated connection: over UDP through the relay at
    /// once, moving to a punched direct path when one works ([`RelayMode::Auto`]), or as
    /// [`ClientConfig::relay`] says; over TCP where the transport mode says so.
    pub async fn connect(&self, peer: &str) -> Result<PeerConnection, ConnectError> {
        let Some(udp) = &self.udp else {
            let tcp = self.tcp.as_ref().ok_or(ConnectError::Closed)?;
            let relay = self.relay != RelayMode::Never;
            let link = tcp.connector().connect(peer, relay).await?;
            return Ok(PeerConnection::tcp(link, true));
        };
        let (reply, rx) = oneshot::channel();
        udp.cmd_tx
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
        if let Some(udp) = &self.udp {
            let _ = udp.cmd_tx.send(Command::SetNat(classic)).await;
        }
    }

    /// The transport the client registered over (UDP, or TCP alone).
    pub fn transport(&self) -> Transport {
        if self.udp.is_some() {
            Transport::Udp
        } else {
            Transport::Tcp
        }
    }

    /// The next event (incoming peers, path changes, failures, server state); `None` once
    /// closed.
    pub async fn next_event(&self) -> Option<ClientEvent> {
        self.events.lock().await.recv().await
    }

    /// The next peer that connects to us, dropping the other events until then (for
    /// programs that only wait for a peer); `None` once closed.
    pub async fn next_incoming(&self) -> Option<PeerConnection> {
        loop {
            if let ClientEvent::Incoming(pc) = self.next_event().await? {
                return Some(pc);
            }
        }
    }

    /// Close every connection and wait briefly for the peers to hear it.
    pub async fn close(&self) {
        let Some(udp) = &self.udp else { return };
        let (tx, rx) = oneshot::channel();
        if udp.cmd_tx.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        udp.endpoint.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), udp.endpoint.wait_idle()).await;
    }
}
