//! punch networking: the tokio side of punch.
//!
//! - [`socket`]: the one UDP socket a client owns, demultiplexed between protocols;
//! - [`server`]: the rendezvous server (STUN, `<Hi!>`, registry, introductions);
//! - [`client`]: registration, punching and authenticated QUIC connections to peers;
//! - [`nat`]: RFC 5780 NAT behaviour discovery over two sockets;
//! - [`identity`] and [`tls`]: Ed25519 identities and pinned-key TLS;
//! - [`telemetry`]: Prometheus metrics of the server and the client, and their endpoint;
//! - [`memcpy`]: the start-up fix for glibc's block copies on AMD Zen 3 and Zen 4.
//!
//! Protocol decisions live in the sans-IO crate `punch_proto`; this crate moves bytes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chat;
pub mod client;
pub mod conversation;
pub mod identity;
pub mod known_peers;
pub mod memcpy;
pub mod names;
pub mod nat;
pub mod paths;
pub mod server;
pub mod socket;
pub mod tcp;
pub mod telemetry;
pub mod tls;

pub use punch_proto;
