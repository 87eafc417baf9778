//! `punch chat`: a small group chat over direct, authenticated connections.
//!
//! Owns the chat session's life: register, connect to the named peers, accept peers that
//! reach us, send every stdin line to every connected peer, print what arrives. The
//! network work is [`punch::client`] (UDP: QUIC, punched or relayed) or [`punch::tcp`]
//! (TLS over a punched or relayed TCP connection); the framing is [`punch::chat`], the
//! same on both.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use punch::client::{Client, ClientConfig, ClientError, ClientEvent, PeerConnection};
use punch::identity::{Identity, PublicKey};
use punch::tcp::client::{TcpClient, TcpClientConfig, TcpPeerConnection};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::natcache;
use crate::report::Reporter;

/// Lines typed before any peer is connected are kept (up to this many) and sent to the
/// first peer that connects, so nothing typed early is lost.
const MAX_BACKLOG: usize = 1000;
/// Lines queued per peer before the sender waits.
const PEER_QUEUE: usize = 256;
/// How long leaving waits for the peers to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Which transport carries the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: QUIC over a punched path or the relay (see `--relay`).
    Udp,
    /// TCP: TLS over a punched TCP connection, or the TCP relay.
    Tcp,
    /// UDP, and TCP when the server cannot be reached over UDP (a network that blocks it).
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
    initiator: PublicKey,
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
enum Net {
    Udp(Arc<Client>),
    Tcp(Arc<TcpClient>),
}

async fn start_tcp(opts: &ChatOptions, identity: Identity) -> Result<Net, String> {
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
        .map(|c| Net::Tcp(Arc::new(c)))
        .map_err(|e| e.to_string())
}

