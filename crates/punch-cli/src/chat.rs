//! `punch chat`: a small group chat over direct, authenticated connections.
//!
//! Owns the chat session's life: register, connect to the named peers, accept peers that
//! reach us, send every stdin line to every connected peer, print what arrives. The
//! network work is [`punch::client`] (UDP: QUIC, punched or relayed) or [`punch::tcp`]
//! (TLS over a punched or relayed TCP connection); the framing is [`punch::chat`], the
//! same on both.
//!
//! With `--transport auto` a chat that runs on the UDP relay because punching found no
//! direct path tries a punched TCP connection, and moves to it when it works: each side
//! finishes its QUIC stream (the peer reads it to the end) and goes on over TCP, so every
//! message arrives once and in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use punch::client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectError, PathKind, PeerConnection,
};
use punch::identity::{Identity, PublicKey};
use punch::tcp::client::{RelayEnd, TcpClient, TcpClientConfig, TcpPeerConnection};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinSet;

use crate::natcache;
use crate::report::Reporter;

/// Lines typed before any peer is connected are kept (up to this many) and sent to the
/// first peer that connects, so nothing typed early is lost.
const MAX_BACKLOG: usize = 1000;
/// Lines queued per peer before the sender waits.
const PEER_QUEUE: usize = 256;
/// How long a reader whose peer ended its QUIC stream waits for the TCP connection the
/// peer moved to (it reaches us within a round trip or two of the stream's end).
const MOVE_WAIT: Duration = Duration::from_secs(10);
/// How long a chat on the TCP relay waits, once its stream ended, for the server's word
/// on why (it comes on the control connection).
const RELAY_REASON_WAIT: Duration = Duration::from_millis(500);
/// A TCP chat idle this long sends a keepalive: well inside the relay's default idle
/// timeout (60 s) and the shortest NAT timeouts for established TCP.
const TCP_KEEPALIVE: Duration = Duration::from_secs(20);
/// How long leaving waits for the peers to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Which transport carries the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: QUIC over a punched path or the relay (see `--relay`).
    Udp,
    /// TCP: TLS over a punched TCP connection, or the TCP relay.
    Tcp,
    /// UDP first; TCP when UDP gives no direct path (the server cannot be reached over
    /// UDP, or punching failed); the relay when neither works.
    Auto,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "auto" => Ok(Transport::Auto),
            other => Err(format!("transport must be udp, tcp or auto, not {other:?}")),
        }
    }
}

/// What `punch chat` was asked to do.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Client settings (server, name, timers).
    pub client: ClientConfig,
    /// Peers to connect to.
    pub peers: Vec<String>,
    /// Where the identity key lives.
    pub home: PathBuf,
    /// The transport.
    pub transport: Transport,
    /// The server's TCP assist port (default: the server port + 1).
    pub tcp_assist_port: Option<u16>,
}

/// How to end one connection early (a duplicate of another to the same peer).
#[derive(Clone)]
enum Closer {
    Quic(quinn::Connection),
    Tcp(Arc<Notify>),
}

impl Closer {
    fn close(&self) {
        match self {
            Closer::Quic(c) => c.close(2u32.into(), b"duplicate connection"),
            Closer::Tcp(n) => n.notify_waiters(),
        }
    }
}

struct PeerEntry {
    tx: mpsc::Sender<String>,
    closer: Closer,
    id: u64,
    key: PublicKey,
    initiator: PublicKey,
    /// What carries the chat now: `"udp"` or `"tcp"`.
    transport: &'static str,
    /// A UDP connection that may still move to TCP: where the new connection's halves go.
    mover: Option<Mover>,
    /// A move to TCP was tried for this connection (once is enough).
    tcp_tried: bool,
}

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// Hands a TCP connection to a UDP peer's writer and reader, which finish the QUIC stream
/// (or read it to its end) and go on over TCP.
struct Mover {
    writer: oneshot::Sender<BoxWrite>,
    reader: oneshot::Sender<(BoxRead, Arc<Notify>)>,
}

/// The QUIC connection left behind by a move to TCP is closed once our writer's stream is
/// acknowledged and the peer's stream is read to its end: whichever comes second closes it.
struct Handoff {
    steps: AtomicU8,
    conn: quinn::Connection,
}

