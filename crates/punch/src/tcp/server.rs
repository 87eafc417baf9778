//! The TCP side of the rendezvous server: the main listener (control and relay connections)
//! and the assist listener, driving the sans-IO [`TcpRegistry`].
//!
//! Owns the listeners, one task per connection (reading frames, writing what the registry
//! says), and the splice tasks of relayed sessions; all belong to [`run`]'s future (or to a
//! [`TcpServerHandle`]) and stop with it. Protocol decisions are the registry's. It does not
//! own the UDP server ([`crate::server`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use punch_proto::relay::{Admit, RelayConfig, RelayUsage};
use punch_proto::tcp::framing::{encode_framed, FrameReader, FramingError};
use punch_proto::tcp::registry::{Action, ConnId, Listener, TcpRegistry, TcpRegistryConfig};
use punch_proto::wire::Frame;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::telemetry::server::{TcpMetrics, PUBLISH_INTERVAL};

/// Default TCP assist port: the UDP/TCP main port 3478 + 1.
pub const DEFAULT_ASSIST_PORT: u16 = 3479;
/// Most connections from one IP address at once (a NAT may hide many clients behind one).
pub const MAX_CONNS_PER_IP: usize = 256;
/// Frames and commands queued per connection before it is closed as too slow.
const CONN_QUEUE: usize = 64;
/// Events queued from connection tasks to the server loop.
const INBOX: usize = 4096;
/// A write to a client that takes longer than this closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a splice waits for both connections to be handed over.
const SPLICE_HANDOVER: Duration = Duration::from_secs(5);

/// Largest read of a relayed stream (also bounded by one second's worth of the rate).
const RELAY_CHUNK: usize = 16 * 1024;

/// How the TCP server is set up.
#[derive(Debug, Clone, Default)]
pub struct TcpServerConfig {
    /// Registry tunables (tables, lifetimes, relay on/off).
    pub registry: TcpRegistryConfig,
    /// Per-session relay limits, as for the UDP relay: a relayed stream over the rate
    /// waits (TCP pushes back on the sender); the volume limit and the idle timeout end
    /// the session, and both peers hear why on their control connections.
    pub relay_limits: RelayConfig,
}

/// A relayed session the relay ended, and why.
struct RelayEnded {
    session: u64,
    controls: (ConnId, ConnId),
    reason: String,
}

/// The server's two bound listeners.
#[derive(Debug)]
pub struct TcpListeners {
    main: TcpListener,
    assist: TcpListener,
}

impl TcpListeners {
    /// Bind the main and assist listeners.
    pub async fn bind(main: SocketAddr, assist: SocketAddr) -> io::Result<TcpListeners> {
        let bind = |a: SocketAddr| async move {
            TcpListener::bind(a)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {a}/tcp: {e}")))
        };
        Ok(TcpListeners {
            main: bind(main).await?,
            assist: bind(assist).await?,
        })
    }

    /// The main listener's address.
    pub fn main_addr(&self) -> io::Result<SocketAddr> {
        self.main.local_addr()
    }

    /// The assist listener's address.
    pub fn assist_addr(&self) -> io::Result<SocketAddr> {
        self.assist.local_addr()
    }
}

enum Cmd {
    Send(Vec<u8>),
    Close,
    Surrender(oneshot::Sender<(TcpStream, Vec<u8>)>),
}

enum Event {
    Frame(ConnId, Frame),
    /// The stream broke the framing; with the frame if it was one of another wire version.
    Bad(ConnId, Option<Vec<u8>>),
    Closed(ConnId),
}

