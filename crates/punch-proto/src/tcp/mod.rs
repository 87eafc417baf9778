//! TCP rendezvous, sans-IO: framing of punch frames over TCP and the server's TCP registry.
//!
//! - [`framing`]: punch frames over a byte stream (u16 big-endian length + the frame bytes,
//!   bounded by [`crate::wire::MAX_FRAME_LEN`]);
//! - [`registry`]: the server's state machine over its TCP "main" connections (registration,
//!   keepalive, introductions), the "assist" sequence that learns each side's public mapping
//!   of its punching port, and the pairing of relay connections.
//!
//! The TCP punching sequence (A asks for B), as the frames in [`crate::wire::Frame`] carry it:
//! ```text
//! A --main--> S  TcpConnect{target B}
//! S --main--> A  TcpSession{session}
//! A --assist from p--> S  TcpAssist{session, private}     S learns A's mapping P of p
//! S --assist--> A  TcpAssistAck{observed P}
//! S --main--> B  TcpIntroduce{initiator: false, peer A at P}
//! B --assist from q--> S  TcpAssist{session, private}     S learns B's mapping Q of q
//! S --assist--> B  TcpAssistAck{observed Q}
//! B: listen on q, opening SYN q -> P (low TTL: opens B's NAT, never reaches A's)
//! B --main--> S  TcpReady{session}
//! S --main--> A  TcpIntroduce{initiator: true, peer B at Q}
//! A and B: connect and accept from p / q until one connection is established;
//!          TLS 1.3 over it (A is the client), pinned keys both ways.
//! on failure: A --main--> S TcpRelay; S --main--> B TcpRelay; both open a new connection
//!          to the main port with TcpRelayJoin; S answers TcpRelayReady and splices them.
//! ```
//! This module owns no sockets, timers or tasks: the IO layer (`punch::tcp`) feeds it.

pub mod framing;
pub mod registry;
