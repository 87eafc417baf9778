//! `punch chat`: a small group chat over direct, authenticated connections.
//!
//! Owns input, output and presentation only: read stdin lines and send each to every
//! connected peer, print what arrives and every event the client reports. Reaching peers
//! (UDP or TCP, punched or relayed, moving between them) is [`punch::client`]'s; carrying
//! the messages across such moves is [`punch::conversation`]'s.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use punch::client::{
    Client, ClientConfig, ClientEvent, ConnectError, Path, PeerConnection, TransportMode,
};
use punch::conversation::{Conversation, ConversationEvent};
use punch::identity::{Identity, PublicKey};
use punch::telemetry::client::ClientMetrics;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::natcache;
use crate::report::Reporter;

/// Lines typed before any peer is connected are kept (up to this many) and sent to the
/// first peer that connects, so nothing typed early is lost.
const MAX_BACKLOG: usize = 1000;
/// How long leaving waits for the peers to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What `punch chat` was asked to do.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Client settings (server, name, timers, transport).
    pub client: ClientConfig,
    /// Peers to connect to.
    pub peers: Vec<String>,
    /// Where the identity key lives.
    pub home: PathBuf,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// One peer in the chat.
struct PeerEntry {
    tx: mpsc::Sender<String>,
    /// Ends this entry's conversation early (a duplicate of another to the same peer).
    cancel: Arc<Notify>,
    id: u64,
    /// Who opened its connection (duplicates are settled by the smaller key).
    initiator: PublicKey,
}

struct Shared {
    reporter: Reporter,
    client: Arc<Client>,
    auto: bool,
    /// The relay may carry peers (`--relay auto|only`).
    relay_on: bool,
    me: PublicKey,
    peers: Mutex<HashMap<String, PeerEntry>>,
    backlog: Mutex<VecDeque<String>>,
    /// `--peer` connections not yet attached or failed: input that ends early waits for
    /// them, so `echo hi | punch chat --peer bob` delivers its line.
    connecting: AtomicUsize,
    /// Per conversation: true once everything sent was delivered (leaving waits).
    flushed: Mutex<Vec<watch::Receiver<bool>>>,
    /// Counts what happens (no-ops without `--metrics`).
    metrics: ClientMetrics,
    /// Orders the `connected` lines against the `path` lines.
    path_lines: PathLines,
}

/// Keeps the lines that say which path a peer is on (`connected`, printed where a
/// connection is taken in, and `path`, printed by the event task) in the order of the
/// client's path table. The driver writes a path to that table before it queues the event
/// announcing it, and `connected` shows the table's path. Read and printed under one lock
/// with every path line, a `connected` line shows the path of the last `path` line before
/// it or a newer one (whose own line follows); read outside it, the read could come
/// before a move to the direct path and the print after that move's line, leaving the
/// relay as the last word.
#[derive(Debug, Default)]
struct PathLines(Mutex<()>);

impl PathLines {
    /// Print (`print`) a `connected` line about the path `read` finds now.
    fn connected<T>(&self, read: impl FnOnce() -> T, print: impl FnOnce(T)) {
        let _order = lock(&self.0);
        print(read());
    }