/// Serve TCP on `listeners` until `shutdown` completes.
pub async fn run(
    listeners: TcpListeners,
    cfg: TcpServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    info!(main = ?listeners.main_addr()?, assist = ?listeners.assist_addr()?,
        "TCP rendezvous listening (main: control + relay, assist: mapping of punching ports)");
    let mut registry = TcpRegistry::new(cfg.registry, rand::rng().random());
    let (tx, mut inbox) = mpsc::channel::<Event>(INBOX);
    let mut conns: HashMap<ConnId, (mpsc::Sender<Cmd>, IpAddr)> = HashMap::new();
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    let mut tasks: JoinSet<Option<RelayEnded>> = JoinSet::new();
    let mut next_id = 0u64;
    let metrics = TcpMetrics::new();
    let mut publish = tokio::time::interval(PUBLISH_INTERVAL);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let wake = registry
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let accepted = tokio::select! {
            _ = &mut shutdown => {
                info!(stats = ?registry.stats(), "TCP server stopping");
                return Ok(());
            }
            r = listeners.main.accept() => Some((Listener::Main, r)),
            r = listeners.assist.accept() => Some((Listener::Assist, r)),
            ev = inbox.recv() => {
                // The loop holds a sender, so the channel never closes.
                match ev {
                    Some(Event::Frame(id, frame)) => {
                        debug!(conn = id.0, ?frame, "tcp frame");
                        metrics.request(&frame);
                        registry.handle_frame(Instant::now().into_std(), id, frame);
                    }
                    Some(Event::Bad(id, None)) => registry.handle_bad_stream(id),
                    Some(Event::Bad(id, Some(frame))) => registry.handle_other_version(id, &frame),
                    Some(Event::Closed(id)) => {
                        registry.handle_close(id);
                        if let Some((_, ip)) = conns.remove(&id) {
                            if let Some(n) = per_ip.get_mut(&ip) {
                                *n -= 1;
                                if *n == 0 {
                                    per_ip.remove(&ip);
                                }
                            }
                        }
                    }
                    None => {}
                }
                None
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(Some(ended)) = done {
                    info!(session = ended.session, reason = %ended.reason, "TCP relay ended");
                    let frame = Frame::RelayClosed { session: ended.session, reason: ended.reason };
                    if let Ok(bytes) = encode_framed(&frame) {
                        for id in [ended.controls.0, ended.controls.1] {
                            if let Some((c, _)) = conns.get(&id) {
                                let _ = c.try_send(Cmd::Send(bytes.clone()));
                            }
                        }
                    }
                }
                None
            }
            _ = tokio::time::sleep_until(wake) => None,
            _ = publish.tick() => {
                let (peers, open) = (registry.peer_count(), registry.connection_count());
                metrics.publish(registry.stats(), peers, open);
                None
            }
        };
        if let Some((listener, r)) = accepted {
            match r {
                Ok((stream, remote)) => {
                    // A dual-stack listener shows IPv4 peers IPv4-mapped.
                    let remote = crate::socket::family::canonical(remote);
                    let count = per_ip.entry(remote.ip()).or_insert(0);
                    if *count >= MAX_CONNS_PER_IP {
                        debug!(%remote, "too many connections from this address");
                    } else {
                        next_id += 1;
                        let id = ConnId(next_id);
                        if registry.handle_open(Instant::now().into_std(), id, listener, remote) {
                            *count += 1;
                            let (ctx, crx) = mpsc::channel(CONN_QUEUE);
                            conns.insert(id, (ctx, remote.ip()));
                            let _ = stream.set_nodelay(true);
                            let task = conn_task(id, stream, crx, tx.clone());
                            tasks.spawn(async move {
                                task.await;
                                None
                            });
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    // E.g. EMFILE: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        registry.handle_timeout(Instant::now().into_std());
        while let Some(action) = registry.poll_action() {
            match action {
                Action::Send(id, bytes) => {
                    if let Some((c, _)) = conns.get(&id) {
                        if c.try_send(Cmd::Send(bytes)).is_err() {
                            let _ = c.try_send(Cmd::Close);
                        }
                    }
                }
                Action::Close(id) => match conns.get(&id) {
                    Some((c, _)) => {
                        let _ = c.try_send(Cmd::Close);
                    }
                    None => registry.handle_close(id),
                },
                Action::Splice {
                    session,
                    joins: (a, b),
                    controls,
                } => {
                    let (ta, ra) = oneshot::channel();
                    let (tb, rb) = oneshot::channel();
                    if let (Some((ca, _)), Some((cb, _))) = (conns.get(&a), conns.get(&b)) {
                        let _ = ca.try_send(Cmd::Surrender(ta));
                        let _ = cb.try_send(Cmd::Surrender(tb));
                        let limits = cfg.relay_limits.clone();
                        let counters = (metrics.relayed_bytes(), metrics.relay_sessions());
                        tasks.spawn(async move {
                            let reason = splice(ra, rb, limits, counters).await?;
                            Some(RelayEnded {
                                session,
                                controls,
                                reason,
                            })
                        });
                    }
                }
            }
        }
    }
}

async fn conn_task(
    id: ConnId,
    mut stream: TcpStream,
    mut cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<Event>,
) {
    let mut reader = FrameReader::new();
    let mut buf = [0u8; 2048];
    // After a relay join the client sends nothing until the server's TcpRelayReady; what
    // it sends then (TLS) belongs to the peer, so this task stops reading: the bytes wait in
    // the socket for the splice.
    let mut relay_join = false;
    // Cleared when the stream breaks the framing: the task then waits for the registry's
    // answer (an upgrade notice, or just the close) and reads nothing more.
    let mut reading = true;
    'outer: loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                None | Some(Cmd::Close) => break,
                Some(Cmd::Send(bytes)) => {
                    let w = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await;
                    if !matches!(w, Ok(Ok(()))) {
                        break;
                    }
                }
                Some(Cmd::Surrender(to)) => {
                    let _ = to.send((stream, reader.into_rest()));
                    let _ = events.send(Event::Closed(id)).await;
                    return;
                }
            },
            r = stream.read(&mut buf), if !relay_join && reading => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                reader.push(&buf[..n]);
                loop {
                    match reader.next_frame() {
                        Ok(Some(f)) => {
                            relay_join = matches!(f, Frame::TcpRelayJoin { .. });
                            if events.send(Event::Frame(id, f)).await.is_err() {
                                break 'outer;
                            }
                            if relay_join {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            debug!(conn = id.0, error = %e, "bad stream");
                            let frame = match e {
                                FramingError::OtherVersion { frame, .. } => Some(frame),
                                _ => None,
                            };
                            if events.send(Event::Bad(id, frame)).await.is_err() {
                                break 'outer;
                            }
                            reading = false;
                            break;
                        }
                    }
                }
            }
        }
    }
    let _ = events.send(Event::Closed(id)).await;
}

/// Relay between two joined connections until both ends finish, or a limit ends the
/// session (the reason is returned). `counters`: bytes relayed, and the live sessions
/// (this one counts in them while it runs).
async fn splice(
    a: oneshot::Receiver<(TcpStream, Vec<u8>)>,
    b: oneshot::Receiver<(TcpStream, Vec<u8>)>,
    limits: RelayConfig,
    counters: (metrics::Counter, metrics::Gauge),
) -> Option<String> {
    let Ok((Ok((a, rest_a)), Ok((b, rest_b)))) =
        tokio::time::timeout(SPLICE_HANDOVER, async { (a.await, b.await) }).await
    else {
        return None;
    };
    let (bytes, live) = counters;
    let _live = LiveSession::new(live);
    let started = Instant::now().into_std();
    let usage = std::sync::Mutex::new(RelayUsage::new(&limits, started));
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    // Bytes a side sent before the splice (none with our client) go to the other side.
    let ab = pump(&mut ar, &mut bw, rest_a, &usage, &limits, &bytes);
    let ba = pump(&mut br, &mut aw, rest_b, &usage, &limits, &bytes);
    let idle = async {
        loop {
            let at = lock(&usage).idle_at(&limits, started);
            if Instant::now().into_std() >= at {
                return format!(
                    "relay idle timeout: nothing relayed for {:?}",
                    limits.idle_timeout
                );
            }
            tokio::time::sleep_until(Instant::from_std(at)).await;
        }
    };
    let ended = tokio::select! {
        r = async { tokio::try_join!(ab, ba) } => r.err(),
        reason = idle => Some(reason),
    };
    let u = lock(&usage);
    debug!(bytes = u.total, reason = ?ended, "TCP relay finished");
    ended
}

/// A relay session counted in the live ones until dropped (also when its task is aborted).
struct LiveSession(metrics::Gauge);

impl LiveSession {
    fn new(live: metrics::Gauge) -> LiveSession {
        live.increment(1.0);
        LiveSession(live)
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Copy one direction of a relayed session within the limits, counting the bytes in
/// `relayed`. `Ok` when the sender has finished (or the connection failed), `Err` with the
/// reason when a limit ends the session.
async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    first: Vec<u8>,
    usage: &std::sync::Mutex<RelayUsage>,
    limits: &RelayConfig,
    relayed: &metrics::Counter,
) -> Result<(), String> {
    let chunk = RELAY_CHUNK.min(usize::try_from(limits.rate).unwrap_or(usize::MAX).max(1));
    for part in first.chunks(chunk) {
        if !forward(w, part, usage, limits, relayed).await? {
            return Ok(());
        }
    }
    let mut buf = vec![0u8; chunk];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
        };
        if !forward(w, &buf[..n], usage, limits, relayed).await? {
            return Ok(());
        }
    }
}

