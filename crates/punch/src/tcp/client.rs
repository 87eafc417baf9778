//! The TCP transport's control connection: registration over the server's TCP main port,
//! keepalives, reconnection with backoff, and the routing of frames to punching sessions.
//!
//! Owns one supervisor task (stopped when the [`TcpTransport`] drops) that keeps a
//! control connection registered: when the connection dies (the server restarted, a NAT
//! forgot the mapping) it connects and registers again after a growing pause. Each
//! punching session runs in the supervisor's `JoinSet` ([`super::punch`]). The client
//! driver (`crate::client`) asks it for connections and takes the ones peers open to us.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use punch_proto::client::trust::KeyCheck;
use punch_proto::client::ConnectError;
use punch_proto::tcp::framing::FrameReader;
use punch_proto::wire::{ErrorCode, Frame, PeerInfo, MAX_NAME_LEN};
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::punch::{initiate, read_one_frame, respond, write_frame, TcpLink};
use crate::client::{AbortOnDrop, ClientEvent};
use crate::identity::{Identity, PublicKey};
use crate::known_peers::KnownPeers;
use punch_proto::auth::{RegisterRequest, NO_NONCE};

/// First pause before connecting again after the control connection was lost; doubles
/// up to [`RECONNECT_MAX`].
pub const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// Longest pause between reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Most punching sessions at once.
pub const MAX_SESSIONS: usize = 64;
/// Peers that reached us, queued until the driver takes them.
const INCOMING_QUEUE: usize = 64;

/// How the TCP transport is set up (the client's configuration decides it).
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// The server's main port (control and relay connections).
    pub server_main: SocketAddr,
    /// Every address of the main port, both families (the server's name resolved):
    /// the control connection races them (Happy Eyeballs, RFC 8305), and the rest of the
    /// transport uses the winner's family. Empty: just `server_main`.
    pub server_addrs: Vec<SocketAddr>,
    /// The server's assist port.
    pub server_assist: SocketAddr,
    /// Our name.
    pub name: String,
    /// How long to try for a direct path.
    pub punch_timeout: Duration,
    /// Try a direct path at all (false: straight to the relay).
    pub punch: bool,
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
    /// The keys we know for peer names (shared with the UDP session).
    pub known: Arc<KnownPeers>,
    /// Where to report keys learned and refused (the client's event stream).
    pub events: Option<mpsc::Sender<ClientEvent>>,
}

/// Where the control connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpState {
    /// Connecting and registering (the first time, or again).
    Connecting,
    /// Registered.
    Up {
        /// The control connection's public address as the server saw it.
        public: SocketAddr,
        /// Its local address.
        local: SocketAddr,
    },
    /// Not registered; trying again later.
    Down(String),
    /// The server refused the name: no more attempts.
    Refused(ErrorCode, String),
}

pub(super) type ConnectReply = oneshot::Sender<Result<TcpLink, ConnectError>>;

/// A finished session task.
enum Done {
    /// Our request: its outcome.
    Initiated(u64, Result<TcpLink, ConnectError>),
    /// A peer's request to us: its outcome.
    Responded(u64, Result<TcpLink, ConnectError>),
}

pub(super) enum Ctl {
    Connect {
        target: String,
        /// Fall back to the relay if punching fails.
        relay: bool,
        reply: ConnectReply,
    },
    Send(Frame),
}

#[derive(Debug)]
pub(super) enum SessionMsg {
    Introduce(PeerInfo),
    /// The introduction named a key we refuse for that name.
    Refused(ConnectError),
    Relay,
    Error(String),
}

pub(super) struct Ctx {
    pub(super) identity: Identity,
    pub(super) cfg: TcpConfig,
    /// The main port's address in use (the last control connection's winner).
    server_main: std::sync::Mutex<SocketAddr>,
    /// Our address toward the server (private candidates are built on it).
    pub(super) local_ip: std::sync::Mutex<IpAddr>,
    pub(super) ctl: mpsc::Sender<Ctl>,
    incoming: mpsc::Sender<TcpLink>,
    /// Relayed connections by session, to tell them why the relay ended them.
    pub(super) relay_ends: std::sync::Mutex<HashMap<u64, watch::Sender<Option<String>>>>,
}

