//! TCP paths: the server's main and assist listeners, TCP hole punching, TLS 1.3 with pinned
//! Ed25519 keys over the punched connection, and the TCP relay fallback.
//!
//! - [`server`]: the TCP side of the rendezvous server ([`server::TcpServerHandle`]);
//! - [`client`]: the client's TCP transport: a supervised control connection to the server
//!   ([`client::TcpTransport`]), which the punch client (`crate::client`) drives;
//! - [`punch`]: one punching session, relay fallback and TLS ([`punch::TcpLink`]);
//! - [`sockets`]: socket2 helpers (SO_REUSEADDR + SO_REUSEPORT on one local port that both
//!   listens and connects).
//!
//! The protocol itself (frames, the assist sequence, relay pairing) is sans-IO in
//! [`punch_proto::tcp`]; see its module doc for the sequence.

pub mod client;
pub mod punch;
pub mod server;
pub mod sockets;
