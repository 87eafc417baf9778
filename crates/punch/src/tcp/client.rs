//! The TCP client: a control connection to the server's main port, TCP hole punching from a
//! shared port (assist sequence, simultaneous connect and accept), TLS 1.3 with pinned
//! Ed25519 keys over the winner, and the relay fallback through the server's main port.
//!
//! Owns the control task (registration, keepalives, routing frames to sessions) and one task
//! per punching session; all stop when the [`TcpClient`] is dropped. [`TcpClient::connect`]
//! reaches a named peer; [`TcpClient::accept`] hands out peers that reached us. The protocol
//! sequence is documented in [`punch_proto::tcp`]. It does not own what runs over a
//! connection (see [`crate::chat`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use punch_proto::tcp::framing::{encode_framed, FrameReader, LEN_PREFIX};
use punch_proto::wire::{ErrorCode, Frame, PeerInfo, MAX_FRAME_LEN};
use rand::Rng;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info};

use super::sockets::{connect_from, opening_syn, reusable_listener};
use crate::identity::{Identity, PublicKey};
use crate::tls::{self, TlsError};

/// How long to try for a direct TCP path before falling back to the relay.
pub const DEFAULT_PUNCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Registration refresh on the control connection: below the idle timeouts NATs apply to TCP
/// too (RFC 5382 REQ-5 asks for at least 2 h 4 min, real devices are often much shorter).
pub const DEFAULT_SERVER_KEEPALIVE: Duration = Duration::from_secs(25);
/// Give up reaching the server after this long.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS handshake deadline on an established connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a low-TTL opening SYN ([`TcpClientConfig::open_ttl`]) is left outstanding.
const OPEN_LINGER: Duration = Duration::from_millis(100);
/// Time given to the target's first SYN to leave before it reports ready.
const OPENING_HEAD_START: Duration = Duration::from_millis(20);
/// Per-attempt connect timeout (the kernel retransmits the SYN after 1 s).
const CONNECT_ATTEMPT: Duration = Duration::from_millis(1500);
/// Pause between connect attempts to one candidate after a failure (RST, unreachable).
const CONNECT_RETRY: Duration = Duration::from_millis(200);
/// Extra time the target waits for a relay offer after its punching deadline.
const RELAY_GRACE: Duration = Duration::from_secs(10);
/// Most punching sessions at once.
pub const MAX_SESSIONS: usize = 64;
/// Most established connections handshaking at once in one session (target side).
const MAX_HANDSHAKES: usize = 8;
/// Peers that reached us, queued until [`TcpClient::accept`].
const INCOMING_QUEUE: usize = 64;

/// How a TCP client is set up.
#[derive(Debug, Clone)]
pub struct TcpClientConfig {
    /// How long to try for a direct path.
    pub punch_timeout: Duration,
    /// Try a direct path at all (false: go straight to the relay; for tests and for
    /// networks known to block it).
    pub punch: bool,
    /// Fall back to the relay when punching fails.
    pub relay: bool,
    /// Registration refresh interval.
    pub server_keepalive: Duration,
    /// How long to wait for the server.
    pub server_timeout: Duration,
    /// Send a separate low-TTL opening SYN first (like the UDP agent's opening probes).
    /// Off by default: on Linux the ICMP time-exceeded it provokes aborts that socket, the
    /// peer's SYN is then answered by our listener with a new sequence number, and conntrack
    /// on our NAT (which tracked the opening SYN's) drops that handshake as invalid. The
    /// default opening SYN is the first SYN of a connect that stays in SYN-SENT (default
    /// TTL), so the peer's SYN meets the same socket: a simultaneous open.
    pub open_ttl: Option<u32>,
}

impl Default for TcpClientConfig {
    fn default() -> Self {
        TcpClientConfig {
            punch_timeout: DEFAULT_PUNCH_TIMEOUT,
            punch: true,
            relay: true,
            server_keepalive: DEFAULT_SERVER_KEEPALIVE,
            server_timeout: DEFAULT_SERVER_TIMEOUT,
            open_ttl: None,
        }
    }
}

