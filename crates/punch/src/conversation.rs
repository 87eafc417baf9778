//! A conversation with a peer: a stream of text messages each way over a
//! [`PeerConnection`], in the framing of [`crate::chat`], that survives the connection
//! moving from QUIC to TCP.
//!
//! Owns two tasks per conversation (a writer and a reader), stopped when the
//! [`Conversation`] drops. Over QUIC each side writes one unidirectional stream; when the
//! client hands the connection a punched TCP connection to the same peer (UDP found no
//! direct path), the writer finishes its QUIC stream, waits until the peer has read every
//! byte of it, and goes on over TCP; the reader reads the peer's QUIC stream to its end
//! and goes on over TCP. So every message arrives once and in order across the move; the
//! QUIC connection is closed once both streams are done. Over TCP an idle writer sends a
//! keepalive (an empty message) so relays and NATs keep the connection.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::chat::{read_message, send_message};
use crate::client::conn::Link;
use crate::client::{AbortOnDrop, PeerConnection};
use crate::tcp::punch::{RelayEnd, TcpLink};

/// Messages queued for sending before [`Conversation::sender`]'s `send` waits.
pub const SEND_QUEUE: usize = 256;
/// How long a reader whose peer ended its QUIC stream waits for the TCP connection the
/// peer moved to (it arrives within a round trip or two of the stream's end).
const MOVE_WAIT: Duration = Duration::from_secs(10);
/// How long a conversation on the TCP relay waits, once its stream ended, for the
/// server's word on why (it comes on the control connection).
const RELAY_REASON_WAIT: Duration = Duration::from_millis(500);
/// An idle TCP conversation sends a keepalive this often: well inside the relay's
/// default idle timeout (60 s) and the shortest NAT timeouts for established TCP.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(20);
/// Events queued for the application.
const EVENT_QUEUE: usize = 1024;

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// What a conversation reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationEvent {
    /// A message from the peer.
    Message(String),
    /// Sending failed (the conversation goes on receiving until it ends).
    SendFailed(String),
    /// The peer's side ended, with the reason.
    Ended(String),
}

/// A running conversation. Dropping it stops its tasks at once; to deliver what was sent
/// first, end sending ([`Conversation::close_sending`]) and wait for
/// [`Conversation::flushed`].
pub struct Conversation {
    /// The QUIC connection, to close as a duplicate.
    quic: Option<quinn::Connection>,
    tx: mpsc::Sender<String>,
    events: mpsc::Receiver<ConversationEvent>,
    flushed: watch::Receiver<bool>,
    _writer: AbortOnDrop,
    _reader: AbortOnDrop,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").finish_non_exhaustive()
    }
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

impl Conversation {
    /// Start talking over `pc`; `backlog` is sent first (lines typed before the peer
    /// connected).
    pub fn start(pc: PeerConnection, backlog: Vec<String>) -> Conversation {
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let (ev_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (flushed_tx, flushed) = watch::channel(false);
        let quic = pc.quic_connection().cloned();
        let (writer, reader) = match pc.link {
            Link::Quic { conn, moved } => {
                let handoff = Arc::new(Handoff {
                    steps: AtomicU8::new(0),
                    conn: conn.clone(),
                });
                let (read_tx, read_rx) = oneshot::channel();
                let writer = tokio::spawn(quic_writer(
                    QuicWriter {
                        conn: conn.clone(),
                        moved,
                        read_half: read_tx,
                        handoff: handoff.clone(),
                        events: ev_tx.clone(),
                        flushed: flushed_tx,
                    },
                    rx,
                    backlog,
                ));
                let reader = tokio::spawn(quic_reader(conn, read_rx, handoff, ev_tx));
                (writer, reader)
            }
            Link::Tcp { link, .. } => {
                let TcpLink {
                    stream, relay_end, ..
                } = *link;
                let (r, w) = tokio::io::split(stream);
                let events = ev_tx.clone();
                let writer = tokio::spawn(async move {
                    tcp_write(Box::new(w), rx, backlog, &events).await;
                    let _ = flushed_tx.send(true);
                });
                let reader = tokio::spawn(async move {
                    let reason = tcp_read(Box::new(r), relay_end, &ev_tx).await;
                    let _ = ev_tx.send(ConversationEvent::Ended(reason)).await;
                });
                (writer, reader)
            }
        };
        Conversation {
            quic,
            tx,
            events,
            flushed,
            _writer: AbortOnDrop(writer),
            _reader: AbortOnDrop(reader),
        }
    }

    /// Where to send messages (cheap to clone; an empty message is a keepalive and not
    /// delivered). The conversation's sending side ends once every sender is dropped.
    pub fn sender(&self) -> mpsc::Sender<String> {
        self.tx.clone()
    }

    /// The next event; `None` once the conversation is over.
    pub async fn next(&mut self) -> Option<ConversationEvent> {
        self.events.recv().await
    }

    /// Becomes true once everything sent reached the peer after the last sender dropped
    /// (this conversation's own one included: see [`Conversation::close_sending`]).
    pub fn flushed(&self) -> watch::Receiver<bool> {
        self.flushed.clone()
    }

    /// End it as a duplicate of another conversation with the same peer (its QUIC
    /// connection is closed; a TCP one closes as the conversation drops).
    pub fn close_duplicate(self) {
        if let Some(c) = &self.quic {
            c.close(2u32.into(), b"duplicate connection");
        }
    }

    /// Drop this conversation's own sender: sending ends once the clones handed out by
    /// [`Conversation::sender`] are dropped too.
    pub fn close_sending(&mut self) {
        let (closed, _) = mpsc::channel(1);
        self.tx = closed;
    }
}

/// What the QUIC writer needs besides its messages.
struct QuicWriter {
    conn: quinn::Connection,
    moved: Option<oneshot::Receiver<TcpLink>>,
    /// Where the TCP read half goes after a move.
    read_half: oneshot::Sender<(BoxRead, Option<RelayEnd>)>,
    handoff: Arc<Handoff>,
    events: mpsc::Sender<ConversationEvent>,
    flushed: watch::Sender<bool>,
}

/// What the QUIC writer does next.
enum Next {
    Line(Option<String>),
    Move(Box<TcpLink>),
    NoMove,
}

async fn send_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    line: &str,
    events: &mpsc::Sender<ConversationEvent>,
) -> bool {
    match send_message(w, line).await {
        Ok(()) => true,
        Err(e) => {
            let _ = events
                .send(ConversationEvent::SendFailed(e.to_string()))
                .await;
            false
        }
    }
}