/// Write `part` (at most one second's worth of the rate) once the rate allows it, and
/// count it in `relayed`. `Ok(false)` when the writer failed; `Err` with the reason when a
/// limit ends the session.
async fn forward<W: AsyncWrite + Unpin>(
    w: &mut W,
    part: &[u8],
    usage: &std::sync::Mutex<RelayUsage>,
    limits: &RelayConfig,
    relayed: &metrics::Counter,
) -> Result<bool, String> {
    loop {
        let now = Instant::now().into_std();
        let wait = {
            let mut u = lock(usage);
            match u.admit(limits, now, part.len()) {
                Admit::Forward => break,
                Admit::Close(reason) => return Err(reason),
                Admit::OverRate => u.wait_for(limits, now, part.len()),
            }
        };
        // Over the rate: wait (not reading meanwhile, so TCP slows the sender).
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
    let written = w.write_all(part).await.is_ok();
    if written {
        relayed.increment(part.len() as u64);
    }
    Ok(written)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TCP server running in the background; stops (with every connection and relay) when dropped.
#[derive(Debug)]
pub struct TcpServerHandle {
    main: SocketAddr,
    assist: SocketAddr,
    task: JoinHandle<io::Result<()>>,
}

impl TcpServerHandle {
    /// Bind `main` and `assist` and serve in a background task.
    pub async fn spawn(
        main: SocketAddr,
        assist: SocketAddr,
        cfg: TcpServerConfig,
    ) -> io::Result<TcpServerHandle> {
        let listeners = TcpListeners::bind(main, assist).await?;
        let (main, assist) = (listeners.main_addr()?, listeners.assist_addr()?);
        let task = tokio::spawn(run(listeners, cfg, std::future::pending()));
        Ok(TcpServerHandle { main, assist, task })
    }

    /// The main listener's address.
    pub fn main_addr(&self) -> SocketAddr {
        self.main
    }

    /// The assist listener's address.
    pub fn assist_addr(&self) -> SocketAddr {
        self.assist
    }
}

impl Drop for TcpServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