/// How a TCP connection reaches the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPath {
    /// `"direct"` (punched) or `"relay"` (through the server's main port).
    pub kind: &'static str,
    /// How the direct connection came about: `"public"` or `"private"` (we connected to that
    /// candidate), `"accepted"` (the peer's SYN reached our listener), or `"relay"`.
    pub candidate: &'static str,
    /// The other end of our TCP connection (the server for a relay).
    pub remote: SocketAddr,
}

/// An authenticated TLS-over-TCP connection to a named peer.
#[derive(Debug)]
pub struct TcpPeerConnection {
    /// The peer's registered name.
    pub name: String,
    /// The peer's key, proven in the TLS handshake.
    pub key: PublicKey,
    /// The TLS stream (client side for the requester, server side for the target).
    pub stream: TlsStream<TcpStream>,
    /// The path it runs on.
    pub path: TcpPath,
    /// For a relayed connection: why the server's relay ended it, when it does (a limit).
    pub relay_end: Option<RelayEnd>,
}

/// Why the server's relay ended a relayed connection (the volume limit, the idle
/// timeout). The reason travels on the control connection, so it may trail the end of the
/// relayed stream by a moment.
#[derive(Debug, Clone)]
pub struct RelayEnd(watch::Receiver<Option<String>>);

impl RelayEnd {
    /// The reason the relay gave, waiting up to `wait` for it; `None` if it gave none
    /// (the peer closed the connection, or the network failed).
    pub async fn reason(&mut self, wait: Duration) -> Option<String> {
        let _ = tokio::time::timeout(wait, self.0.wait_for(|r| r.is_some())).await;
        self.0.borrow().clone()
    }
}

/// Relayed connections whose end we may hear of, at most (older ones are forgotten once
/// their connection is dropped).
const MAX_RELAY_ENDS: usize = 1024;

/// Why a TCP connection could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TcpConnectError {
    /// The server refused.
    #[error("{desc}: {1}", desc = .0.describe())]
    Refused(ErrorCode, String),
    /// The server did not answer in time.
    #[error("server unreachable: no TCP answer from {0} within {1:?}")]
    ServerUnreachable(SocketAddr, Duration),
    /// Neither a direct path nor the relay worked.
    #[error("no TCP path within {0:?}: {1}")]
    NoPath(Duration, String),
    /// The connection was made but TLS failed (wrong key, peer gone).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The client's control connection is gone.
    #[error("client closed")]
    Closed,
}

/// Errors starting a TCP client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcpClientError {
    /// The server's main port could not be reached.
    #[error("cannot connect to {0}/tcp: {1}")]
    Connect(SocketAddr, io::Error),
    /// The server did not answer the registration.
    #[error("server unreachable: no TCP answer from {0} within {1:?}")]
    ServerUnreachable(SocketAddr, Duration),
    /// The server refused the registration.
    #[error("registration refused: {desc}: {1}", desc = .0.describe())]
    Refused(ErrorCode, String),
    /// The name is invalid (empty or too long).
    #[error("invalid name: {0}")]
    Name(String),
}

type ConnectReply = oneshot::Sender<Result<TcpPeerConnection, TcpConnectError>>;

/// A finished session task.
enum Done {
    /// Our request: its outcome.
    Initiated(u64, Result<TcpPeerConnection, TcpConnectError>),
    /// A peer's request to us: its outcome.
    Responded(u64, Result<TcpPeerConnection, TcpConnectError>),
}

enum Ctl {
    Connect {
        target: String,
        /// Fall back to the relay if punching fails.
        relay: bool,
        reply: ConnectReply,
    },
    Send(Frame),
}

#[derive(Debug)]
enum SessionMsg {
    Introduce(PeerInfo),
    Relay,
    Error(String),
}

struct Ctx {
    identity: Identity,
    cfg: TcpClientConfig,
    server_main: SocketAddr,
    server_assist: SocketAddr,
    local_ip: IpAddr,
    ctl: mpsc::Sender<Ctl>,
    incoming: mpsc::Sender<TcpPeerConnection>,
    /// Relayed connections by session, to tell them why the relay ended them.
    relay_ends: std::sync::Mutex<HashMap<u64, watch::Sender<Option<String>>>>,
}