/// Register over the chosen transport; a failure is reported as an `error` event too.
async fn start(opts: &ChatOptions, identity: Identity, reporter: &Reporter) -> Result<Net> {
    let server = opts.client.server;
    let result = match opts.transport {
        Transport::Tcp => start_tcp(opts, identity)
            .await
            .map_err(|e| format!("server unreachable over TCP: {e}")),
        transport => match Client::start(opts.client.clone(), identity.clone()).await {
            Ok(c) => Ok(Net::Udp(Arc::new(c))),
            Err(e @ ClientError::ServerUnreachable(..)) if transport == Transport::Auto => {
                reporter.notice(&format!("no UDP answer from {server}; trying TCP"));
                start_tcp(opts, identity)
                    .await
                    .map_err(|tcp| format!("{e}; over TCP: {tcp}"))
            }
            Err(e) => Err(e.to_string()),
        },
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
        Net::Udp(c) => (c.public_key(), c.public_addr(), c.local_addr()),
        Net::Tcp(c) => (c.public_key(), c.public_addr(), c.local_addr()),
    };
    reporter.registered(&opts.client.name, &me.to_string(), public, local);
    let shared = Arc::new(Shared {
        reporter: reporter.clone(),
        client: match &net {
            Net::Udp(c) => Some(c.clone()),
            Net::Tcp(_) => None,
        },
        me,
        peers: Mutex::new(HashMap::new()),
        backlog: Mutex::new(VecDeque::new()),
        connecting: AtomicUsize::new(opts.peers.len()),
        writers: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
    });
    let mut tasks = JoinSet::new();
    if let Net::Udp(client) = &net {
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
        let (shared, peer) = (shared.clone(), peer.clone());
        let net = match &net {
            Net::Udp(c) => Net::Udp(c.clone()),
            Net::Tcp(c) => Net::Tcp(c.clone()),
        };
        tasks.spawn(async move {
            let joined = match net {
                Net::Udp(c) => c
                    .connect(&peer)
                    .await
                    .map(Io::Quic)
                    .map_err(|e| e.to_string()),
                Net::Tcp(c) => c
                    .connect(&peer)
                    .await
                    .map(|pc| Io::Tcp(Box::new(pc)))
                    .map_err(|e| e.to_string()),
            };
            match joined {
                Ok(io) => {
                    let me = shared.me;
                    let j = joining(io, me);
                    attach(shared, j, true).await
                }
                Err(e) => {
                    shared.reporter.error(Some(&peer), &e);
                    shared.connecting.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
    }
    match &net {
        Net::Udp(client) => {
            let (client, shared) = (client.clone(), shared.clone());
            tasks.spawn(udp_events(client, shared));
        }
        Net::Tcp(client) => {
            let (client, shared) = (client.clone(), shared.clone());
            tasks.spawn(async move {
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
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
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
    if let Net::Udp(c) = &net {
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
            ClientEvent::IncomingFailed { peer, reason } => {
                shared.reporter.error(Some(&peer), &reason)
            }
            ClientEvent::ServerLost => shared.reporter.notice("server stopped answering; retrying"),
            ClientEvent::ServerBack { public } => shared
                .reporter
                .notice(&format!("server answers again (public address {public})")),
            // A change before the peer is attached is already in its `connected` line.
            ClientEvent::Path { peer, path, reason } if lock(&shared.peers).contains_key(&peer) => {
                shared
                    .reporter
                    .path(&peer, path.kind, path.candidate, path.remote, &reason)
            }
            ClientEvent::PathError { peer, reason } => shared.reporter.error(Some(&peer), &reason),
            _ => {}
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
/// one of our `--peer` connections, counted in [`Shared::connecting`].
async fn attach(shared: Arc<Shared>, j: Joining, counted: bool) {
    let done = || {
        if counted {
            shared.connecting.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let closer = match &j.io {
        Io::Quic(pc) => Closer::Quic(pc.connection.clone()),
        Io::Tcp(_) => Closer::Tcp(Arc::new(Notify::new())),
    };
    // Two connections to one peer happen when both sides name each other. Both sides keep
    // the one opened by the smaller key, so they agree without talking.
    let rx = {
        let mut peers = lock(&shared.peers);
        if let Some(existing) = peers.get(&j.name) {
            if j.initiator >= existing.initiator {
                closer.close();
                drop(peers);
                done();
                return;
            }
            existing.closer.close();
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let cancel = match &closer {
            Closer::Tcp(n) => Some(n.clone()),
            Closer::Quic(_) => None,
        };
        peers.insert(
            j.name.clone(),
            PeerEntry {
                tx,
                closer,
                id,
                initiator: j.initiator,
            },
        );
        // Read the current path only now, under the lock and after the insert: a path
        // event from now on is printed by the event task, and one before is seen here.
        match &j.io {
            Io::Quic(pc) => {
                let path = shared
                    .client
                    .as_ref()
                    .and_then(|c| c.current_path(&j.key))
                    .unwrap_or(pc.path.clone());
                let rtt = Some(pc.connection.rtt());
                shared.reporter.connected(
                    &j.name,
                    path.kind,
                    path.candidate,
                    path.remote,
                    rtt,
                    "udp",
                );
            }
            Io::Tcp(pc) => {
                let p = &pc.path;
                shared
                    .reporter
                    .connected(&j.name, p.kind, p.candidate, p.remote, None, "tcp");
            }
        }
        (rx, cancel)
    };
    let backlog: Vec<String> = lock(&shared.backlog).drain(..).collect();
    shared.writers.fetch_add(1, Ordering::SeqCst);
    done();
    let (rx, cancel) = rx;
    let name = j.name;
    let reason = match j.io {
        Io::Quic(pc) => {
            let conn = pc.connection;
            tokio::spawn(quic_writer(
                conn.clone(),
                rx,
                backlog,
                shared.clone(),
                name.clone(),
            ));
            match conn.accept_uni().await {
                Ok(mut stream) => read_loop(&mut stream, &shared, &name).await,
                Err(e) => e.to_string(),
            }
        }
        Io::Tcp(pc) => {
            let (mut r, w) = tokio::io::split(pc.stream);
            let cancel = cancel.unwrap_or_default();
            tokio::spawn(tcp_writer(w, rx, backlog, shared.clone(), name.clone()));
            tokio::select! {
                reason = read_loop(&mut r, &shared, &name) => reason,
                _ = cancel.notified() => "duplicate connection".to_string(),
            }
        }
    };
    let still_current = lock(&shared.peers).get(&name).is_some_and(|e| e.id == id);
    if still_current {
        lock(&shared.peers).remove(&name);
        shared.reporter.disconnected(&name, &reason);
    }
}

/// Send the backlog, then every line until the chat drops the sender. False on failure.
async fn write_loop<W: AsyncWrite + Unpin>(
    w: &mut W,
    rx: &mut mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: &Shared,
    name: &str,
) -> bool {
    for line in backlog {
        if let Err(e) = punch::chat::send_message(w, &line).await {
            shared.reporter.error(Some(name), &e.to_string());
            return false;
        }
    }
    while let Some(line) = rx.recv().await {
        if let Err(e) = punch::chat::send_message(w, &line).await {
            shared.reporter.error(Some(name), &e.to_string());
            return false;
        }
    }
    true
}

async fn quic_writer(
    conn: quinn::Connection,
    mut rx: mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: Arc<Shared>,
    name: String,
) {
    match conn.open_uni().await {
        Ok(mut stream) => {
            if write_loop(&mut stream, &mut rx, backlog, &shared, &name).await {
                // Our side is done: finish the stream and wait until the peer has every byte.
                let _ = stream.finish();
                let _ = stream.stopped().await;
                conn.close(0u32.into(), b"bye");
            }
        }
        Err(e) => shared
            .reporter
            .error(Some(&name), &format!("cannot open stream: {e}")),
    }
    shared.writers.fetch_sub(1, Ordering::SeqCst);
}

async fn tcp_writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: Arc<Shared>,
    name: String,
) {
    if write_loop(&mut w, &mut rx, backlog, &shared, &name).await {
        // TLS close_notify, then FIN: the peer reads everything and then the end.
        let _ = w.shutdown().await;
    }
    shared.writers.fetch_sub(1, Ordering::SeqCst);
}

/// Print every message until the peer ends its stream; the reason it ended.
async fn read_loop<R: AsyncRead + Unpin>(r: &mut R, shared: &Shared, name: &str) -> String {
    loop {
        match punch::chat::read_message(r).await {
            Ok(Some(text)) => shared.reporter.message(name, &text),
            Ok(None) => return "peer finished".to_string(),
            Err(e) => return e.to_string(),
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