    /// Print (`print`) a line about a path event taken from the client's queue.
    fn path(&self, print: impl FnOnce()) {
        let _order = lock(&self.0);
        print();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The words of a path for the reporter: kind, candidate, remote.
fn words(path: Option<Path>, fallback: SocketAddr) -> (&'static str, &'static str, SocketAddr) {
    match path {
        Some(p) => (p.kind.as_str(), p.candidate_str(), p.remote),
        None => ("none", "none", fallback),
    }
}

/// Run a chat until stdin ends (then deliver what was typed and leave) or Ctrl-C.
pub async fn run(opts: ChatOptions, reporter: Reporter) -> Result<()> {
    // Before anything is sent: a bad address stops here. The endpoint stops when
    // `_metrics` is dropped.
    let _metrics = match opts.metrics {
        Some(addr) => {
            let m = punch::telemetry::serve(addr)
                .await
                .with_context(|| format!("--metrics {addr}"))?;
            reporter.notice(&format!("metrics: http://{}/metrics", m.local_addr()));
            Some(m)
        }
        None => None,
    };
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
    let me = client.public_key();
    // The socket is bound to every address: show the one our traffic to the server
    // leaves from (the LAN address peers behind the same NAT use).
    let server = client.server_addr();
    let mut local = punch::socket::family::canonical(client.local_addr());
    if local.ip().is_unspecified() {
        local.set_ip(punch::nat::local_ip_toward(server, local.ip()));
    }
    reporter.registered(
        &opts.client.name,
        &me.to_string(),
        client.public_addr(),
        local,
        server,
    );
    let metrics = ClientMetrics::new();
    metrics.registered();
    let shared = Arc::new(Shared {
        reporter: reporter.clone(),
        client: client.clone(),
        auto: opts.client.transport == TransportMode::Auto,
        relay_on: opts.client.relay != punch::client::RelayMode::Never,
        me,
        peers: Mutex::new(HashMap::new()),
        backlog: Mutex::new(VecDeque::new()),
        connecting: AtomicUsize::new(opts.peers.len()),
        flushed: Mutex::new(Vec::new()),
        metrics,
        path_lines: PathLines::default(),
    });
    let mut tasks = JoinSet::new();
    if client.transport() == punch::client::Transport::Udp {
        // Learn what our NAT does, without delaying the chat: the report arrives as an
        // event when ready (at once from the cache).
        let (home, reporter, bind) = (opts.home.clone(), reporter.clone(), opts.client.bind.ip());
        let shared = shared.clone();
        tasks.spawn(async move {
            match natcache::get(&home, server, bind).await {
                Ok((report, cached)) => {
                    reporter.nat(&report, cached);
                    // Peers learn it through the server; hopeless punching is skipped.
                    if let Some(classic) = report.classic {
                        shared.metrics.own_nat(classic);
                        shared.client.set_nat(classic).await;
                    }
                }
                Err(e) => reporter.notice(&format!("NAT discovery failed: {e}")),
            }
        });
    }
    for peer in &opts.peers {
        let (shared, peer) = (shared.clone(), peer.clone());
        tasks.spawn(async move {
            shared.metrics.connect_started(&peer);
            let connected = shared.client.connect(&peer).await;
            shared.metrics.connect_done(&peer, connected.is_ok());
            match connected {
                Ok(pc) => attach(shared, pc, true).await,
                Err(e) => {
                    // A refused key is told once, by the PeerKeyRefused event, with the
                    // file and the line to act on.
                    if !matches!(e, ConnectError::KeyChanged { .. }) {
                        shared.reporter.error(Some(&peer), &e.to_string());
                    }
                    shared.connecting.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
    }
    tasks.spawn(events(shared.clone()));

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
    let c = &opts.client;
    let limit = c.server_timeout + c.punch.deadline * 2 + Duration::from_secs(2);
    wait_until(limit, || shared.connecting.load(Ordering::SeqCst) == 0).await;
    // Deliver what was typed: dropping the senders ends each conversation's sending side,
    // which then waits until the peer has acknowledged every byte.
    drop(lock(&shared.peers).drain().collect::<Vec<_>>());
    let pending = lock(&shared.backlog).len();
    if pending > 0 {
        reporter.notice(&format!(
            "{pending} message(s) were never sent: no peer connected"
        ));
    }
    let flushed: Vec<watch::Receiver<bool>> = lock(&shared.flushed).clone();
    wait_until(FLUSH_TIMEOUT, || flushed.iter().all(|f| *f.borrow())).await;
    tasks.abort_all();
    client.close().await;
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

/// Print what the client reports; take in peers that reach us.
async fn events(shared: Arc<Shared>) {
    let (r, lines) = (&shared.reporter, &shared.path_lines);
    while let Some(ev) = shared.client.next_event().await {
        shared.metrics.event(&ev);
        match ev {
            ClientEvent::Incoming(pc) => {
                tokio::spawn(attach(shared.clone(), pc, false));
            }
            // With TCP on, the peer tries TCP next: not an error yet.
            ClientEvent::IncomingFailed { peer, error } if shared.auto => r.notice(&format!(
                "no UDP path from {peer} ({error}); TCP may follow"
            )),
            ClientEvent::IncomingFailed { peer, error } => r.error(Some(&peer), &error.to_string()),
            ClientEvent::Path {
                peer,
                path: Some(path),
                reason,
                ..
            } => {
                let (kind, candidate, remote) = words(Some(path), path.remote);
                let transport = path.transport.as_str();
                let reason = reason.to_string();
                lines.path(|| r.path(&peer, kind, candidate, remote, transport, &reason))
            }
            ClientEvent::Path {
                peer,
                path: None,
                reason,
                ..
            } => lines.path(|| r.error(Some(&peer), &reason.to_string())),
            ClientEvent::DirectFailed { peer, reason } if shared.auto => r.notice(&format!(
                "no direct UDP path to {peer} ({reason}); a direct TCP connection may follow"
            )),
            // The peer stays on the UDP relay: say so, and why.
            ClientEvent::DirectFailed { peer, reason } if shared.relay_on => lines.path(|| {
                r.path(
                    &peer,
                    "relay",
                    "relay",
                    shared.client.server_addr(),
                    "udp",
                    &format!("staying on the relay: {reason}"),
                )
            }),
            ClientEvent::DirectFailed { .. } => {}
            ClientEvent::PublicAddress { public } => r.address(
                "public",
                &public.to_string(),
                "the server sees us at a new address (our NAT gave us a new mapping)",
            ),
            ClientEvent::LocalAddress { local } => r.address(
                "local",
                &local.to_string(),
                "our local address changed; punching again",
            ),
            ClientEvent::Rebound { local } => r.address(
                "local",
                &local.to_string(),
                "moved to a fresh local port: punching from the old one failed after a lost path",
            ),
            ClientEvent::TransportFallback { reason } => r.notice(&reason),
            ClientEvent::ServerLost => r.notice("server stopped answering; retrying"),
            ClientEvent::ServerBack { public } => {
                r.notice(&format!("server answers again (public address {public})"))
            }
            ClientEvent::RegistrationRefused { reason } => {
                r.error(None, &format!("registration refused: {reason}"))
            }
            ClientEvent::PeerKey {
                peer,
                key,
                replaced,
                file,
            } => r.peer_key(
                &peer,
                &key.to_string(),
                replaced.map(|k| k.to_string()).as_deref(),
                file.map(|f| f.display().to_string()).as_deref(),
            ),
            ClientEvent::PeerKeyRefused {
                peer,
                known,
                offered,
                file,
            } => r.error(Some(&peer), &key_refused(&peer, &known, &offered, file)),
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

/// Take a connection into the chat: report it, run its conversation until it ends.
/// `counted`: one of our `--peer` connections, counted in [`Shared::connecting`].
async fn attach(shared: Arc<Shared>, pc: PeerConnection, counted: bool) {
    let done = || {
        if counted {
            shared.connecting.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let name = pc.name.clone();
    let initiator = if pc.opened_by_us { shared.me } else { pc.key };
    let cancel = Arc::new(Notify::new());
    // Two connections to one peer happen when both sides name each other. Both sides keep
    // the one opened by the smaller key, so they agree without talking.
    let (mut conv, pc_id) = {
        let mut peers = lock(&shared.peers);
        if let Some(existing) = peers.get(&name) {
            // The very connection already in the chat (our request for a peer that had
            // reached us was answered with its connection), or the one to keep.
            if existing.id == pc.id() {
                drop(peers);
                done();
                return;
            }
            if initiator >= existing.initiator {
                drop(peers);
                pc.close_duplicate();
                done();
                return;
            }
            existing.cancel.notify_waiters();
        }
        shared.path_lines.connected(
            || shared.client.current_path(&pc.key).or(pc.path),
            |path| {
                let (kind, candidate, remote) = words(path, shared.client.public_addr());
                let transport = path.map(|p| p.transport).unwrap_or(pc.transport());
                shared
                    .metrics
                    .connected(&name, path.as_ref(), !pc.opened_by_us);
                shared.reporter.connected(
                    &name,
                    &pc.key.to_string(),
                    kind,
                    candidate,
                    remote,
                    pc.rtt(),
                    transport.as_str(),
                );
            },
        );
        let pc_id = pc.id();
        let backlog: Vec<String> = lock(&shared.backlog).drain(..).collect();
        let mut conv = Conversation::start(pc, backlog);
        peers.insert(
            name.clone(),
            PeerEntry {
                tx: conv.sender(),
                cancel: cancel.clone(),
                id: pc_id,
                initiator,
            },
        );
        conv.close_sending();
        lock(&shared.flushed).push(conv.flushed());
        (conv, pc_id)
    };
    done();
    let reason = loop {
        tokio::select! {
            ev = conv.next() => match ev {
                Some(ConversationEvent::Message(text)) => shared.reporter.message(&name, &text),
                Some(ConversationEvent::SendFailed(e)) => shared.reporter.error(Some(&name), &e),
                Some(ConversationEvent::Ended(reason)) => break reason,
                None => break "conversation ended".to_string(),
            },
            _ = cancel.notified() => return conv.close_duplicate(),
        }
    };
    let mut peers = lock(&shared.peers);
    if peers.get(&name).map(|e| e.id) == Some(pc_id) {
        peers.remove(&name);
        drop(peers);
        shared.metrics.disconnected(&name);
        shared.reporter.disconnected(&name, &reason);
    }
    // Keep the conversation until the peer's side ended (it may still be delivering ours).
    drop(conv);
}

/// Parse `HOST:PORT`, `HOST`, `[IPV6]:PORT` or `IPV6` (default port 3478), resolving
/// names: every address, both families, in the resolver's order (the client races them,
/// see `punch::client::eyeballs`).
pub fn resolve_server(s: &str, default_port: u16) -> Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    let with_port = if s.parse::<SocketAddr>().is_ok()
        || s.rsplit_once(':')
            .is_some_and(|(h, p)| p.parse::<u16>().is_ok() && !h.contains(':'))
    {
        s.to_string()
    } else {
        format!("{s}:{default_port}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {s:?}"))?
        .map(punch::socket::family::canonical)
        .collect();
    anyhow::ensure!(!addrs.is_empty(), "no address for {s:?}");
    Ok(addrs)
}

/// What the user reads when a peer name comes with another key than the one we know.
fn key_refused(
    peer: &str,
    known: &punch::identity::PublicKey,
    offered: &punch::identity::PublicKey,
    file: Option<(PathBuf, usize)>,
) -> String {
    let remove = match file {
        Some((f, line)) => format!("remove line {line} of {} or pass", f.display()),
        None => "pass".into(),
    };
    format!(
        "REFUSED: {peer} came with key {offered}, but the key we know for {peer} is {known}. \
         Nothing was sent to it: the server, or whoever registered the name, may be posing as \
         {peer}. If {peer} really has a new key (check with them), {remove} \
         --accept-new-key {peer:?} to accept it."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;

    /// The order of the lab flake: the connection is taken in while the path table says
    /// relay, the driver moves the peer to direct and the event task prints that `path`
    /// line, and only then would the `connected` line be printed. The lines must still
    /// end on the table's path.
    #[test]
    fn a_connected_line_never_follows_a_newer_path_line() {
        let table = Arc::new(Mutex::new("relay"));
        let out = Arc::new(Mutex::new(Vec::<String>::new()));
        let lines = Arc::new(PathLines::default());
        let (read_tx, read_rx) = std_mpsc::channel();
        let (printed_tx, printed_rx) = std_mpsc::channel();
        let events = {
            let (table, out, lines) = (table.clone(), out.clone(), lines.clone());
            std::thread::spawn(move || {
                read_rx.recv().expect("the connected side read the table");
                // The driver: the table first, then the event; the event task prints it.
                *lock(&table) = "direct";
                lines.path(|| lock(&out).push("path direct".to_string()));
                let _ = printed_tx.send(());
            })
        };
        lines.connected(
            || {
                let path = *lock(&table);
                read_tx.send(()).expect("the event thread runs");
                // Give the event thread every chance to print in between: it must not
                // get to (it prints after us, or we would wait here in vain).
                let _ = printed_rx.recv_timeout(Duration::from_millis(300));
                path
            },
            |path| lock(&out).push(format!("connected {path}")),
        );
        events.join().expect("the event thread ends");
        let out = lock(&out).clone();
        let last = out.last().expect("two lines").rsplit(' ').next();
        assert_eq!(last, Some(*lock(&table)), "lines {out:?}");
    }
}