/// A TCP client registered with the server; its tasks stop when it is dropped.
pub struct TcpClient {
    ctl: mpsc::Sender<Ctl>,
    incoming: Mutex<mpsc::Receiver<TcpPeerConnection>>,
    public: SocketAddr,
    local: SocketAddr,
    key: PublicKey,
    /// Whether [`TcpClient::connect`] may fall back to the relay.
    relay: bool,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for TcpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpClient")
            .field("public", &self.public)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Drop for TcpClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), frame: &Frame) -> io::Result<()> {
    let bytes = encode_framed(frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&bytes).await
}

/// Read exactly one frame, never a byte beyond it (what follows may be spliced peer data).
async fn read_one_frame(r: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Frame> {
    let mut len = [0u8; LEN_PREFIX];
    r.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Frame::decode(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl TcpClient {
    /// Connect to the server's main port, register `name` with `identity`'s key, and start
    /// the control task. `server_assist` is the server's assist listener.
    pub async fn start(
        server_main: SocketAddr,
        server_assist: SocketAddr,
        name: &str,
        identity: Identity,
        cfg: TcpClientConfig,
    ) -> Result<TcpClient, TcpClientError> {
        if name.is_empty() || name.len() > punch_proto::wire::MAX_NAME_LEN {
            return Err(TcpClientError::Name(name.to_string()));
        }
        let timeout = cfg.server_timeout;
        let unreachable = || TcpClientError::ServerUnreachable(server_main, timeout);
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(server_main))
            .await
            .map_err(|_| unreachable())?
            .map_err(|e| TcpClientError::Connect(server_main, e))?;
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map_err(|e| TcpClientError::Connect(server_main, e))?;
        let key = identity.public_key();
        let txn: u64 = rand::rng().random();
        let register = Frame::Register {
            txn,
            name: name.to_string(),
            key: *key.as_bytes(),
            private: vec![local],
        };
        let public = tokio::time::timeout(timeout, async {
            write_frame(&mut stream, &register).await?;
            loop {
                match read_one_frame(&mut stream).await? {
                    Frame::Registered {
                        txn: t, observed, ..
                    } if t == txn => return Ok(Ok(observed)),
                    Frame::Error {
                        txn: t,
                        code,
                        reason,
                    } if t == txn => return Ok(Err(TcpClientError::Refused(code, reason))),
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| unreachable())?
        .map_err(|e: io::Error| TcpClientError::Connect(server_main, e))??;
        info!(%public, "registered over TCP");
        let (ctl_tx, ctl_rx) = mpsc::channel(256);
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
        let relay = cfg.relay;
        let ctx = Arc::new(Ctx {
            identity,
            cfg,
            server_main,
            server_assist,
            local_ip: local.ip(),
            ctl: ctl_tx.clone(),
            incoming: in_tx,
            relay_ends: std::sync::Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(control(ctx, stream, ctl_rx, register));
        Ok(TcpClient {
            ctl: ctl_tx,
            incoming: Mutex::new(in_rx),
            public,
            local,
            key,
            relay,
            task,
        })
    }

    /// The control connection's public address as the server saw it.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// The control connection's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Our key.
    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    /// Reach `peer`: punch a direct TCP path, else (if allowed) relay; TLS with pinned keys.
    pub async fn connect(&self, peer: &str) -> Result<TcpPeerConnection, TcpConnectError> {
        self.connect_with(peer, self.relay).await
    }

    /// Reach `peer` over a punched TCP path only, never the relay (for an application
    /// that already has a relayed path and wants a direct one).
    pub async fn connect_direct(&self, peer: &str) -> Result<TcpPeerConnection, TcpConnectError> {
        self.connect_with(peer, false).await
    }

    async fn connect_with(
        &self,
        peer: &str,
        relay: bool,
    ) -> Result<TcpPeerConnection, TcpConnectError> {
        let (reply, rx) = oneshot::channel();
        self.ctl
            .send(Ctl::Connect {
                target: peer.to_string(),
                relay,
                reply,
            })
            .await
            .map_err(|_| TcpConnectError::Closed)?;
        rx.await.map_err(|_| TcpConnectError::Closed)?
    }

    /// The next peer that reached us; `None` once the client is closed.
    pub async fn accept(&self) -> Option<TcpPeerConnection> {
        self.incoming.lock().await.recv().await
    }
}

async fn control(
    ctx: Arc<Ctx>,
    mut stream: TcpStream,
    mut ctl: mpsc::Receiver<Ctl>,
    register: Frame,
) {
    let mut reader = FrameReader::new();
    let mut buf = [0u8; 2048];
    // Connects waiting for the server's answer: target, relay allowed, reply.
    let mut pending: HashMap<u64, (String, bool, ConnectReply)> = HashMap::new();
    let mut sessions: HashMap<u64, mpsc::Sender<SessionMsg>> = HashMap::new();
    let mut txn_session: HashMap<u64, u64> = HashMap::new();
    // Our requests being worked on, by session: the target and the reply.
    let mut replies: HashMap<u64, (String, ConnectReply, tokio::task::AbortHandle)> =
        HashMap::new();
    // Incoming sessions that answer one of our requests (both asked for each other).
    let mut answering: HashMap<u64, ConnectReply> = HashMap::new();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let me = ctx.identity.public_key();
    let mut next_keepalive = Instant::now() + ctx.cfg.server_keepalive;
    let mut next_txn: u64 = rand::rng().random();
    'outer: loop {
        tokio::select! {
            r = stream.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                reader.push(&buf[..n]);
                loop {
                    let frame = match reader.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            debug!(error = %e, "bad stream from server");
                            break 'outer;
                        }
                    };
                    debug!(?frame, "from server (tcp)");
                    match frame {
                        Frame::TcpSession { txn, session } => {
                            let Some((target, relay, reply)) = pending.remove(&txn) else { continue };
                            if sessions.len() >= MAX_SESSIONS {
                                let _ = reply.send(Err(TcpConnectError::NoPath(Duration::ZERO, "too many sessions".into())));
                                continue;
                            }
                            let (tx, rx) = mpsc::channel(8);
                            sessions.insert(session, tx);
                            txn_session.insert(txn, session);
                            let ctx = ctx.clone();
                            let task_target = target.clone();
                            let handle = tasks.spawn(async move {
                                let r = initiate(&ctx, session, &task_target, relay, rx).await;
                                Done::Initiated(session, r)
                            });
                            replies.insert(session, (target, reply, handle));
                        }
                        Frame::TcpIntroduce { session, initiator: false, peer } => {
                            if sessions.len() >= MAX_SESSIONS || sessions.contains_key(&session) {
                                continue;
                            }
                            // Both asked for each other at once: one connection serves both
                            // requests, the one the smaller key asked for.
                            let ours = replies
                                .iter()
                                .find(|(_, (t, _, _))| *t == peer.name)
                                .map(|(s, _)| *s);
                            let asked = ours.is_some()
                                || pending.values().any(|(t, _, _)| *t == peer.name);
                            let mut answers = None;
                            if asked {
                                if me < PublicKey::from_bytes(peer.key) {
                                    info!(peer = %peer.name, "both asked for each other; ours goes ahead");
                                    continue;
                                }
                                // We give way: this session answers our request.
                                answers = match ours {
                                    Some(s) => replies.remove(&s).map(|(_, r, task)| {
                                        // Our own attempt stops.
                                        task.abort();
                                        sessions.remove(&s);
                                        txn_session.retain(|_, x| *x != s);
                                        r
                                    }),
                                    None => pending
                                        .iter()
                                        .find(|(_, (t, _, _))| *t == peer.name)
                                        .map(|(txn, _)| *txn)
                                        .and_then(|txn| pending.remove(&txn))
                                        .map(|(_, _, r)| r),
                                };
                                info!(peer = %peer.name, "both asked for each other; the peer's goes ahead");
                            }
                            if let Some(r) = answers {
                                answering.insert(session, r);
                            }
                            let (tx, rx) = mpsc::channel(8);
                            sessions.insert(session, tx);
                            let ctx = ctx.clone();
                            tasks.spawn(async move {
                                let r = respond(&ctx, session, peer, rx).await;
                                Done::Responded(session, r)
                            });
                        }
                        Frame::TcpIntroduce { session, initiator: true, peer } => {
                            if let Some(s) = sessions.get(&session) {
                                let _ = s.try_send(SessionMsg::Introduce(peer));
                            }
                        }
                        Frame::TcpRelay { session } => {
                            if let Some(s) = sessions.get(&session) {
                                let _ = s.try_send(SessionMsg::Relay);
                            }
                        }
                        Frame::RelayClosed { session, reason } => {
                            let mut ends = ctx.relay_ends.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(tx) = ends.remove(&session) {
                                info!(session, %reason, "the relay ended a relayed connection");
                                let _ = tx.send(Some(reason));
                            }
                        }
                        Frame::Error { txn, code, reason } => {
                            if let Some((_, _, reply)) = pending.remove(&txn) {
                                let _ = reply.send(Err(TcpConnectError::Refused(code, reason)));
                            } else if let Some(s) = txn_session.get(&txn).and_then(|s| sessions.get(s)) {
                                let _ = s.try_send(SessionMsg::Error(format!("{}: {reason}", code.describe())));
                            }
                        }
                        _ => {}
                    }
                }
            }
            cmd = ctl.recv() => {
                // The client holds a sender until dropped, and dropping aborts this task.
                let Some(cmd) = cmd else { break };
                let frame = match cmd {
                    Ctl::Connect { target, relay, reply } => {
                        next_txn = next_txn.wrapping_add(1);
                        if pending.len() >= MAX_SESSIONS {
                            let _ = reply.send(Err(TcpConnectError::NoPath(Duration::ZERO, "too many sessions".into())));
                            continue;
                        }
                        pending.insert(next_txn, (target.clone(), relay, reply));
                        Frame::TcpConnect { txn: next_txn, target }
                    }
                    Ctl::Send(frame) => frame,
                };
                if write_frame(&mut stream, &frame).await.is_err() {
                    break;
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok(done) = done else { continue };
                let session = match &done {
                    Done::Initiated(s, _) | Done::Responded(s, _) => *s,
                };
                sessions.remove(&session);
                txn_session.retain(|_, s| *s != session);
                match done {
                    Done::Initiated(_, r) => match replies.remove(&session) {
                        Some((_, reply, _)) => {
                            let _ = reply.send(r);
                        }
                        // We gave way to the peer's session: this one is not needed.
                        None => debug!(session, "dropping our duplicate TCP connection"),
                    },
                    Done::Responded(_, r) => match (answering.remove(&session), r) {
                        (Some(reply), r) => {
                            let _ = reply.send(r);
                        }
                        (None, Ok(conn)) => {
                            let incoming = ctx.incoming.clone();
                            tokio::spawn(async move {
                                let _ = incoming.send(conn).await;
                            });
                        }
                        (None, Err(e)) => info!(error = %e, "incoming TCP session failed"),
                    },
                }
            }
            _ = tokio::time::sleep_until(next_keepalive) => {
                next_keepalive = Instant::now() + ctx.cfg.server_keepalive;
                if write_frame(&mut stream, &register).await.is_err() {
                    break;
                }
            }
        }
    }
    info!("TCP control connection to the server closed");
}

/// A punching port: a listener on p, and the assist connection from p (kept open while the
/// session punches, so the mapping the server observed stays).
struct PunchPort {
    listener: TcpListener,
    local: SocketAddr,
    _assist: TcpStream,
}

async fn open_punch_port(ctx: &Ctx, session: u64) -> io::Result<PunchPort> {
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    let listener = reusable_listener(any)?;
    let port = listener.local_addr()?.port();
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let mut assist = connect_from(local, ctx.server_assist, None, ctx.cfg.server_timeout).await?;
    let private = vec![SocketAddr::new(ctx.local_ip, port)];
    let observed = tokio::time::timeout(ctx.cfg.server_timeout, async {
        write_frame(&mut assist, &Frame::TcpAssist { session, private }).await?;
        match read_one_frame(&mut assist).await? {
            Frame::TcpAssistAck { observed, .. } => Ok(observed),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer on the assist port: {other:?}"),
            )),
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer on the assist port"))??;
    debug!(session, %local, %observed, "punching port mapped");
    Ok(PunchPort {
        listener,
        local,
        _assist: assist,
    })
}

type Established = (TcpStream, SocketAddr, &'static str);
/// A finished TLS handshake on an established connection (target side).
type Handshake = Result<(TlsStream<TcpStream>, SocketAddr, &'static str), String>;

/// Candidates of `peer`: public first, then private ones, never our own port.
fn candidates(peer: &PeerInfo, own: SocketAddr) -> Vec<(SocketAddr, &'static str)> {
    let mut out = vec![(peer.public, "public")];
    for p in &peer.private {
        if *p != own && !out.iter().any(|(a, _)| a == p) {
            out.push((*p, "private"));
        }
    }
    out
}

fn spawn_punch(
    set: &mut JoinSet<()>,
    port: &PunchPort,
    peer: &PeerInfo,
    own_private: SocketAddr,
    public_delay: Duration,
    deadline: Instant,
    tx: mpsc::Sender<Established>,
) {
    let local = port.local;
    for (cand, kind) in candidates(peer, own_private) {
        let tx = tx.clone();
        let delay = if kind == "public" {
            public_delay
        } else {
            Duration::ZERO
        };
        set.spawn(async move {
            tokio::time::sleep(delay).await;
            while Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                match connect_from(local, cand, None, CONNECT_ATTEMPT.min(left)).await {
                    Ok(s) => {
                        debug!(%cand, kind, "TCP connect succeeded");
                        let _ = tx.send((s, cand, kind)).await;
                        return;
                    }
                    Err(e) => {
                        debug!(%cand, kind, error = %e, "TCP connect attempt failed");
                        tokio::time::sleep(CONNECT_RETRY).await;
                    }
                }
            }
        });
    }
}

fn spawn_accept(set: &mut JoinSet<()>, listener: TcpListener, tx: mpsc::Sender<Established>) {
    set.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, from)) => {
                    debug!(%from, "TCP punch: accepted");
                    if tx.send((s, from, "accepted")).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
            }
        }
    });
}

async fn tls_client(
    ctx: &Ctx,
    stream: TcpStream,
    peer_key: PublicKey,
) -> Result<TlsStream<TcpStream>, String> {
    let config =
        tls::rustls_client_config(&ctx.identity, peer_key).map_err(|e: TlsError| e.to_string())?;
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(tls::SERVER_NAME).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream)).await {
        Ok(Ok(s)) => Ok(TlsStream::Client(s)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no TLS answer within {HANDSHAKE_TIMEOUT:?}")),
    }
}

