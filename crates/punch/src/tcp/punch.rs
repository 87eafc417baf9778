//! One TCP punching session, either side: the punching port (a listener and the assist
//! connection from the same port), simultaneous connects and accepts toward the peer's
//! candidates, TLS 1.3 with pinned Ed25519 keys over the winner, and the relay fallback
//! through the server's main port.
//!
//! Owns the sockets and tasks of one session (in a `JoinSet` that ends with it). The
//! control connection that starts sessions and routes their frames is
//! [`super::client`]'s; the protocol sequence is documented in [`punch_proto::tcp`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use punch_proto::agent::CandidateKind;
use punch_proto::client::{ConnectError, Path, PathKind, Transport};
use punch_proto::tcp::framing::{encode_framed, LEN_PREFIX};
use punch_proto::wire::{Frame, PeerInfo, MAX_FRAME_LEN};
use rand::Rng;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info};

use super::client::{Ctl, Ctx, SessionMsg};
use super::sockets::{connect_from, opening_syn, reusable_listener};
use crate::identity::{Identity, PublicKey};
use crate::tls::{self, TlsError};

/// TLS handshake deadline on an established connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a low-TTL opening SYN ([`super::client::TcpConfig::open_ttl`]) is left outstanding.
const OPEN_LINGER: Duration = Duration::from_millis(100);
/// Longest the target waits, after reporting ready, for the requester to hear of it
/// (the target's measured round trip to the server stands in for that time; see
/// [`respond`]).
const MAX_FIRE_DELAY: Duration = Duration::from_secs(1);
/// Per-attempt connect timeout (the kernel retransmits the SYN after 1 s).
const CONNECT_ATTEMPT: Duration = Duration::from_millis(1500);
/// Pause between connect attempts to one candidate after a failure (a RST from a router
/// that answers unsolicited SYNs, unreachable): drawn anew each time from this range, so
/// that two sides whose attempts miss each other do not keep missing in lockstep.
const CONNECT_RETRY: std::ops::Range<Duration> =
    Duration::from_millis(50)..Duration::from_millis(250);
/// Extra time the target waits for a relay offer after its punching deadline.
const RELAY_GRACE: Duration = Duration::from_secs(10);
/// Most established connections handshaking at once in one session (target side).
const MAX_HANDSHAKES: usize = 8;
/// Relayed connections whose end we may hear of, at most (older ones are forgotten once
/// their connection is dropped).
const MAX_RELAY_ENDS: usize = 1024;

/// An authenticated TLS-over-TCP connection to a named peer.
#[derive(Debug)]
pub struct TcpLink {
    /// The peer's registered name.
    pub name: String,
    /// The peer's key, proven in the TLS handshake.
    pub key: PublicKey,
    /// The TLS stream (client side for the requester, server side for the target).
    pub stream: TlsStream<TcpStream>,
    /// The path it runs on.
    pub path: Path,
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

/// A punched TCP path to `remote`: `candidate` is how it came about (`"public"` or
/// `"private"`: we connected to that candidate; `"accepted"`: the peer's SYN reached our
/// listener, from an address we learned that way).
fn direct_path(candidate: &str, remote: SocketAddr) -> Path {
    let kind = match candidate {
        "private" => CandidateKind::Host,
        "public" => CandidateKind::ServerReflexive,
        _ => CandidateKind::PeerReflexive,
    };
    Path {
        kind: PathKind::Direct,
        candidate: Some(kind),
        remote,
        rtt: Duration::ZERO,
        transport: Transport::Tcp,
    }
}

/// A punched connection to `name`, authenticated as `key`.
fn direct_link(
    name: String,
    key: PublicKey,
    stream: TlsStream<TcpStream>,
    candidate: &str,
    remote: SocketAddr,
) -> TcpLink {
    TcpLink {
        name,
        key,
        stream,
        path: direct_path(candidate, remote),
        relay_end: None,
    }
}

pub(super) async fn write_frame(
    w: &mut (impl AsyncWriteExt + Unpin),
    frame: &Frame,
) -> io::Result<()> {
    let bytes = encode_framed(frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&bytes).await
}

/// Read exactly one frame, never a byte beyond it (what follows may be spliced peer data).
pub(super) async fn read_one_frame(r: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Frame> {
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

/// A punching port: a listener on p, and the assist connection from p (kept open while the
/// session punches, so the mapping the server observed stays).
struct PunchPort {
    listener: TcpListener,
    local: SocketAddr,
    _assist: TcpStream,
    /// Round trip of the assist exchange: our time to the server and back.
    server_rtt: Duration,
}

async fn open_punch_port(ctx: &Ctx, session: u64) -> io::Result<PunchPort> {
    // The family of the server address in use: the punching port's candidates are of it.
    let unspecified: IpAddr = match ctx.server_main().is_ipv4() {
        true => Ipv4Addr::UNSPECIFIED.into(),
        false => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let listener = reusable_listener(SocketAddr::new(unspecified, 0))?;
    let port = listener.local_addr()?.port();
    let local = SocketAddr::new(unspecified, port);
    let mut assist = connect_from(local, ctx.server_assist(), None, ctx.cfg.server_timeout).await?;
    let private = vec![SocketAddr::new(ctx.local_ip(), port)];
    let sent = Instant::now();
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
    let server_rtt = sent.elapsed();
    debug!(session, %local, %observed, ?server_rtt, "punching port mapped");
    Ok(PunchPort {
        listener,
        local,
        _assist: assist,
        server_rtt,
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
                        // Refused (a RST: the peer's router had no state for us yet, or
                        // answers every unsolicited SYN) or unreachable: again from the
                        // same port, so the peer's attempts keep finding our mapping.
                        debug!(%cand, kind, error = %e, "TCP connect attempt failed");
                        tokio::time::sleep(retry_pause()).await;
                    }
                }
            }
        });
    }
}