impl Ctx {
    pub(super) fn local_ip(&self) -> IpAddr {
        *self.local_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's main port, at the address the control connection reached.
    pub(super) fn server_main(&self) -> SocketAddr {
        *self.server_main.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's assist port, at the same address.
    pub(super) fn server_assist(&self) -> SocketAddr {
        SocketAddr::new(self.server_main().ip(), self.cfg.server_assist.port())
    }
}

/// The TCP transport: a supervised control connection and the sessions it starts. Its
/// tasks stop when it is dropped.
pub struct TcpTransport {
    ctl: mpsc::Sender<Ctl>,
    state: watch::Receiver<TcpState>,
    _task: AbortOnDrop,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

fn unreachable(ctx: &Ctx) -> ConnectError {
    ConnectError::ServerUnreachable {
        server: ctx.server_main(),
        after: ctx.cfg.server_timeout,
    }
}

impl TcpTransport {
    /// Start connecting and registering in the background; peers that reach us arrive
    /// on the returned receiver. Never fails: see [`TcpTransport::registered`].
    pub fn start(cfg: TcpConfig, identity: Identity) -> (TcpTransport, mpsc::Receiver<TcpLink>) {
        let (ctl_tx, ctl_rx) = mpsc::channel(256);
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
        let (state_tx, state_rx) = watch::channel(TcpState::Connecting);
        let ctx = Arc::new(Ctx {
            identity,
            server_main: std::sync::Mutex::new(cfg.server_main),
            local_ip: std::sync::Mutex::new(crate::nat::local_ip_toward(
                cfg.server_main,
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            )),
            cfg,
            ctl: ctl_tx.clone(),
            incoming: in_tx,
            relay_ends: std::sync::Mutex::new(HashMap::new()),
        });
        let task = AbortOnDrop(tokio::spawn(supervise(ctx, ctl_rx, state_tx)));
        (
            TcpTransport {
                ctl: ctl_tx,
                state: state_rx,
                _task: task,
            },
            in_rx,
        )
    }

    /// Wait for the first registration to end: the addresses on success, else why not.
    pub async fn registered(&self) -> Result<(SocketAddr, SocketAddr), TcpState> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| !matches!(s, TcpState::Connecting))
            .await
            .map(|s| s.clone())
            .unwrap_or(TcpState::Down("closed".into()));
        match state {
            TcpState::Up { public, local } => Ok((public, local)),
            other => Err(other),
        }
    }

    /// Where the control connection stands now, and changes to come.
    pub fn state(&self) -> watch::Receiver<TcpState> {
        self.state.clone()
    }

    /// A handle to ask for connections from other tasks.
    pub fn connector(&self) -> TcpConnector {
        TcpConnector(self.ctl.clone())
    }
}

/// Asks the TCP transport for connections (cheap to clone).
#[derive(Debug, Clone)]
pub struct TcpConnector(mpsc::Sender<Ctl>);

impl TcpConnector {
    /// Reach `peer`: punch a direct TCP path, else (if `relay`) the TCP relay; TLS with
    /// pinned keys.
    pub async fn connect(&self, peer: &str, relay: bool) -> Result<TcpLink, ConnectError> {
        if peer.is_empty() || peer.len() > MAX_NAME_LEN {
            return Err(ConnectError::InvalidName(peer.to_string()));
        }
        let (reply, rx) = oneshot::channel();
        self.0
            .send(Ctl::Connect {
                target: peer.to_string(),
                relay,
                reply,
            })
            .await
            .map_err(|_| ConnectError::Closed)?;
        rx.await.map_err(|_| ConnectError::Closed)?
    }
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ctl::Connect { target, relay, .. } => write!(f, "Connect({target}, relay {relay})"),
            Ctl::Send(frame) => write!(f, "Send({frame:?})"),
        }
    }
}