impl Handoff {
    fn step(&self) {
        if self.steps.fetch_add(1, Ordering::SeqCst) == 1 {
            self.conn.close(3u32.into(), b"moved to tcp");
        }
    }
}

/// A connection about to join the chat, whatever carries it.
struct Joining {
    name: String,
    key: PublicKey,
    /// Who opened it (duplicates are settled by the smaller key).
    initiator: PublicKey,
    io: Io,
}

enum Io {
    Quic(PeerConnection),
    /// Boxed: a TLS stream is large and moves through a few hands.
    Tcp(Box<TcpPeerConnection>),
}

struct Shared {
    reporter: Reporter,
    /// Asked for a peer's current path when it connects (events before that are folded
    /// into the `connected` line); UDP only.
    client: Option<Arc<Client>>,
    /// `--transport auto` on UDP: the TCP client tried when UDP finds no direct path.
    tcp_fallback: Option<TcpFallback>,
    /// Peers whose UDP punching found no direct path before their connection joined the
    /// chat (locked after `peers`, never before).
    no_direct: Mutex<HashSet<String>>,
    me: PublicKey,
    peers: Mutex<HashMap<String, PeerEntry>>,
    backlog: Mutex<VecDeque<String>>,
    /// `--peer` connections not yet attached or failed: input that ends early waits for
    /// them, so `echo hi | punch chat --peer bob` delivers its line.
    connecting: AtomicUsize,
    /// Writers still delivering; leaving waits for them.
    writers: AtomicUsize,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The two clients a chat may run on.
#[derive(Clone)]
enum Net {
    /// UDP, with the TCP fallback of `--transport auto`.
    Udp(Arc<Client>, Option<TcpFallback>),
    Tcp(Arc<TcpClient>),
}

/// Where `--transport auto`'s TCP client stands: it registers in the background, so a
/// network that silently drops TCP does not hold up a chat that works over UDP.
#[derive(Clone)]
enum TcpState {
    Starting,
    Ready(Arc<TcpClient>),
    Unavailable,
}

/// The TCP client of `--transport auto`, once (and if) it registered.
#[derive(Clone)]
struct TcpFallback(watch::Receiver<TcpState>);

impl TcpFallback {
    /// Start registering over TCP in the background.
    fn start(opts: &ChatOptions, identity: Identity, reporter: Reporter) -> TcpFallback {
        let (tx, rx) = watch::channel(TcpState::Starting);
        let opts = opts.clone();
        tokio::spawn(async move {
            let state = match start_tcp(&opts, identity).await {
                Ok(t) => TcpState::Ready(t),
                Err(e) => {
                    reporter.notice(&format!("no TCP fallback (server over TCP: {e}); UDP only"));
                    TcpState::Unavailable
                }
            };
            let _ = tx.send(state);
        });
        TcpFallback(rx)
    }