async fn tls_server(
    identity: Identity,
    stream: TcpStream,
    peer_key: PublicKey,
) -> Result<TlsStream<TcpStream>, String> {
    let accept: tls::AcceptPeer = Arc::new(move |k: &PublicKey| *k == peer_key);
    let config = tls::rustls_server_config(&identity, accept).map_err(|e| e.to_string())?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(TlsStream::Server(s)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no TLS answer within {HANDSHAKE_TIMEOUT:?}")),
    }
}

/// Open a relay connection for `session` to the server's main port and wait until the
/// server spliced it to the peer's.
async fn relay_stream(ctx: &Ctx, session: u64, wait: Duration) -> io::Result<TcpStream> {
    let mut s = tokio::time::timeout(ctx.cfg.server_timeout, TcpStream::connect(ctx.server_main))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "relay connect timed out"))??;
    let _ = s.set_nodelay(true);
    write_frame(&mut s, &Frame::TcpRelayJoin { session }).await?;
    let frame = tokio::time::timeout(wait, read_one_frame(&mut s))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer did not join the relay"))??;
    match frame {
        Frame::TcpRelayReady { session: s2 } if s2 == session => Ok(s),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected relay answer {other:?}"),
        )),
    }
}

/// The requester's side of a session.
async fn initiate(
    ctx: &Ctx,
    session: u64,
    target: &str,
    relay: bool,
    mut msgs: mpsc::Receiver<SessionMsg>,
) -> Result<TcpPeerConnection, TcpConnectError> {
    let timeout = ctx.cfg.punch_timeout;
    let deadline = Instant::now() + timeout;
    let no_path = |why: String| TcpConnectError::NoPath(timeout, why);
    let port = open_punch_port(ctx, session)
        .await
        .map_err(|e| no_path(format!("assist port: {e}")))?;
    let own_private = SocketAddr::new(ctx.local_ip, port.local.port());
    // Wait for the target to be ready: its introduction carries its key and addresses.
    let peer = loop {
        let msg = tokio::time::timeout_at(deadline, msgs.recv())
            .await
            .map_err(|_| no_path(format!("{target} did not answer the introduction")))?;
        match msg {
            Some(SessionMsg::Introduce(peer)) => break peer,
            Some(SessionMsg::Error(e)) => return Err(no_path(e)),
            Some(SessionMsg::Relay) => {}
            None => return Err(TcpConnectError::Closed),
        }
    };
    let key = PublicKey::from_bytes(peer.key);
    let mut tried = Vec::new();
    if ctx.cfg.punch {
        let (tx, mut rx) = mpsc::channel::<Established>(MAX_HANDSHAKES);
        let mut set = JoinSet::new();
        spawn_punch(
            &mut set,
            &port,
            &peer,
            own_private,
            Duration::ZERO,
            deadline,
            tx.clone(),
        );
        let PunchPort {
            listener, _assist, ..
        } = port;
        spawn_accept(&mut set, listener, tx);
        tried = candidates(&peer, own_private)
            .iter()
            .map(|(a, _)| a.to_string())
            .collect();
        while let Ok(Some((stream, remote, candidate))) =
            tokio::time::timeout_at(deadline, rx.recv()).await
        {
            match tls_client(ctx, stream, key).await {
                Ok(stream) => {
                    return Ok(TcpPeerConnection {
                        name: peer.name,
                        key,
                        stream,
                        path: TcpPath {
                            kind: "direct",
                            candidate,
                            remote,
                        },
                        relay_end: None,
                    })
                }
                Err(e) => {
                    debug!(%remote, error = %e, "TLS on punched connection failed");
                    tried.push(format!("{remote} (TLS: {e})"));
                }
            }
        }
        drop(_assist);
    }
    let why = format!("no direct path (tried {})", tried.join(", "));
    if !relay {
        return Err(no_path(why));
    }
    info!(peer = %peer.name, "TCP punching failed; using the relay");
    let _ = ctx.ctl.send(Ctl::Send(Frame::TcpRelay { session })).await;
    let stream = relay_stream(ctx, session, HANDSHAKE_TIMEOUT + ctx.cfg.server_timeout)
        .await
        .map_err(|e| no_path(format!("{why}; relay failed: {e}")))?;
    let stream = tls_client(ctx, stream, key)
        .await
        .map_err(TcpConnectError::Handshake)?;
    Ok(relayed(ctx, session, peer.name, key, stream))
}

