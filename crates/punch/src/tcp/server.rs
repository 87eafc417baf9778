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

use punch_proto::tcp::framing::FrameReader;
use punch_proto::tcp::registry::{Action, ConnId, Listener, TcpRegistry, TcpRegistryConfig};
use punch_proto::wire::Frame;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info};

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

/// How the TCP server is set up.
#[derive(Debug, Clone, Default)]
pub struct TcpServerConfig {
    /// Registry tunables (tables, lifetimes, relay on/off).
    pub registry: TcpRegistryConfig,
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
    Bad(ConnId),
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
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
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
                        registry.handle_frame(Instant::now().into_std(), id, frame);
                    }
                    Some(Event::Bad(id)) => registry.handle_bad_stream(id),
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
            Some(_) = tasks.join_next(), if !tasks.is_empty() => None,
            _ = tokio::time::sleep_until(wake) => None,
        };
        if let Some((listener, r)) = accepted {
            match r {
                Ok((stream, remote)) => {
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
                            tasks.spawn(conn_task(id, stream, crx, tx.clone()));
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
                Action::Splice(a, b) => {
                    let (ta, ra) = oneshot::channel();
                    let (tb, rb) = oneshot::channel();
                    if let (Some((ca, _)), Some((cb, _))) = (conns.get(&a), conns.get(&b)) {
                        let _ = ca.try_send(Cmd::Surrender(ta));
                        let _ = cb.try_send(Cmd::Surrender(tb));
                        tasks.spawn(splice(ra, rb));
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
            r = stream.read(&mut buf), if !relay_join => {
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
                            let _ = events.send(Event::Bad(id)).await;
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    let _ = events.send(Event::Closed(id)).await;
}

async fn splice(
    a: oneshot::Receiver<(TcpStream, Vec<u8>)>,
    b: oneshot::Receiver<(TcpStream, Vec<u8>)>,
) {
    let Ok((Ok((mut a, rest_a)), Ok((mut b, rest_b)))) =
        tokio::time::timeout(SPLICE_HANDOVER, async { (a.await, b.await) }).await
    else {
        return;
    };
    // Bytes a side sent before the splice (none with our client) go to the other side.
    if b.write_all(&rest_a).await.is_err() || a.write_all(&rest_b).await.is_err() {
        return;
    }
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok((ab, ba)) => debug!(ab, ba, "relay finished"),
        Err(e) => debug!(error = %e, "relay ended"),
    }
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