    /// The client, waiting for its registration to end; `None` if it failed.
    async fn get(&self) -> Option<Arc<TcpClient>> {
        let mut rx = self.0.clone();
        let state = rx
            .wait_for(|s| !matches!(s, TcpState::Starting))
            .await
            .map(|s| s.clone());
        match state {
            Ok(TcpState::Ready(t)) => Some(t),
            _ => None,
        }
    }
}

async fn start_tcp(opts: &ChatOptions, identity: Identity) -> Result<Arc<TcpClient>, String> {
    let server = opts.client.server;
    let assist = SocketAddr::new(
        server.ip(),
        opts.tcp_assist_port
            .unwrap_or(server.port().wrapping_add(1)),
    );
    let cfg = TcpClientConfig {
        punch_timeout: opts.client.punch.deadline,
        server_timeout: opts.client.server_timeout,
        relay: opts.client.relay != punch::client::RelayMode::Never,
        ..TcpClientConfig::default()
    };
    TcpClient::start(server, assist, &opts.client.name, identity, cfg)
        .await
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Register over the chosen transport; a failure is reported as an `error` event too.
async fn start(opts: &ChatOptions, identity: Identity, reporter: &Reporter) -> Result<Net> {
    let server = opts.client.server;
    let result = match opts.transport {
        Transport::Tcp => start_tcp(opts, identity)
            .await
            .map(Net::Tcp)
            .map_err(|e| format!("server unreachable over TCP: {e}")),
        Transport::Udp => Client::start(opts.client.clone(), identity)
            .await
            .map(|c| Net::Udp(Arc::new(c), None))
            .map_err(|e| e.to_string()),
        Transport::Auto => {
            // Both at once: TCP is the fallback, for the server and for the peers. The
            // chat goes ahead as soon as UDP registers; TCP joins when (if) it does.
            let relay_only = opts.client.relay == punch::client::RelayMode::Only;
            let tcp = TcpFallback::start(opts, identity.clone(), reporter.clone());
            match Client::start(opts.client.clone(), identity).await {
                // `--relay only` wants the UDP relay and nothing else.
                Ok(c) => Ok(Net::Udp(Arc::new(c), (!relay_only).then_some(tcp))),
                Err(e @ ClientError::ServerUnreachable(..)) => match tcp.get().await {
                    Some(t) => {
                        reporter.notice(&format!("no UDP answer from {server}; using TCP"));
                        Ok(Net::Tcp(t))
                    }
                    None => Err(format!("{e}; no answer over TCP either")),
                },
                Err(e) => Err(e.to_string()),
            }
        }
    };
    result.or_else(|reason| {
        reporter.error(None, &reason);
        anyhow::bail!("could not register with {server}: {reason}")
    })
}

/// Run a chat until stdin ends (then deliver what was typed and leave) or Ctrl-C.
pub async fn run(opts: ChatOptions, reporter: Reporter) -> Result<()> {
    let identity = Identity::load_or_create(&opts.home)
        .with_context(|| format!("loading the identity key from {}", opts.home.display()))?;
    let server = opts.client.server;
    let net = start(&opts, identity, &reporter).await?;
    let (me, public, local) = match &net {
        Net::Udp(c, _) => (c.public_key(), c.public_addr(), c.local_addr()),
        Net::Tcp(c) => (c.public_key(), c.public_addr(), c.local_addr()),
    };
    reporter.registered(&opts.client.name, &me.to_string(), public, local);
    let shared = Arc::new(Shared {
        reporter: reporter.clone(),
        client: match &net {
            Net::Udp(c, _) => Some(c.clone()),
            Net::Tcp(_) => None,
        },
        tcp_fallback: match &net {
            Net::Udp(_, tcp) => tcp.clone(),
            Net::Tcp(_) => None,
        },
        no_direct: Mutex::new(HashSet::new()),
        me,
        peers: Mutex::new(HashMap::new()),
        backlog: Mutex::new(VecDeque::new()),
        connecting: AtomicUsize::new(opts.peers.len()),
        writers: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
    });
    let mut tasks = JoinSet::new();
    if let Net::Udp(client, _) = &net {
        // Learn what our NAT does, without delaying the chat: the report arrives as an
        // event when ready (at once from the cache).
        let (home, reporter, bind) = (opts.home.clone(), reporter.clone(), opts.client.bind.ip());
        let client = client.clone();
        tasks.spawn(async move {
            match natcache::get(&home, server, bind).await {
                Ok((report, cached)) => {
                    reporter.nat(&report, cached);
                    // Peers learn it through the server; hopeless punching is skipped.
                    if let Some(classic) = report.classic {
                        client.set_nat(classic).await;
                    }
                }
                Err(e) => reporter.notice(&format!("NAT discovery failed: {e}")),
            }
        });
    }
    for peer in &opts.peers {
        let (shared, peer, net) = (shared.clone(), peer.clone(), net.clone());
        tasks.spawn(async move {
            let joined = match net {
                Net::Udp(c, tcp) => match c.connect(&peer).await {
                    Ok(pc) => Ok(Io::Quic(pc)),
                    // No direct UDP path and no relay (`--relay never`): TCP is next.
                    Err(e) => match tcp_client(tcp).await {
                        Some(tcp)
                            if matches!(
                                e,
                                ConnectError::NoPath { .. }
                                    | ConnectError::Impossible(_)
                                    | ConnectError::Handshake(_)
                            ) =>
                        {
                            shared
                                .reporter
                                .notice(&format!("{e}; trying a direct TCP connection"));
                            tcp.connect_direct(&peer)
                                .await
                                .map(|pc| Io::Tcp(Box::new(pc)))
                                .map_err(|t| format!("{e}; over TCP: {t}"))
                        }
                        _ => Err(e.to_string()),
                    },
                },
                Net::Tcp(c) => c
                    .connect(&peer)
                    .await
                    .map(|pc| Io::Tcp(Box::new(pc)))
                    .map_err(|e| e.to_string()),
            };
            match joined {
                Ok(io) => {
                    // When both asked for each other at once, the peer's connection may
                    // answer our request: it is then the peer's.
                    let initiator = match &io {
                        Io::Quic(pc) if !pc.opened_by_us => pc.key,
                        _ => shared.me,
                    };
                    let j = joining(io, initiator);
                    attach(shared, j, true).await
                }
                Err(e) => {
                    shared.reporter.error(Some(&peer), &e);
                    shared.connecting.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
    }
    if let Net::Udp(client, _) = &net {
        let (client, shared) = (client.clone(), shared.clone());
        tasks.spawn(udp_events(client, shared));
    }
    {
        let (shared, net) = (shared.clone(), net.clone());
        tasks.spawn(async move {
            // Peers reaching us over TCP: on the TCP client, or on auto's fallback once
            // it has registered.
            let client = match net {
                Net::Udp(_, fallback) => tcp_client(fallback).await,
                Net::Tcp(client) => Some(client),
            };
            let Some(client) = client else {
                return;
            };
            while let Some(pc) = client.accept().await {
                let initiator = pc.key;
                tokio::spawn(attach(
                    shared.clone(),
                    joining(Io::Tcp(Box::new(pc)), initiator),
                    false,
                ));
            }
        });
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                // An empty message is a keepalive on the wire: nothing to send.
                Ok(Some(line)) if line.is_empty() => {}
                Ok(Some(line)) => broadcast(&shared, line).await,
                Ok(None) => break,
                Err(e) => { reporter.error(None, &format!("reading stdin: {e}")); break; }
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Input ended: first let the named peers connect (or fail), so early lines reach them.
    let limit = opts.client.server_timeout + opts.client.punch.deadline + Duration::from_secs(2);
    wait_until(limit, || shared.connecting.load(Ordering::SeqCst) == 0).await;
    // Deliver what was typed: dropping the senders ends each writer, which then waits
    // until the peer has acknowledged every byte.
    drop(lock(&shared.peers).drain().collect::<Vec<_>>());
    let pending = lock(&shared.backlog).len();
    if pending > 0 {
        reporter.notice(&format!(
            "{pending} message(s) were never sent: no peer connected"
        ));
    }
    wait_until(FLUSH_TIMEOUT, || shared.writers.load(Ordering::SeqCst) == 0).await;
    tasks.abort_all();
    if let Net::Udp(c, _) = &net {
        c.close().await;
    }
    Ok(())
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    let _ = tokio::time::timeout(limit, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn joining(io: Io, initiator: PublicKey) -> Joining {
    let (name, key) = match &io {
        Io::Quic(pc) => (pc.name.clone(), pc.key),
        Io::Tcp(pc) => (pc.name.clone(), pc.key),
    };
    Joining {
        name,
        key,
        initiator,
        io,
    }
}

async fn udp_events(client: Arc<Client>, shared: Arc<Shared>) {
    while let Some(ev) = client.next_event().await {
        match ev {
            ClientEvent::Incoming(pc) => {
                let initiator = pc.key;
                tokio::spawn(attach(
                    shared.clone(),
                    joining(Io::Quic(pc), initiator),
                    false,
                ));
            }
            // With a TCP fallback the peer tries TCP next: not an error yet.
            ClientEvent::IncomingFailed { peer, error } if shared.tcp_fallback.is_some() => {
                shared.reporter.notice(&format!(
                    "no UDP path from {peer} ({error}); TCP may follow"
                ))
            }
            ClientEvent::IncomingFailed { peer, error } => {
                shared.reporter.error(Some(&peer), &error.to_string())
            }
            ClientEvent::ServerLost => shared.reporter.notice("server stopped answering; retrying"),
            ClientEvent::PublicAddress { public } => shared.reporter.address(
                "public",
                &public.to_string(),
                "the server sees us at a new address (our NAT gave us a new mapping)",
            ),
            ClientEvent::LocalAddress { local } => shared.reporter.address(
                "local",
                &local.to_string(),
                "our local address changed; punching again",
            ),
            ClientEvent::Rebound { local } => shared.reporter.address(
                "local",
                &local.to_string(),
                "moved to a fresh local port: punching from the old one failed after a lost path",
            ),
            ClientEvent::RegistrationRefused { reason } => shared
                .reporter
                .error(None, &format!("registration refused: {reason}")),
            ClientEvent::ServerBack { public } => shared
                .reporter
                .notice(&format!("server answers again (public address {public})")),
            // A change before the peer is attached is already in its `connected` line, and
            // one after a move to TCP concerns a connection that is going away.
            ClientEvent::Path {
                peer,
                path: Some(path),
                reason,
                ..
            } if on_udp(&shared, &peer) => {
                if path.kind == PathKind::Direct {
                    lock(&shared.no_direct).remove(&peer);
                }
                shared.reporter.path(
                    &peer,
                    path.kind.as_str(),
                    path.candidate_str(),
                    path.remote,
                    "udp",
                    &reason.to_string(),
                )
            }
            ClientEvent::Path {
                peer,
                path: None,
                reason,
                ..
            } if on_udp(&shared, &peer) => shared.reporter.error(Some(&peer), &reason.to_string()),
            ClientEvent::DirectFailed { peer, reason } if shared.tcp_fallback.is_some() => {
                let mut peers = lock(&shared.peers);
                match peers.get_mut(&peer) {
                    Some(e) => maybe_try_tcp(&shared, e, &peer, reason.to_string()),
                    None => {
                        lock(&shared.no_direct).insert(peer);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Try TCP for a peer whose chat is on UDP, once per connection, from the side that
/// opened the connection (so the two sides do not race).
fn maybe_try_tcp(shared: &Arc<Shared>, e: &mut PeerEntry, name: &str, why: String) {
    if e.mover.is_some() && e.initiator == shared.me && !e.tcp_tried {
        e.tcp_tried = true;
        tokio::spawn(try_tcp(shared.clone(), name.to_string(), why));
    }
}

/// The fallback's TCP client, when there is a fallback and it registered.
async fn tcp_client(fallback: Option<TcpFallback>) -> Option<Arc<TcpClient>> {
    fallback?.get().await
}

/// The peer's chat runs on UDP (or has not joined yet).
fn on_udp(shared: &Shared, peer: &str) -> bool {
    lock(&shared.peers)
        .get(peer)
        .is_none_or(|e| e.transport == "udp")
}

/// `--transport auto`, after UDP punching found no direct path to `name`: try a punched
/// TCP connection (no TCP relay: the UDP relay already carries the chat). When it works,
/// [`attach`] moves the chat onto it; when not, the chat stays on the relay.
///
/// Returns a boxed `Send` future: [`attach`] spawns this and this awaits `attach`, a cycle
/// through which the compiler cannot see `Send` for two `async fn`s.
fn try_tcp(
    shared: Arc<Shared>,
    name: String,
    why: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(try_tcp_inner(shared, name, why))
}

async fn try_tcp_inner(shared: Arc<Shared>, name: String, why: String) {
    let Some(tcp) = tcp_client(shared.tcp_fallback.clone()).await else {
        let reason = format!("no direct UDP path to {name} ({why}), and no TCP to try");
        shared.reporter.notice(&reason);
        return;
    };
    shared.reporter.notice(&format!(
        "no direct UDP path to {name} ({why}); trying a direct TCP connection"
    ));
    match tcp.connect_direct(&name).await {
        Ok(pc) => {
            let me = shared.me;
            attach(shared, joining(Io::Tcp(Box::new(pc)), me), false).await
        }
        Err(e) => {
            let key = lock(&shared.peers)
                .get(&name)
                .filter(|p| p.transport == "udp")
                .map(|p| p.key);
            let path = key.and_then(|k| shared.client.as_ref()?.current_path(&k));
            let reason = format!("no direct TCP path either ({e})");
            match path {
                Some(p) => shared.reporter.path(
                    &name,
                    p.kind.as_str(),
                    p.candidate_str(),
                    p.remote,
                    "udp",
                    &format!("{reason}; staying on the {}", p.kind),
                ),
                None => shared.reporter.notice(&format!("{name}: {reason}")),
            }
        }
    }
}

async fn broadcast(shared: &Shared, line: String) {
    let targets: Vec<mpsc::Sender<String>> =
        lock(&shared.peers).values().map(|e| e.tx.clone()).collect();
    if targets.is_empty() {
        let mut backlog = lock(&shared.backlog);
        if backlog.len() >= MAX_BACKLOG {
            shared.reporter.error(
                None,
                "no peer connected and the backlog is full; message dropped",
            );
        } else {
            backlog.push_back(line);
        }
        return;
    }
    for tx in targets {
        let _ = tx.send(line.clone()).await;
    }
}

/// Take a connection into the chat: report it, start its writer and reader. `counted`:
/// one of our `--peer` connections, counted in [`Shared::connecting`]. A TCP connection to
/// a peer whose chat runs on UDP is a move (see the module docs), not a second peer.
async fn attach(shared: Arc<Shared>, j: Joining, counted: bool) {
    let done = || {
        if counted {
            shared.connecting.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let mut io = j.io;
    let closer = match &io {
        Io::Quic(pc) => Closer::Quic(pc.connection.clone()),
        Io::Tcp(_) => Closer::Tcp(Arc::new(Notify::new())),
    };
    // Two connections to one peer happen when both sides name each other. Both sides keep
    // the one opened by the smaller key, so they agree without talking.
    let (rx, moved) = {
        let mut peers = lock(&shared.peers);
        if let Some(existing) = peers.get_mut(&j.name) {
            // The very connection already in the chat (our request for a peer that had
            // reached us was answered with its connection).
            if let (Closer::Quic(a), Closer::Quic(b)) = (&existing.closer, &closer) {
                if a.stable_id() == b.stable_id() {
                    drop(peers);
                    done();
                    return;
                }
            }
            io = match (io, existing.mover.take()) {
                (Io::Tcp(pc), Some(mover)) => {
                    move_to_tcp(&shared, existing, mover, *pc);
                    drop(peers);
                    done();
                    return;
                }
                (io, mover) => {
                    existing.mover = mover;
                    io
                }
            };
            if j.initiator >= existing.initiator {
                closer.close();
                drop(peers);
                done();
                return;
            }
            existing.closer.close();
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let quic = matches!(io, Io::Quic(_));
        // A UDP connection may move to TCP later (`--transport auto`).
        let (mover, moved) = if quic && shared.tcp_fallback.is_some() {
            let (w_tx, w_rx) = oneshot::channel();
            let (r_tx, r_rx) = oneshot::channel();
            let mover = Mover {
                writer: w_tx,
                reader: r_tx,
            };
            (Some(mover), Some((w_rx, r_rx)))
        } else {
            (None, None)
        };
        let entry = peers.entry(j.name.clone()).insert_entry(PeerEntry {
            tx,
            closer: closer.clone(),
            id,
            key: j.key,
            initiator: j.initiator,
            transport: if quic { "udp" } else { "tcp" },
            mover,
            tcp_tried: false,
        });
        // UDP punching already gave up on this peer before its connection got here.
        if lock(&shared.no_direct).remove(&j.name) {
            let why = "punching found no direct path".to_string();
            maybe_try_tcp(&shared, entry.into_mut(), &j.name, why);
        }
        // Read the current path only now, under the lock and after the insert: a path
        // event from now on is printed by the event task, and one before is seen here.
        match &io {
            Io::Quic(pc) => {
                let path = shared
                    .client
                    .as_ref()
                    .and_then(|c| c.current_path(&j.key))
                    .or(pc.path);
                let rtt = Some(pc.connection.rtt());
                let (kind, candidate, remote) = match &path {
                    Some(p) => (p.kind.as_str(), p.candidate_str(), p.remote),
                    None => ("none", "none", pc.connection.remote_address()),
                };
                shared
                    .reporter
                    .connected(&j.name, kind, candidate, remote, rtt, "udp");
            }
            Io::Tcp(pc) => {
                let p = &pc.path;
                shared
                    .reporter
                    .connected(&j.name, p.kind, p.candidate, p.remote, None, "tcp");
            }
        }
        (rx, moved)
    };
    let backlog: Vec<String> = lock(&shared.backlog).drain(..).collect();
    shared.writers.fetch_add(1, Ordering::SeqCst);
    done();
    let name = j.name;
    let reason = match io {
        Io::Quic(pc) => {
            let conn = pc.connection;
            let handoff = Arc::new(Handoff {
                steps: AtomicU8::new(0),
                conn: conn.clone(),
            });
            let (move_w, move_r) = moved.unzip();
            tokio::spawn(quic_writer(
                conn.clone(),
                rx,
                backlog,
                shared.clone(),
                name.clone(),
                move_w,
                handoff.clone(),
            ));
            quic_reader(conn, &shared, &name, move_r, handoff).await
        }
        Io::Tcp(pc) => {
            let (r, w) = tokio::io::split(pc.stream);
            let cancel = match &closer {
                Closer::Tcp(n) => n.clone(),
                Closer::Quic(_) => Arc::default(),
            };
            tokio::spawn(tcp_writer(
                Box::new(w),
                rx,
                backlog,
                shared.clone(),
                name.clone(),
            ));
            tcp_reader(Box::new(r), cancel, pc.relay_end, &shared, &name).await
        }
    };
    let still_current = lock(&shared.peers).get(&name).is_some_and(|e| e.id == id);
    if still_current {
        lock(&shared.peers).remove(&name);
        shared.reporter.disconnected(&name, &reason);
    }
}

/// Move a peer's chat from UDP to the TCP connection `pc`: its writer and reader take the
/// new halves once their QUIC stream is done.
fn move_to_tcp(shared: &Shared, entry: &mut PeerEntry, mover: Mover, pc: TcpPeerConnection) {
    let cancel = Arc::new(Notify::new());
    let (r, w) = tokio::io::split(pc.stream);
    let sent_w = mover.writer.send(Box::new(w)).is_ok();
    let sent_r = mover.reader.send((Box::new(r), cancel.clone())).is_ok();
    if !(sent_w && sent_r) {
        // The UDP connection is ending anyway; its reader reports that.
        return;
    }
    entry.closer = Closer::Tcp(cancel);
    entry.transport = "tcp";
    let p = &pc.path;
    let reason = format!(
        "moved to a {} TCP connection ({}): UDP gave no direct path",
        p.kind, p.candidate
    );
    shared
        .reporter
        .path(&pc.name, p.kind, p.candidate, p.remote, "tcp", &reason);
}

/// Send every message as it comes over a TCP stream (keepalives when idle), until the
/// chat drops the sender. False on failure.
async fn write_loop<W: AsyncWrite + Unpin>(
    w: &mut W,
    rx: &mut mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: &Shared,
    name: &str,
) -> bool {
    for line in backlog {
        if !send_line(w, &line, shared, name).await {
            return false;
        }
    }
    loop {
        let line = tokio::select! {
            line = rx.recv() => match line {
                Some(line) => line,
                None => return true,
            },
            // Idle: a keepalive (an empty message) keeps the relay and NATs from timing out.
            _ = tokio::time::sleep(TCP_KEEPALIVE) => String::new(),
        };
        if !send_line(w, &line, shared, name).await {
            return false;
        }
    }
}

async fn send_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    line: &str,
    shared: &Shared,
    name: &str,
) -> bool {
    match punch::chat::send_message(w, line).await {
        Ok(()) => true,
        Err(e) => {
            shared.reporter.error(Some(name), &e.to_string());
            false
        }
    }
}

/// What the QUIC writer does next.
enum Next {
    Line(Option<String>),
    Move(BoxWrite),
    NoMove,
}

/// The QUIC side of a peer's writer: the backlog, then every line; on a move to TCP,
/// finish the stream, wait until the peer has all of it, and go on over TCP.
async fn quic_writer(
    conn: quinn::Connection,
    mut rx: mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: Arc<Shared>,
    name: String,
    mut moved: Option<oneshot::Receiver<BoxWrite>>,
    handoff: Arc<Handoff>,
) {
    let mut stream = match conn.open_uni().await {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("cannot open stream: {e}");
            shared.reporter.error(Some(&name), &reason);
            shared.writers.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    };
    let mut ok = true;
    for line in backlog {
        if ok {
            ok = send_line(&mut stream, &line, &shared, &name).await;
        }
    }
    while ok {
        let next = tokio::select! {
            biased;
            w = async { moved.as_mut().expect("guarded by the condition").await }, if moved.is_some() => match w {
                Ok(w) => Next::Move(w),
                Err(_) => Next::NoMove,
            },
            line = rx.recv() => Next::Line(line),
        };
        match next {
            Next::NoMove => moved = None,
            Next::Line(Some(line)) => ok = send_line(&mut stream, &line, &shared, &name).await,
            Next::Line(None) => {
                // Our side is done: finish the stream and wait until the peer has every byte.
                let _ = stream.finish();
                let _ = stream.stopped().await;
                conn.close(0u32.into(), b"bye");
                break;
            }
            Next::Move(w) => {
                // Everything written so far reaches the peer before anything sent over TCP:
                // it reads this stream to its end first.
                let _ = stream.finish();
                let _ = stream.stopped().await;
                handoff.step();
                tcp_write(w, &mut rx, Vec::new(), &shared, &name).await;
                break;
            }
        }
    }
    shared.writers.fetch_sub(1, Ordering::SeqCst);
}

/// The QUIC side of a peer's reader: every message until the peer ends its stream; then,
/// after a move to TCP, the rest over TCP. The reason the peer's chat ended.
async fn quic_reader(
    conn: quinn::Connection,
    shared: &Shared,
    name: &str,
    moved: Option<oneshot::Receiver<(BoxRead, Arc<Notify>)>>,
    handoff: Arc<Handoff>,
) -> String {
    let mut stream = match conn.accept_uni().await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    if let Err(reason) = read_loop(&mut stream, shared, name).await {
        return reason;
    }
    let Some(moved) = moved else {
        return "peer finished".to_string();
    };
    // The peer ended its stream: it is leaving (and closes the connection), or it moved to
    // TCP, whose halves reach us before the peer could have ended the stream.
    let next = tokio::select! {
        biased;
        m = moved => m.ok(),
        _ = conn.closed() => None,
        // Neither: the peer's close was lost (it crashed after ending its stream).
        _ = tokio::time::sleep(MOVE_WAIT) => None,
    };
    match next {
        Some((r, cancel)) => {
            handoff.step();
            drop(conn);
            tcp_reader(r, cancel, None, shared, name).await
        }
        None => "peer finished".to_string(),
    }
}

async fn tcp_writer(
    w: BoxWrite,
    mut rx: mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: Arc<Shared>,
    name: String,
) {
    tcp_write(w, &mut rx, backlog, &shared, &name).await;
    shared.writers.fetch_sub(1, Ordering::SeqCst);
}

async fn tcp_write(
    mut w: BoxWrite,
    rx: &mut mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: &Shared,
    name: &str,
) {
    if write_loop(&mut w, rx, backlog, shared, name).await {
        // TLS close_notify, then FIN: the peer reads everything and then the end.
        let _ = w.shutdown().await;
    }
}

async fn tcp_reader(
    mut r: BoxRead,
    cancel: Arc<Notify>,
    relay_end: Option<RelayEnd>,
    shared: &Shared,
    name: &str,
) -> String {
    let reason = tokio::select! {
        end = read_loop(&mut r, shared, name) => match end {
            Ok(()) => "peer finished".to_string(),
            Err(reason) => reason,
        },
        _ = cancel.notified() => return "duplicate connection".to_string(),
    };
    // On the TCP relay, the server may have ended the session (a limit): say so.
    match relay_end {
        Some(mut end) => match end.reason(RELAY_REASON_WAIT).await {
            Some(why) => format!("relay closed: {why}"),
            None => reason,
        },
        None => reason,
    }
}

/// Print every message until the peer ends its stream (`Ok`), or why it failed.
async fn read_loop<R: AsyncRead + Unpin>(
    r: &mut R,
    shared: &Shared,
    name: &str,
) -> Result<(), String> {
    loop {
        match punch::chat::read_message(r).await {
            Ok(Some(text)) => shared.reporter.message(name, &text),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Parse `HOST:PORT` or `HOST` (default port 3478), resolving names.
pub fn resolve_server(s: &str, default_port: u16) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let with_port = if s.parse::<SocketAddr>().is_ok()
        || s.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        s.to_string()
    } else {
        format!("{s}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {s:?}"))?
        .find(|a| a.is_ipv4())
        .with_context(|| format!("no IPv4 address for {s:?}"))
}
