//! `punch chat`: a small group chat over direct, authenticated QUIC connections.
//!
//! Owns the chat session's life: register, connect to the named peers, accept peers that
//! reach us, send every stdin line to every connected peer, print what arrives. The
//! network work is [`punch::client`]; the framing is [`punch::chat`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use punch::client::{Client, ClientConfig, ClientEvent, PeerConnection};
use punch::identity::{Identity, PublicKey};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::natcache;
use crate::report::Reporter;

/// Lines typed before any peer is connected are kept (up to this many) and sent to the
/// first peer that connects, so nothing typed early is lost.
const MAX_BACKLOG: usize = 1000;
/// Lines queued per peer before the sender waits.
const PEER_QUEUE: usize = 256;

/// What `punch chat` was asked to do.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Client settings (server, name, timers).
    pub client: ClientConfig,
    /// Peers to connect to.
    pub peers: Vec<String>,
    /// Where the identity key lives.
    pub home: PathBuf,
}

struct PeerEntry {
    tx: mpsc::Sender<String>,
    conn: quinn::Connection,
    initiator: PublicKey,
}

struct Shared {
    reporter: Reporter,
    /// Asked for a peer's current path when it connects (events before that are folded
    /// into the `connected` line).
    client: Arc<Client>,
    me: PublicKey,
    peers: Mutex<HashMap<String, PeerEntry>>,
    backlog: Mutex<VecDeque<String>>,
    /// `--peer` connections not yet attached or failed: input that ends early waits for
    /// them, so `echo hi | punch chat --peer bob` delivers its line.
    connecting: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run a chat until stdin ends (then deliver what was typed and leave) or Ctrl-C.
pub async fn run(opts: ChatOptions, reporter: Reporter) -> Result<()> {
    let identity = Identity::load_or_create(&opts.home)
        .with_context(|| format!("loading the identity key from {}", opts.home.display()))?;
    let server = opts.client.server;
    let client = match Client::start(opts.client.clone(), identity).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            reporter.error(None, &e.to_string());
            anyhow::bail!("could not register with {server}: {e}");
        }
    };
    reporter.registered(
        &opts.client.name,
        &client.public_key().to_string(),
        client.public_addr(),
        client.local_addr(),
    );
    {
        // Learn what our NAT does, without delaying the chat: the report arrives as an
        // event when ready (at once from the cache).
        let (home, reporter, bind) = (opts.home.clone(), reporter.clone(), opts.client.bind.ip());
        let client = client.clone();
        tokio::spawn(async move {
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
    let shared = Arc::new(Shared {
        reporter: reporter.clone(),
        client: client.clone(),
        me: client.public_key(),
        peers: Mutex::new(HashMap::new()),
        backlog: Mutex::new(VecDeque::new()),
        connecting: AtomicUsize::new(opts.peers.len()),
    });
    let mut tasks = JoinSet::new();
    for peer in &opts.peers {
        let (client, shared, peer) = (client.clone(), shared.clone(), peer.clone());
        tasks.spawn(async move {
            match client.connect(&peer).await {
                Ok(pc) => {
                    let me = shared.me;
                    attach(shared, pc, me, true).await
                }
                Err(e) => {
                    shared.reporter.error(Some(&peer), &e.to_string());
                    shared.connecting.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
    }
    {
        let (client, shared) = (client.clone(), shared.clone());
        tasks.spawn(async move {
            while let Some(ev) = client.next_event().await {
                match ev {
                    ClientEvent::Incoming(pc) => {
                        let (shared, initiator) = (shared.clone(), pc.key);
                        tokio::spawn(attach(shared, pc, initiator, false));
                    }
                    ClientEvent::IncomingFailed { peer, reason } => {
                        shared.reporter.error(Some(&peer), &reason)
                    }
                    ClientEvent::ServerLost => {
                        shared.reporter.notice("server stopped answering; retrying")
                    }
                    ClientEvent::ServerBack { public } => shared
                        .reporter
                        .notice(&format!("server answers again (public address {public})")),
                    // A change before the peer is attached is already in its `connected` line.
                    ClientEvent::Path { peer, path, reason }
                        if lock(&shared.peers).contains_key(&peer) =>
                    {
                        shared
                            .reporter
                            .path(&peer, path.kind, path.candidate, path.remote, &reason)
                    }
                    ClientEvent::PathError { peer, reason } => {
                        shared.reporter.error(Some(&peer), &reason)
                    }
                    _ => {}
                }
            }
        });
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
    let _ = tokio::time::timeout(limit, async {
        while shared.connecting.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Deliver what was typed: dropping the senders finishes each stream, whose writer
    // then waits until the peer has acknowledged every byte.
    let writers: Vec<PeerEntry> = lock(&shared.peers).drain().map(|(_, e)| e).collect();
    let conns: Vec<quinn::Connection> = writers.iter().map(|e| e.conn.clone()).collect();
    drop(writers);
    let pending = lock(&shared.backlog).len();
    if pending > 0 {
        reporter.notice(&format!(
            "{pending} message(s) were never sent: no peer connected"
        ));
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        for c in &conns {
            // The writer task closes the connection once the peer acknowledged the stream.
            let _ = c.closed().await;
        }
    })
    .await;
    tasks.abort_all();
    client.close().await;
    Ok(())
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
async fn attach(shared: Arc<Shared>, pc: PeerConnection, initiator: PublicKey, counted: bool) {
    let name = pc.name.clone();
    let conn = pc.connection.clone();
    let done = || {
        if counted {
            shared.connecting.fetch_sub(1, Ordering::SeqCst);
        }
    };
    // Two connections to one peer happen when both sides name each other. Both sides keep
    // the one opened by the smaller key, so they agree without talking.
    {
        let mut peers = lock(&shared.peers);
        if let Some(existing) = peers.get(&name) {
            let keep_new = initiator < existing.initiator;
            if !keep_new {
                conn.close(2u32.into(), b"duplicate connection");
                done();
                return;
            }
            existing.conn.close(2u32.into(), b"duplicate connection");
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        peers.insert(
            name.clone(),
            PeerEntry {
                tx,
                conn: conn.clone(),
                initiator,
            },
        );
        let backlog: Vec<String> = lock(&shared.backlog).drain(..).collect();
        let path = shared.client.current_path(&pc.key).unwrap_or(pc.path);
        shared
            .reporter
            .connected(&name, path.kind, path.candidate, path.remote, conn.rtt());
        tokio::spawn(writer(
            conn.clone(),
            rx,
            backlog,
            shared.clone(),
            name.clone(),
        ));
    }
    done();
    reader(shared, name, conn).await;
}

async fn writer(
    conn: quinn::Connection,
    mut rx: mpsc::Receiver<String>,
    backlog: Vec<String>,
    shared: Arc<Shared>,
    name: String,
) {
    let mut stream = match conn.open_uni().await {
        Ok(s) => s,
        Err(e) => {
            shared
                .reporter
                .error(Some(&name), &format!("cannot open stream: {e}"));
            return;
        }
    };
    for line in backlog {
        if let Err(e) = punch::chat::send_message(&mut stream, &line).await {
            shared.reporter.error(Some(&name), &e.to_string());
            return;
        }
    }
    while let Some(line) = rx.recv().await {
        if let Err(e) = punch::chat::send_message(&mut stream, &line).await {
            shared.reporter.error(Some(&name), &e.to_string());
            return;
        }
    }
    // Our side is done: finish the stream and wait until the peer has every byte.
    let _ = stream.finish();
    let _ = stream.stopped().await;
    conn.close(0u32.into(), b"bye");
}

async fn reader(shared: Arc<Shared>, name: String, conn: quinn::Connection) {
    let reason = match conn.accept_uni().await {
        Ok(mut stream) => loop {
            match punch::chat::read_message(&mut stream).await {
                Ok(Some(text)) => shared.reporter.message(&name, &text),
                Ok(None) => break "peer finished".to_string(),
                Err(e) => break e.to_string(),
            }
        },
        Err(e) => e.to_string(),
    };
    let still_current = lock(&shared.peers)
        .get(&name)
        .is_some_and(|e| e.conn.stable_id() == conn.stable_id());
    if still_current {
        lock(&shared.peers).remove(&name);
        shared.reporter.disconnected(&name, &reason);
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
