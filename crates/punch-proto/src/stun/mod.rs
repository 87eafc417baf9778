//! STUN codec: RFC 8489 messages, RFC 5780 NAT-behaviour-discovery attributes, and
//! enough of RFC 3489 ("classic STUN") to answer old clients.
//!
//! # What this module owns
//! - [`Message`]: the 20-byte header (RFC 8489 §5), class and method, the
//!   [`TransactionId`], and the attribute list; checked [`Message::decode`] of untrusted
//!   bytes and [`Message::encode`] / [`Message::encoded_len`].
//! - [`Attribute`]: the typed attributes we need (RFC 8489 §14, RFC 5780 §7, RFC 3489 §11.2)
//!   with a [`Attribute::Raw`] fallback for everything else.
//! - FINGERPRINT (RFC 8489 §14.7): verified on decode, appended on encode when
//!   [`Message::fingerprint`] is set. The CRC-32 lives in `crc.rs`.
//! - [`looks_like_stun`]: the cheap first-byte demultiplexing test of RFC 7983 §7.
//!
//! # What it does not own
//! No sockets and no clock: retransmission timers, the server's address choice for RFC 5780
//! CHANGE-REQUEST, and the NAT classification live elsewhere (`nat/`, `crates/punch`).
//! MESSAGE-INTEGRITY, USERNAME, REALM, NONCE and the ICE attributes are not interpreted: they
//! decode as [`Attribute::Raw`] and re-encode byte for byte.
//!
//! # Why a hand-written codec
//! The design suggests `stun-types`, but as of 2.0.4 its `MessageHeader::from_bytes` rejects
//! any header whose bytes 4..8 are not the magic cookie (`StunParseError::NotStun`) and its
//! writer always stamps the cookie. A RFC 3489 client sends a 128-bit transaction id in those
//! bytes and must get it back unchanged, so that crate cannot serve classic clients. This
//! codec treats the 16 bytes after the length field as one opaque [`TransactionId`] and only
//! looks at the cookie to decide which dialect the peer speaks.

mod attribute;
mod crc;
mod error;
mod message;
pub mod responder;

pub use attribute::{Attribute, ChangeRequest, ErrorCode};
pub use error::StunError;
pub use message::{Class, Message, Method, TransactionId};
pub use responder::{Reply, ServerAddrs, ServerAddrsError, Side, SocketId, StunResponder};

/// The magic cookie of RFC 5389 and RFC 8489 §5, in network byte order on the wire.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Size of the fixed STUN header (RFC 8489 §5).
pub const HEADER_LEN: usize = 20;

/// Most attributes [`Message::decode`] accepts (FINGERPRINT included) before it gives up.
///
/// A Binding exchange carries fewer than ten; the bound keeps a hostile datagram of 16k
/// four-byte attributes from costing 16k allocations.
pub const MAX_ATTRIBUTES: usize = 64;

/// The SOFTWARE value (RFC 8489 §14.14) our responses carry.
pub const SOFTWARE: &str = "punch";

/// Cheap test whether a datagram on the shared socket is STUN rather than QUIC, relay or
/// rendezvous traffic.
///
/// RFC 7983 §7: the first byte of a STUN message is in 0..=3. On top of that the header must
/// be consistent: at least [`HEADER_LEN`] bytes, a length field that is a multiple of 4 and
/// equals the bytes after the header. With the magic cookie that is enough; without it
/// (RFC 3489) the method must also be one RFC 3489 defined (Binding or Shared Secret).
/// This is a demultiplexing hint, not validation: [`Message::decode`] still checks everything.
pub fn looks_like_stun(buf: &[u8]) -> bool {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return false;
    };
    if header[0] > 3 {
        return false;
    }
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if length % 4 != 0 || HEADER_LEN + length != buf.len() {
        return false;
    }
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if cookie == MAGIC_COOKIE {
        return true;
    }
    let method = message::split_type(u16::from_be_bytes([header[0], header[1]])).1;
    method == Method::BINDING || method == Method::SHARED_SECRET
}