/// A connection to `name` carried by the server's TCP relay.
fn relayed(
    ctx: &Ctx,
    session: u64,
    name: String,
    key: PublicKey,
    stream: TlsStream<TcpStream>,
) -> TcpPeerConnection {
    TcpPeerConnection {
        name,
        key,
        stream,
        path: TcpPath {
            kind: "relay",
            candidate: "relay",
            remote: ctx.server_main,
        },
        relay_end: relay_end(ctx, session),
    }
}

/// Listen for the relay's word on how `session` ended.
fn relay_end(ctx: &Ctx, session: u64) -> Option<RelayEnd> {
    let mut ends = ctx.relay_ends.lock().unwrap_or_else(|e| e.into_inner());
    if ends.len() >= MAX_RELAY_ENDS {
        ends.retain(|_, tx| !tx.is_closed());
    }
    if ends.len() >= MAX_RELAY_ENDS {
        return None;
    }
    let (tx, rx) = watch::channel(None);
    ends.insert(session, tx);
    Some(RelayEnd(rx))
}

/// The target's side of a session.
async fn respond(
    ctx: &Ctx,
    session: u64,
    peer: PeerInfo,
    mut msgs: mpsc::Receiver<SessionMsg>,
) -> Result<TcpPeerConnection, TcpConnectError> {
    let timeout = ctx.cfg.punch_timeout;
    let deadline = Instant::now() + timeout;
    let give_up = deadline + RELAY_GRACE;
    let no_path = |why: String| TcpConnectError::NoPath(timeout, why);
    let key = PublicKey::from_bytes(peer.key);
    let port = open_punch_port(ctx, session)
        .await
        .map_err(|e| no_path(format!("assist port: {e}")))?;
    let own_private = SocketAddr::new(ctx.local_ip, port.local.port());
    let (tx, mut rx) = mpsc::channel::<Established>(MAX_HANDSHAKES);
    let mut set = JoinSet::new();
    if ctx.cfg.punch {
        if let Some(ttl) = ctx.cfg.open_ttl {
            opening_syn(port.local, peer.public, ttl, OPEN_LINGER).await;
        }
        // The opening SYN is the first SYN of the connect to the requester's public address:
        // it opens our NAT toward it, and its socket stays in SYN-SENT (retransmitting) so
        // that the requester's SYN meets it (simultaneous open), or else our listener.
        spawn_punch(
            &mut set,
            &port,
            &peer,
            own_private,
            Duration::ZERO,
            deadline,
            tx.clone(),
        );
        tokio::time::sleep(OPENING_HEAD_START).await;
    }
    let _ = ctx.ctl.send(Ctl::Send(Frame::TcpReady { session })).await;
    let PunchPort {
        listener, _assist, ..
    } = port;
    if ctx.cfg.punch {
        let assist = _assist;
        spawn_accept(&mut set, listener, tx);
        let mut handshakes: JoinSet<Handshake> = JoinSet::new();
        loop {
            tokio::select! {
                Some((stream, remote, candidate)) = rx.recv(), if handshakes.len() < MAX_HANDSHAKES => {
                    let identity = ctx.identity.clone();
                    handshakes.spawn(async move {
                        tls_server(identity, stream, key).await.map(|s| (s, remote, candidate))
                    });
                }
                Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                    match done {
                        Ok(Ok((stream, remote, candidate))) => {
                            return Ok(TcpPeerConnection {
                                name: peer.name,
                                key,
                                stream,
                                path: TcpPath { kind: "direct", candidate, remote },
                                relay_end: None,
                            });
                        }
                        Ok(Err(e)) => debug!(error = %e, "TLS on punched connection failed"),
                        Err(_) => {}
                    }
                }
                msg = msgs.recv() => match msg {
                    Some(SessionMsg::Relay) => break,
                    Some(_) => {}
                    None => return Err(TcpConnectError::Closed),
                },
                _ = tokio::time::sleep_until(give_up) => {
                    return Err(no_path("no direct path and no relay offer".into()));
                }
            }
        }
        drop(assist);
    } else {
        drop((listener, _assist));
        loop {
            match tokio::time::timeout_at(give_up, msgs.recv()).await {
                Ok(Some(SessionMsg::Relay)) => break,
                Ok(Some(_)) => {}
                Ok(None) => return Err(TcpConnectError::Closed),
                Err(_) => return Err(no_path("no relay offer".into())),
            }
        }
    }
    drop(set);
    let stream = relay_stream(ctx, session, HANDSHAKE_TIMEOUT + ctx.cfg.server_timeout)
        .await
        .map_err(|e| no_path(format!("relay failed: {e}")))?;
    let stream = tls_server(ctx.identity.clone(), stream, key)
        .await
        .map_err(TcpConnectError::Handshake)?;
    Ok(relayed(ctx, session, peer.name, key, stream))
}