/// A pause from [`CONNECT_RETRY`].
fn retry_pause() -> Duration {
    rand::rng().random_range(CONNECT_RETRY)
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
                    tokio::time::sleep(retry_pause()).await;
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
    let mut s = tokio::time::timeout(
        ctx.cfg.server_timeout,
        TcpStream::connect(ctx.server_main()),
    )
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
pub(super) async fn initiate(
    ctx: &Ctx,
    session: u64,
    target: &str,
    relay: bool,
    mut msgs: mpsc::Receiver<SessionMsg>,
) -> Result<TcpLink, ConnectError> {
    let timeout = ctx.cfg.punch_timeout;
    let deadline = Instant::now() + timeout;
    let no_path = |why: String| ConnectError::NoTcpPath {
        deadline: timeout,
        detail: why,
    };
    let port = open_punch_port(ctx, session)
        .await
        .map_err(|e| no_path(format!("assist port: {e}")))?;
    let own_private = SocketAddr::new(ctx.local_ip(), port.local.port());
    // Wait for the target to be ready: its introduction carries its key and addresses.
    let peer = loop {
        let msg = tokio::time::timeout_at(deadline, msgs.recv())
            .await
            .map_err(|_| no_path(format!("{target} did not answer the introduction")))?;
        match msg {
            Some(SessionMsg::Introduce(peer)) => break peer,
            Some(SessionMsg::Refused(e)) => return Err(e),
            Some(SessionMsg::Error(e)) => return Err(no_path(e)),
            Some(SessionMsg::Relay) => {}
            None => return Err(ConnectError::Closed),
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
                Ok(stream) => return Ok(direct_link(peer.name, key, stream, candidate, remote)),
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
        .map_err(ConnectError::Handshake)?;
    Ok(relayed(ctx, session, peer.name, key, stream))
}

/// A connection to `name` carried by the server's TCP relay.
fn relayed(
    ctx: &Ctx,
    session: u64,
    name: String,
    key: PublicKey,
    stream: TlsStream<TcpStream>,
) -> TcpLink {
    TcpLink {
        name,
        key,
        stream,
        path: Path::relay(ctx.server_main()).over(Transport::Tcp),
        relay_end: relay_end(ctx, session),
    }
}

/// Listen for the relay's word on how `session` ended.
pub(super) fn relay_end(ctx: &Ctx, session: u64) -> Option<RelayEnd> {
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
pub(super) async fn respond(
    ctx: &Ctx,
    session: u64,
    peer: PeerInfo,
    mut msgs: mpsc::Receiver<SessionMsg>,
) -> Result<TcpLink, ConnectError> {
    let timeout = ctx.cfg.punch_timeout;
    let deadline = Instant::now() + timeout;
    let give_up = deadline + RELAY_GRACE;
    let no_path = |why: String| ConnectError::NoTcpPath {
        deadline: timeout,
        detail: why,
    };
    let key = PublicKey::from_bytes(peer.key);
    let port = open_punch_port(ctx, session)
        .await
        .map_err(|e| no_path(format!("assist port: {e}")))?;
    let own_private = SocketAddr::new(ctx.local_ip(), port.local.port());
    let (tx, mut rx) = mpsc::channel::<Established>(MAX_HANDSHAKES);
    let mut set = JoinSet::new();
    if ctx.cfg.punch {
        if let Some(ttl) = ctx.cfg.open_ttl {
            opening_syn(port.local, peer.public, ttl, OPEN_LINGER).await;
        }
    }
    let _ = ctx.ctl.send(Ctl::Send(Frame::TcpReady { session })).await;
    if ctx.cfg.punch {
        // Both first SYNs should be in flight at once, so that each meets the other's
        // NAT state (a simultaneous open). A router that answers an unsolicited SYN with a
        // RST (the Linux default without a drop rule, and many home routers) otherwise
        // kills the first side's attempt, and with it that side's NAT state, before the
        // second side's SYN arrives. The requester fires when our ready reaches it through
        // the server, one-way times d_us + d_them after now; we fire after our round trip
        // to the server, 2 d_us. The two SYNs leave |d_us - d_them| apart, which the
        // triangle inequality bounds by the one-way time between the peers: they cross.
        // Our connect socket stays in SYN-SENT (retransmitting) so that the requester's SYN
        // meets it, or else our listener.
        spawn_punch(
            &mut set,
            &port,
            &peer,
            own_private,
            port.server_rtt.min(MAX_FIRE_DELAY),
            deadline,
            tx.clone(),
        );
    }
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
                            return Ok(direct_link(peer.name, key, stream, candidate, remote));
                        }
                        Ok(Err(e)) => debug!(error = %e, "TLS on punched connection failed"),
                        Err(_) => {}
                    }
                }
                msg = msgs.recv() => match msg {
                    Some(SessionMsg::Relay) => break,
                    Some(_) => {}
                    None => return Err(ConnectError::Closed),
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
                Ok(None) => return Err(ConnectError::Closed),
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
        .map_err(ConnectError::Handshake)?;
    Ok(relayed(ctx, session, peer.name, key, stream))
}