/// Keep a control connection registered, reconnecting with backoff, until the transport
/// is dropped or the server refuses the name.
async fn supervise(ctx: Arc<Ctx>, mut ctl: mpsc::Receiver<Ctl>, state: watch::Sender<TcpState>) {
    let mut backoff = RECONNECT_FIRST;
    loop {
        let _ = state.send(TcpState::Connecting);
        match register(&ctx).await {
            Ok((stream, public, local, keepalive)) => {
                info!(%public, "registered over TCP");
                *ctx.local_ip.lock().unwrap_or_else(|e| e.into_inner()) = local.ip();
                let _ = state.send(TcpState::Up { public, local });
                backoff = RECONNECT_FIRST;
                if !serve(&ctx, stream, &mut ctl, keepalive).await {
                    return;
                }
                let _ = state.send(TcpState::Down("control connection lost".into()));
            }
            Err(Ok((code, reason))) => {
                warn!(%reason, "the server refused our name over TCP");
                let _ = state.send(TcpState::Refused(code, reason));
                refuse_all(&ctx, ctl).await;
                return;
            }
            Err(Err(e)) => {
                debug!(error = %e, "TCP registration failed");
                let _ = state.send(TcpState::Down(e));
            }
        }
        // Until the next attempt, requests fail at once rather than wait.
        let until = Instant::now() + backoff;
        backoff = (backoff * 2).min(RECONNECT_MAX);
        loop {
            tokio::select! {
                cmd = ctl.recv() => match cmd {
                    Some(Ctl::Connect { reply, .. }) => {
                        let _ = reply.send(Err(unreachable(&ctx)));
                    }
                    Some(Ctl::Send(_)) => {}
                    None => return,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

/// After a refusal: every request gets it, until the transport is dropped.
async fn refuse_all(ctx: &Ctx, mut ctl: mpsc::Receiver<Ctl>) {
    while let Some(cmd) = ctl.recv().await {
        if let Ctl::Connect { reply, .. } = cmd {
            let _ = reply.send(Err(unreachable(ctx)));
        }
    }
}

type Registered = (TcpStream, SocketAddr, SocketAddr, Keepalive);

/// Our registration on the control connection, re-sent (signed over the server's latest
/// nonce) as the keepalive.
struct Keepalive {
    txn: u64,
    req: RegisterRequest,
}

impl Keepalive {
    fn frame(&self, ctx: &Ctx) -> Frame {
        self.req.signed(self.txn, &ctx.identity.signing_key())
    }
}

/// Connect to the main port and register, answering the server's challenge (see
/// [`punch_proto::auth`]): the stream, our public and local addresses, and the
/// registration to keep alive. `Err(Ok(..))` is a refusal.
async fn register(ctx: &Ctx) -> Result<Registered, Result<(ErrorCode, String), String>> {
    let timeout = ctx.cfg.server_timeout;
    let addrs = match ctx.cfg.server_addrs.is_empty() {
        true => vec![ctx.cfg.server_main],
        false => ctx.cfg.server_addrs.clone(),
    };
    let (mut stream, server) =
        tokio::time::timeout(timeout, crate::client::eyeballs::connect_tcp(&addrs))
            .await
            .map_err(|_| Err(format!("no TCP answer from {addrs:?} within {timeout:?}")))?
            .map_err(|e| Err(format!("cannot connect to {addrs:?}/tcp: {e}")))?;
    *ctx.server_main.lock().unwrap_or_else(|e| e.into_inner()) = server;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_err(|e| Err(e.to_string()))?;
    let mut reg = Keepalive {
        txn: rand::rng().random(),
        req: RegisterRequest {
            name: ctx.cfg.name.clone(),
            private: vec![local],
            nat: None,
            nonce: NO_NONCE,
        },
    };
    let txn = reg.txn;
    let answer: Result<io::Result<Result<SocketAddr, (ErrorCode, String)>>, _> =
        tokio::time::timeout(timeout, async {
            write_frame(&mut stream, &reg.frame(ctx)).await?;
            loop {
                match read_one_frame(&mut stream).await? {
                    Frame::Registered {
                        txn: t,
                        observed,
                        nonce,
                        ..
                    } if t == txn => {
                        reg.req.nonce = nonce;
                        return Ok(Ok(observed));
                    }
                    Frame::Challenge { txn: t, nonce } if t == txn => {
                        if nonce == reg.req.nonce {
                            let e = "the server refused our signed registration twice";
                            return Err(io::Error::other(e));
                        }
                        reg.req.nonce = nonce;
                        write_frame(&mut stream, &reg.frame(ctx)).await?;
                    }
                    Frame::Error {
                        txn: t,
                        code,
                        reason,
                    } if t == txn => return Ok(Err((code, reason))),
                    _ => {}
                }
            }
        })
        .await;
    match answer {
        Err(_) => Err(Err(format!(
            "no TCP answer from {server} within {timeout:?}"
        ))),
        Ok(Err(e)) => Err(Err(format!("{server}/tcp: {e}"))),
        Ok(Ok(Err(refused))) => Err(Ok(refused)),
        Ok(Ok(Ok(public))) => Ok((stream, public, local, reg)),
    }
}

/// Serve one registered control connection until it ends; false once the transport is
/// dropped (no reconnection then).
async fn serve(
    ctx: &Arc<Ctx>,
    mut stream: TcpStream,
    ctl: &mut mpsc::Receiver<Ctl>,
    mut keepalive: Keepalive,
) -> bool {
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
                                let _ = reply.send(Err(ConnectError::Busy));
                                continue;
                            }
                            let (tx, rx) = mpsc::channel(8);
                            sessions.insert(session, tx);
                            txn_session.insert(txn, session);
                            let ctx = Arc::clone(ctx);
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
                            if let Err(e) = key_trusted(ctx, &peer) {
                                warn!(error = %e, "TCP introduction refused");
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
                            let ctx = Arc::clone(ctx);
                            tasks.spawn(async move {
                                let r = respond(&ctx, session, peer, rx).await;
                                Done::Responded(session, r)
                            });
                        }
                        Frame::TcpIntroduce { session, initiator: true, peer } => {
                            if let Some(s) = sessions.get(&session) {
                                let msg = match key_trusted(ctx, &peer) {
                                    Ok(()) => SessionMsg::Introduce(peer),
                                    Err(e) => SessionMsg::Refused(e),
                                };
                                let _ = s.try_send(msg);
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
                        Frame::Registered { txn, nonce, .. } if txn == keepalive.txn => {
                            keepalive.req.nonce = nonce;
                        }
                        // A nonce expired (we slept) or the server restarted its keys: sign
                        // again now. The same nonce twice waits for the next keepalive.
                        Frame::Challenge { txn, nonce }
                            if txn == keepalive.txn && nonce != keepalive.req.nonce =>
                        {
                            keepalive.req.nonce = nonce;
                            if write_frame(&mut stream, &keepalive.frame(ctx)).await.is_err() {
                                break 'outer;
                            }
                        }
                        Frame::Error { txn, code, reason } => {
                            if let Some((_, _, reply)) = pending.remove(&txn) {
                                let _ = reply.send(Err(ConnectError::Refused { code, reason }));
                            } else if let Some(s) = txn_session.get(&txn).and_then(|s| sessions.get(s)) {
                                let _ = s.try_send(SessionMsg::Error(format!("{}: {reason}", code.describe())));
                            }
                        }
                        _ => {}
                    }
                }
            }
            cmd = ctl.recv() => {
                // The transport holds a sender until dropped, and dropping aborts this task.
                let Some(cmd) = cmd else { return false };
                let frame = match cmd {
                    Ctl::Connect { target, relay, reply } => {
                        next_txn = next_txn.wrapping_add(1);
                        if pending.len() >= MAX_SESSIONS {
                            let _ = reply.send(Err(ConnectError::Busy));
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
                            if ctx.incoming.try_send(conn).is_err() {
                                debug!("incoming TCP queue full; connection dropped");
                            }
                        }
                        (None, Err(e)) => info!(error = %e, "incoming TCP session failed"),
                    },
                }
            }
            _ = tokio::time::sleep_until(next_keepalive) => {
                next_keepalive = Instant::now() + ctx.cfg.server_keepalive;
                if write_frame(&mut stream, &keepalive.frame(ctx)).await.is_err() {
                    break;
                }
            }
        }
    }
    // Requests in flight fail now; their sessions' tasks end with `tasks`.
    for (_, (_, _, reply)) in pending.drain() {
        let _ = reply.send(Err(unreachable(ctx)));
    }
    for (_, (_, reply, _)) in replies.drain() {
        let _ = reply.send(Err(unreachable(ctx)));
    }
    info!("TCP control connection to the server closed");
    true
}

/// Check an introduced peer's key against the one we know for its name
/// ([`crate::known_peers`]); a new name's key is stored.
fn key_trusted(ctx: &Ctx, peer: &PeerInfo) -> Result<(), ConnectError> {
    let known_peers = &ctx.cfg.known;
    let (name, key) = (peer.name.clone(), peer.key);
    let (event, result) = match known_peers.check(&name, &key) {
        KeyCheck::Known => (None, Ok(())),
        KeyCheck::First { recorded } => (
            Some(ClientEvent::key_learned(
                known_peers,
                name,
                key,
                None,
                recorded,
            )),
            Ok(()),
        ),
        KeyCheck::Replaced { known } => (
            Some(ClientEvent::key_learned(
                known_peers,
                name,
                key,
                Some(known),
                true,
            )),
            Ok(()),
        ),
        KeyCheck::Changed { known } => (
            Some(ClientEvent::key_refused(
                known_peers,
                name.clone(),
                known,
                key,
            )),
            Err(ConnectError::KeyChanged {
                name,
                known,
                offered: key,
            }),
        ),
    };
    if let (Some(ev), Some(tx)) = (event, &ctx.cfg.events) {
        if tx.try_send(ev).is_err() {
            debug!("event queue full; key event dropped");
        }
    }
    result
}