/// The QUIC side of the writer: the backlog, then every message; on a move to TCP,
/// finish the stream, wait until the peer has all of it, and go on over TCP.
async fn quic_writer(mut q: QuicWriter, mut rx: mpsc::Receiver<String>, backlog: Vec<String>) {
    let mut stream = match q.conn.open_uni().await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot open stream: {e}");
            let _ = q.events.send(ConversationEvent::SendFailed(why)).await;
            let _ = q.flushed.send(true);
            return;
        }
    };
    let mut ok = true;
    for line in backlog {
        if ok {
            ok = send_line(&mut stream, &line, &q.events).await;
        }
    }
    while ok {
        let next = tokio::select! {
            biased;
            m = async { q.moved.as_mut().expect("guarded by the condition").await }, if q.moved.is_some() => match m {
                Ok(link) => Next::Move(Box::new(link)),
                Err(_) => Next::NoMove,
            },
            line = rx.recv() => Next::Line(line),
        };
        match next {
            Next::NoMove => q.moved = None,
            Next::Line(Some(line)) => ok = send_line(&mut stream, &line, &q.events).await,
            Next::Line(None) => {
                // Our side is done: finish the stream and wait until the peer has every byte.
                let _ = stream.finish();
                let _ = stream.stopped().await;
                q.conn.close(0u32.into(), b"bye");
                break;
            }
            Next::Move(link) => {
                // The reader gets its half at once: it may find the peer's QUIC stream
                // ended, and the QUIC connection closed, before our stream is acknowledged.
                let (r, w) = tokio::io::split(link.stream);
                let _ = q.read_half.send((Box::new(r), link.relay_end));
                // Everything written so far reaches the peer before anything sent over TCP:
                // it reads this stream to its end first.
                let _ = stream.finish();
                let _ = stream.stopped().await;
                q.handoff.step();
                tcp_write(Box::new(w), rx, Vec::new(), &q.events).await;
                break;
            }
        }
    }
    let _ = q.flushed.send(true);
}

/// The QUIC side of the reader: every message until the peer ends its stream; then,
/// after a move to TCP, the rest over TCP.
async fn quic_reader(
    conn: quinn::Connection,
    read_half: oneshot::Receiver<(BoxRead, Option<RelayEnd>)>,
    handoff: Arc<Handoff>,
    events: mpsc::Sender<ConversationEvent>,
) {
    let reason = async {
        let mut stream = match conn.accept_uni().await {
            Ok(s) => s,
            Err(e) => return e.to_string(),
        };
        if let Err(reason) = read_loop(&mut stream, &events).await {
            return reason;
        }
        // The peer ended its stream: it is leaving (and closes the connection), or it
        // moved to TCP, whose halves reach us before the peer could have ended the stream.
        let next = tokio::select! {
            biased;
            m = read_half => m.ok(),
            _ = conn.closed() => None,
            // Neither: the peer's close was lost (it crashed after ending its stream).
            _ = tokio::time::sleep(MOVE_WAIT) => None,
        };
        match next {
            Some((r, relay_end)) => {
                handoff.step();
                drop(conn);
                tcp_read(r, relay_end, &events).await
            }
            None => "peer finished".to_string(),
        }
    }
    .await;
    let _ = events.send(ConversationEvent::Ended(reason)).await;
}

/// Send every message over a TCP stream (keepalives when idle) until the senders are
/// dropped, then close our direction (TLS close_notify, then FIN).
async fn tcp_write(
    mut w: BoxWrite,
    mut rx: mpsc::Receiver<String>,
    backlog: Vec<String>,
    events: &mpsc::Sender<ConversationEvent>,
) {
    for line in backlog {
        if !send_line(&mut w, &line, events).await {
            return;
        }
    }
    loop {
        let line = tokio::select! {
            line = rx.recv() => match line {
                Some(line) => line,
                None => break,
            },
            // Idle: a keepalive (an empty message) keeps the relay and NATs from timing out.
            _ = tokio::time::sleep(TCP_KEEPALIVE) => String::new(),
        };
        if !send_line(&mut w, &line, events).await {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Read a TCP stream to its end; the reason the peer's side ended.
async fn tcp_read(
    mut r: BoxRead,
    relay_end: Option<RelayEnd>,
    events: &mpsc::Sender<ConversationEvent>,
) -> String {
    let reason = match read_loop(&mut r, events).await {
        Ok(()) => "peer finished".to_string(),
        Err(reason) => reason,
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

/// Pass on every message until the peer ends its stream (`Ok`), or why it failed.
async fn read_loop<R: AsyncRead + Unpin>(
    r: &mut R,
    events: &mpsc::Sender<ConversationEvent>,
) -> Result<(), String> {
    loop {
        match read_message(r).await {
            Ok(Some(text)) => {
                if events.send(ConversationEvent::Message(text)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
