//! A connection to a peer, whatever carries it: QUIC over UDP (punched or relayed) or TLS
//! over TCP (punched or relayed).
//!
//! Owns what the application holds of one peer. A QUIC connection opened while TCP is
//! available carries a move slot: when UDP finds no direct path and a punched TCP
//! connection to the same peer works, the client hands it over here, and a
//! [`crate::conversation::Conversation`] on the connection continues over TCP.

use std::sync::atomic::{AtomicU64, Ordering};

use punch_proto::client::{Path, Transport};
use tokio::sync::oneshot;

use crate::identity::PublicKey;
use crate::tcp::punch::TcpLink;

/// Ids of TCP connections (QUIC ones use quinn's stable id), above any quinn uses.
static NEXT_TCP_ID: AtomicU64 = AtomicU64::new(1 << 62);

/// What carries a [`PeerConnection`].
#[derive(Debug)]
pub(crate) enum Link {
    /// A QUIC connection, with the slot through which it may move to TCP.
    Quic {
        conn: quinn::Connection,
        moved: Option<oneshot::Receiver<TcpLink>>,
    },
    /// TLS over TCP.
    Tcp { link: Box<TcpLink>, id: u64 },
}

/// An authenticated connection to a named peer.
#[derive(Debug)]
pub struct PeerConnection {
    /// The peer's registered name.
    pub name: String,
    /// The peer's key, proven in the handshake.
    pub key: PublicKey,
    /// We opened it (else the peer did: when both ask for each other at once, one
    /// connection serves both requests).
    pub opened_by_us: bool,
    /// The path it ran on when it was established (changes arrive as
    /// [`super::ClientEvent::Path`]).
    pub path: Option<Path>,
    pub(crate) link: Link,
}

impl PeerConnection {
    pub(crate) fn quic(
        name: String,
        key: PublicKey,
        conn: quinn::Connection,
        path: Option<Path>,
        moved: Option<oneshot::Receiver<TcpLink>>,
    ) -> PeerConnection {
        PeerConnection {
            name,
            key,
            opened_by_us: conn.side().is_client(),
            path,
            link: Link::Quic { conn, moved },
        }
    }

    pub(crate) fn tcp(link: TcpLink, opened_by_us: bool) -> PeerConnection {
        PeerConnection {
            name: link.name.clone(),
            key: link.key,
            opened_by_us,
            path: Some(link.path),
            link: Link::Tcp {
                link: Box::new(link),
                id: NEXT_TCP_ID.fetch_add(1, Ordering::Relaxed),
            },
        }
    }

    /// What carries it (at establishment).
    pub fn transport(&self) -> Transport {
        match self.link {
            Link::Quic { .. } => Transport::Udp,
            Link::Tcp { .. } => Transport::Tcp,
        }
    }

    /// The QUIC connection, for applications that open their own streams.
    pub fn quic_connection(&self) -> Option<&quinn::Connection> {
        match &self.link {
            Link::Quic { conn, .. } => Some(conn),
            Link::Tcp { .. } => None,
        }
    }

    /// The TLS-over-TCP link, for applications that use the byte stream themselves.
    pub fn into_tcp(self) -> Option<TcpLink> {
        match self.link {
            Link::Tcp { link, .. } => Some(*link),
            Link::Quic { .. } => None,
        }
    }

    /// An id telling this connection from another to the same peer.
    pub fn id(&self) -> u64 {
        match &self.link {
            Link::Quic { conn, .. } => conn.stable_id() as u64,
            Link::Tcp { id, .. } => *id,
        }
    }

    /// The current round-trip time, where the transport measures one (QUIC).
    pub fn rtt(&self) -> Option<std::time::Duration> {
        self.quic_connection().map(|c| c.rtt())
    }

    /// Close it as a duplicate of another connection to the same peer (a TCP connection
    /// closes when dropped).
    pub fn close_duplicate(self) {
        if let Link::Quic { conn, .. } = &self.link {
            conn.close(2u32.into(), b"duplicate connection");
        }
    }
}
