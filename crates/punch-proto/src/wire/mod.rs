//! punch's own frames: rendezvous (client <-> server) and punching (peer <-> peer).
//!
//! Owns the byte layout of every datagram punch sends that is neither STUN nor QUIC.
//! It does not own what the frames *mean*: the server's registry lives in
//! [`crate::rendezvous`], the punching logic in [`crate::agent`].
//!
//! # Layout
//! ```text
//! byte 0     FRAME_TAG (0x2A): in 16..=63, the range RFC 7983 leaves free of STUN (0-3),
//!            DTLS (20-63 is DTLS only for DTLS users; punch runs none), and QUIC (64-255,
//!            with the QUIC bit always set: the endpoint disables greasing)
//! byte 1     WIRE_VERSION
//! byte 2..   postcard encoding of [`Frame`]
//! ```
//! Every datagram is at most [`MAX_FRAME_LEN`] bytes; decoding checks the tag, the version,
//! the length and every bound (names, address lists, reasons) before a value reaches the caller.
//! Postcard is hand-checked here rather than trusted: a frame that decodes but breaks a bound
//! is rejected with [`WireError::Bounds`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::auth::{Nonce, Signature};
use crate::nat::Classic;

/// First byte of every punch frame (see the module doc for the demultiplexing ranges).
pub const FRAME_TAG: u8 = 0x2A;
/// Version of the frame encoding; bumped on any incompatible change.
pub const WIRE_VERSION: u8 = 2;
/// The previous version: registrations were unsigned. A server answers a version-1
/// registration with a version-1 [`Frame::Error`] that says to upgrade
/// ([`legacy_upgrade_answer`]), so an old client reports why instead of waiting.
pub const LEGACY_WIRE_VERSION: u8 = 1;
/// Largest datagram punch sends or accepts as a frame. 1200 bytes fits every path that
/// carries QUIC (RFC 9000 §14: QUIC requires a 1200-byte MTU), so frames are never fragmented.
pub const MAX_FRAME_LEN: usize = 1200;
/// Longest peer name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// Most private (host) addresses a client may report.
pub const MAX_PRIVATE_ADDRS: usize = 8;
/// Longest human-readable reason carried in an error frame, in bytes.
pub const MAX_REASON_LEN: usize = 200;

/// The liveness request anyone can send with netcat: `echo '<Hi!>' | nc -u -w1 HOST 3478`.
pub const HI_REQUEST: &[u8] = b"<Hi!>";
/// The server's answer to [`HI_REQUEST`].
pub const HI_RESPONSE: &[u8] = b"<HI!>";

/// An Ed25519 public key as 32 raw bytes (the identity of a peer).
pub type KeyBytes = [u8; 32];

/// Everything a peer needs to know to punch toward another peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's registered name.
    pub name: String,
    /// The peer's Ed25519 public key: the only thing that identifies it end to end.
    pub key: KeyBytes,
    /// The public (NAT-mapped) address the server observed for the peer.
    pub public: SocketAddr,
    /// The private (host) addresses the peer reported.
    pub private: Vec<SocketAddr>,
}

/// Why the server refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No peer of that name is registered (or its registration expired).
    UnknownPeer,
    /// The name is held by another key.
    NameTaken,
    /// A client asked to be introduced to itself.
    SelfConnect,
    /// The request must follow a registration from the same address.
    NotRegistered,
    /// The server's tables are full.
    Busy,
    /// The request was malformed or broke a bound.
    BadRequest,
    /// A registration's signature is not its key's (see [`crate::auth`]).
    BadSignature,
}

impl ErrorCode {
    /// Every code, in the order of [`ErrorCode::index`].
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::UnknownPeer,
        ErrorCode::NameTaken,
        ErrorCode::SelfConnect,
        ErrorCode::NotRegistered,
        ErrorCode::Busy,
        ErrorCode::BadRequest,
        ErrorCode::BadSignature,
    ];

    /// This code's place in [`ErrorCode::ALL`] (for tables of counters).
    pub fn index(self) -> usize {
        match self {
            ErrorCode::UnknownPeer => 0,
            ErrorCode::NameTaken => 1,
            ErrorCode::SelfConnect => 2,
            ErrorCode::NotRegistered => 3,
            ErrorCode::Busy => 4,
            ErrorCode::BadRequest => 5,
            ErrorCode::BadSignature => 6,
        }
    }

    /// A stable snake_case name (`"unknown_peer"`), for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::SelfConnect => "self_connect",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::Busy => "busy",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadSignature => "bad_signature",
        }
    }

    /// A short human explanation, used in error events.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::UnknownPeer => "peer unknown: no peer of that name is registered",
            ErrorCode::NameTaken => "name taken: another key holds that name",
            ErrorCode::SelfConnect => "cannot connect to yourself",
            ErrorCode::NotRegistered => "not registered with the server",
            ErrorCode::Busy => "server busy",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::BadSignature => "bad signature: the registration is not signed by its key",
        }
    }
}

/// One punch frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Frame {
    /// Client -> server: register (or refresh) `name` with `key`. Also the keepalive.
    /// Signed by `key` over everything it sets and a nonce the server issued to the
    /// sender's address (see [`crate::auth`]); answered by [`Frame::Registered`],
    /// [`Frame::Challenge`] (no valid nonce) or [`Frame::Error`].
    Register {
        /// Transaction id chosen by the client; echoed in the answer.
        txn: u64,
        /// Name to be reachable under.
        name: String,
        /// The client's identity key.
        key: KeyBytes,
        /// The client's private (host) addresses.
        private: Vec<SocketAddr>,
        /// What discovery found our NAT to be, once known: kept with the registration
        /// and told to the peers we are introduced to.
        nat: Option<Classic>,
        /// The nonce the server last issued to this address.
        nonce: Nonce,
        /// `key`'s signature ([`crate::auth::register_message`]).
        sig: Signature,
    },
    /// Server -> client: registration accepted.
    Registered {
        /// The transaction answered.
        txn: u64,
        /// The public address the server saw the request come from.
        observed: SocketAddr,
        /// Seconds after which the registration expires unless refreshed.
        expires_secs: u32,
        /// The nonce to sign the next refresh with.
        nonce: Nonce,
    },
    /// Client -> server: please introduce me to `target`.
    Connect {
        /// Transaction id; the answer is an [`Frame::Introduce`] or [`Frame::Error`] with it.
        txn: u64,
        /// Name of the peer to reach.
        target: String,
    },
    /// Server -> both peers, at once: punch toward `peer`.
    Introduce {
        /// The requesting side's transaction id, or 0 for the side being introduced.
        txn: u64,
        /// Punching session id (random, chosen by the server); probes carry it.
        session: u64,
        /// True for the side that asked: it opens the QUIC connection.
        initiator: bool,
        /// The other side.
        peer: PeerInfo,
    },
    /// Client -> server: the introduction for `session` arrived and the opening probes are
    /// out (stops retransmission; the server tells the other side with [`Frame::PeerReady`]).
    IntroduceAck {
        /// The session acknowledged.
        session: u64,
    },
    /// Server -> client: a request failed.
    Error {
        /// The transaction that failed.
        txn: u64,
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail.
        reason: String,
    },
    /// Server -> client: the other side of `session` acknowledged its introduction, which
    /// it does after its opening (low-TTL) probes: full probes may start.
    PeerReady {
        /// The punching session.
        session: u64,
    },
    /// Peer -> peer: a punch probe.
    Probe {
        /// The punching session.
        session: u64,
        /// Sequence number, echoed in the ack to measure round-trip time.
        seq: u32,
    },
    /// Peer -> peer: answer to a probe.
    ProbeAck {
        /// The punching session.
        session: u64,
        /// The probe's sequence number.
        seq: u32,
        /// The address the probe arrived from (its sender's public view of itself).
        observed: SocketAddr,
    },
    /// Server -> peer: the relay stopped carrying `session` (a limit was reached, the
    /// session is unknown, or relaying is off on this server).
    RelayClosed {
        /// The session.
        session: u64,
        /// Why, for the user.
        reason: String,
    },
    /// Client -> server over the TCP main connection: punch a TCP path to `target`
    /// (see [`crate::tcp`]). Answered by [`Frame::TcpSession`] or [`Frame::Error`].
    TcpConnect {
        /// Transaction id; echoed in the answer (and in a later [`Frame::Error`]).
        txn: u64,
        /// Name of the peer to reach.
        target: String,
    },
    /// Server -> requester (main): open the assist connection for `session` now.
    TcpSession {
        /// The [`Frame::TcpConnect`] answered.
        txn: u64,
        /// Session id (random, chosen by the server): the capability both sides present on
        /// their assist and relay connections.
        session: u64,
    },
    /// Client -> server, first frame of an assist connection, sent from the punching port.
    TcpAssist {
        /// The session the punching port belongs to.
        session: u64,
        /// The punching port's private (host) addresses.
        private: Vec<SocketAddr>,
    },
    /// Server -> client (assist connection): the public address the assist connection came from.
    TcpAssistAck {
        /// The session.
        session: u64,
        /// The punching port's public mapping as the server saw it.
        observed: SocketAddr,
    },
    /// Server -> client (main): punch toward `peer` from the session's punching port.
    /// To the target first (`initiator: false`), then, once it is ready, to the requester.
    TcpIntroduce {
        /// The session.
        session: u64,
        /// True for the requester: it connects and runs the TLS client.
        initiator: bool,
        /// The other side, with its punching port's public and private addresses.
        peer: PeerInfo,
    },
    /// Target -> server (main): my punching port is mapped and my opening SYN is out.
    TcpReady {
        /// The session.
        session: u64,
    },
    /// Requester -> server (main): punching failed, relay `session`; server -> target (main):
    /// join the relay for `session`.
    TcpRelay {
        /// The session.
        session: u64,
    },
    /// Client -> server, first frame of a relay connection to the TCP main port.
    TcpRelayJoin {
        /// The session to splice into.
        session: u64,
    },
    /// Server -> client (relay connection): both sides joined; from the next byte on, the
    /// connection is spliced to the peer's.
    TcpRelayReady {
        /// The session.
        session: u64,
    },
    /// Server -> client, after an introduction: the other side's NAT type, when known.
    PeerNat {
        /// The punching session.
        session: u64,
        /// The other side's classic type.
        classic: Classic,
    },
    /// Server -> client: the registration `txn` carried no nonce issued to its address
    /// lately; sign it again with `nonce`. Smaller than the request it answers.
    Challenge {
        /// The registration answered.
        txn: u64,
        /// The nonce to sign with.
        nonce: Nonce,
    },
}

/// Errors decoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The datagram does not start with [`FRAME_TAG`].
    #[error("not a punch frame")]
    NotAFrame,
    /// The datagram is a punch frame of a version this code does not speak.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// The datagram is longer than [`MAX_FRAME_LEN`] or shorter than a header.
    #[error("bad frame length {0}")]
    Length(usize),
    /// The body does not decode as a frame, or has trailing bytes.
    #[error("malformed frame body")]
    Malformed,
    /// The frame decoded but breaks a bound (name, address list or reason too long).
    #[error("frame breaks a bound: {0}")]
    Bounds(&'static str),
}

/// True if `buf` starts like a punch frame (cheap demultiplexing check).
pub fn is_frame(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] == FRAME_TAG
}

impl Frame {
    /// Check the bounds every frame must respect; the encoder and the decoder both call it.
    fn check_bounds(&self) -> Result<(), WireError> {
        let check_name = |n: &str| {
            if n.is_empty() || n.len() > MAX_NAME_LEN {
                Err(WireError::Bounds("name length"))
            } else {
                Ok(())
            }
        };
        match self {
            Frame::TcpConnect { target, .. } => check_name(target)?,
            Frame::TcpAssist { private, .. } if private.len() > MAX_PRIVATE_ADDRS => {
                return Err(WireError::Bounds("too many private addresses"));
            }
            Frame::TcpIntroduce { peer, .. } => {
                check_name(&peer.name)?;
                if peer.private.len() > MAX_PRIVATE_ADDRS {
                    return Err(WireError::Bounds("too many private addresses"));
                }
            }
            Frame::Register { name, private, .. } => {
                check_name(name)?;
                if private.len() > MAX_PRIVATE_ADDRS {
                    return Err(WireError::Bounds("too many private addresses"));
                }
            }
            Frame::Connect { target, .. } => check_name(target)?,
            Frame::Introduce { peer, .. } => {
                check_name(&peer.name)?;
                if peer.private.len() > MAX_PRIVATE_ADDRS {
                    return Err(WireError::Bounds("too many private addresses"));
                }
            }
            Frame::Error { reason, .. } | Frame::RelayClosed { reason, .. }
                if reason.len() > MAX_REASON_LEN =>
            {
                return Err(WireError::Bounds("reason length"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Encode into a fresh datagram.
    ///
    /// Fails only when the frame breaks a bound (a caller's bug or an over-long user input).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check_bounds()?;
        let mut out = vec![FRAME_TAG, WIRE_VERSION];
        // Serialising plain data into a Vec cannot fail; map the impossible error anyway.
        let body = postcard::to_allocvec(self).map_err(|_| WireError::Malformed)?;
        out.extend_from_slice(&body);
        if out.len() > MAX_FRAME_LEN {
            return Err(WireError::Length(out.len()));
        }
        Ok(out)
    }

    /// Length of [`Frame::encode`]'s output.
    pub fn encoded_len(&self) -> Result<usize, WireError> {
        self.encode().map(|v| v.len())
    }

    /// Decode an untrusted datagram.
    pub fn decode(buf: &[u8]) -> Result<Frame, WireError> {
        if buf.len() < 3 || buf.len() > MAX_FRAME_LEN {
            return Err(WireError::Length(buf.len()));
        }
        if buf[0] != FRAME_TAG {
            return Err(WireError::NotAFrame);
        }
        if buf[1] != WIRE_VERSION {
            return Err(WireError::Version(buf[1]));
        }
        let (frame, rest): (Frame, &[u8]) =
            postcard::take_from_bytes(&buf[2..]).map_err(|_| WireError::Malformed)?;
        if !rest.is_empty() {
            return Err(WireError::Malformed);
        }
        frame.check_bounds()?;
        Ok(frame)
    }
}

/// What an old (version 1) client is told when it registers: upgrade.
pub const UPGRADE_REASON: &str =
    "this server needs signed registrations (wire version 2): upgrade punch";

/// The answer to a version-1 [`Frame::Register`]: a version-1 [`Frame::Error`]
/// ([`ErrorCode::BadRequest`], [`UPGRADE_REASON`]) for its transaction, which an old client
/// decodes and reports. `None` for anything else (other version-1 frames get silence), and
/// for a request so short the answer would amplify it more than twofold.
///
/// Version 1 and 2 agree on what this needs: `Register` is variant 0 and starts with its
/// `txn`, `Error` is variant 5 with the same fields, and `BadRequest` keeps its index.
pub fn legacy_upgrade_answer(buf: &[u8]) -> Option<Vec<u8>> {
    if buf.len() < 3 || buf.len() > MAX_FRAME_LEN || buf[0] != FRAME_TAG {
        return None;
    }
    if buf[1] != LEGACY_WIRE_VERSION {
        return None;
    }
    let ((variant, txn), _): ((u32, u64), _) = postcard::take_from_bytes(&buf[2..]).ok()?;
    if variant != 0 {
        return None;
    }
    let answer = Frame::Error {
        txn,
        code: ErrorCode::BadRequest,
        reason: UPGRADE_REASON.to_string(),
    };
    let mut out = answer.encode().ok()?;
    out[1] = LEGACY_WIRE_VERSION;
    (out.len() <= 2 * buf.len()).then_some(out)
}

/// First byte of a relayed datagram. Relayed datagrams are not [`Frame`]s: the server
/// forwards them without decoding the payload, so the header is fixed and tiny.
///
/// ```text
/// byte 0      RELAY_TAG (0x2B, in the 16..=63 range of punch's own datagrams)
/// byte 1      side: 0 = the session's requester, 1 = its target
/// bytes 2..10 session id, big-endian
/// bytes 10..  the payload (a QUIC packet, end-to-end encrypted between the peers)
/// ```
/// The side lets the server follow a peer whose NAT gave it a new public port (after a
/// lost mapping) without mistaking it for the other side.
pub const RELAY_TAG: u8 = 0x2B;
/// Length of the relay header.
pub const RELAY_HEADER_LEN: usize = 10;

/// Which end of a session a relayed datagram comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The peer that asked for the introduction.
    Requester,
    /// The peer that was introduced.
    Target,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Requester => Side::Target,
            Side::Target => Side::Requester,
        }
    }
}

/// Write the relay header for `session` from `side` followed by `payload`.
pub fn encode_relay(side: Side, session: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RELAY_HEADER_LEN + payload.len());
    encode_relay_into(&mut out, side, session, payload);
    out
}

/// Append the relay header for `session` from `side` and then `payload` to `out` (to
/// build several relayed datagrams in one buffer, as a GSO send wants them).
pub fn encode_relay_into(out: &mut Vec<u8>, side: Side, session: u64, payload: &[u8]) {
    out.push(RELAY_TAG);
    out.push(match side {
        Side::Requester => 0,
        Side::Target => 1,
    });
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Split a relayed datagram into (side, session, payload); `None` if it is not one.
pub fn decode_relay(buf: &[u8]) -> Option<(Side, u64, &[u8])> {
    if buf.len() < RELAY_HEADER_LEN || buf[0] != RELAY_TAG {
        return None;
    }
    let side = match buf[1] {
        0 => Side::Requester,
        1 => Side::Target,
        _ => return None,
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[2..RELAY_HEADER_LEN]);
    Some((side, u64::from_be_bytes(id), &buf[RELAY_HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_index_their_table_and_have_distinct_names() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code:?}");
        }
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn relay_header_round_trip_and_rejects() {
        let b = encode_relay(Side::Target, 0x0102_0304_0506_0708, b"quic");
        assert_eq!(b.len(), RELAY_HEADER_LEN + 4);
        assert_eq!(
            decode_relay(&b),
            Some((Side::Target, 0x0102_0304_0506_0708, &b"quic"[..]))
        );
        assert_eq!(decode_relay(&b[..RELAY_HEADER_LEN - 1]), None);
        let mut bad = b.clone();
        bad[1] = 7;
        assert_eq!(decode_relay(&bad), None);
        assert!(!is_frame(&b), "relay datagrams are not frames");
    }

    /// Pins the version-1 layout an old client sends and decodes.
    #[test]
    fn old_clients_are_told_to_upgrade() {
        let mut v1 = vec![FRAME_TAG, LEGACY_WIRE_VERSION];
        let private: Vec<SocketAddr> = vec!["10.0.0.2:5000".parse().unwrap()];
        v1.extend(postcard::to_allocvec(&(0u32, 77u64, "alice", [9u8; 32], private)).unwrap());
        assert_eq!(Frame::decode(&v1), Err(WireError::Version(1)));
        let mut answer = legacy_upgrade_answer(&v1).expect("an answer");
        assert_eq!(answer[1], LEGACY_WIRE_VERSION);
        assert!(answer.len() <= 2 * v1.len());
        // A version-1 client decodes this body as Error { txn, BadRequest (index 5), reason }.
        assert_eq!(&answer[2..4], &[5, 77]);
        assert_eq!(answer[4], 5);
        answer[1] = WIRE_VERSION;
        assert_eq!(
            Frame::decode(&answer),
            Ok(Frame::Error {
                txn: 77,
                code: ErrorCode::BadRequest,
                reason: UPGRADE_REASON.into()
            })
        );
        // Other version-1 frames, and other versions, get nothing.
        let mut connect = vec![FRAME_TAG, LEGACY_WIRE_VERSION];
        connect.extend(postcard::to_allocvec(&(2u32, 1u64, "bob")).unwrap());
        assert_eq!(legacy_upgrade_answer(&connect), None);
        v1[1] = 3;
        assert_eq!(legacy_upgrade_answer(&v1), None);
    }

    /// The lab's Python tools (`lab/punchwire.py`) build and read frames by these
    /// variant indices: a change here must change them too.
    #[test]
    fn variant_indices_the_lab_tools_use() {
        let variant = |f: Frame| f.encode().unwrap()[2];
        let nonce = [1; 16];
        assert_eq!(
            variant(Frame::Registered {
                txn: 1,
                observed: "192.0.2.1:1".parse().unwrap(),
                expires_secs: 1,
                nonce
            }),
            1
        );
        assert_eq!(
            variant(Frame::Error {
                txn: 1,
                code: ErrorCode::Busy,
                reason: String::new()
            }),
            5
        );
        assert_eq!(variant(Frame::Challenge { txn: 1, nonce }), 20);
        let code = |c: ErrorCode| {
            Frame::Error {
                txn: 0,
                code: c,
                reason: String::new(),
            }
            .encode()
            .unwrap()[4]
        };
        assert_eq!(code(ErrorCode::NameTaken), 1);
        assert_eq!(code(ErrorCode::BadSignature), 6);
    }

    #[test]
    fn probe_round_trip_and_tag() {
        let f = Frame::Probe { session: 7, seq: 3 };
        let b = f.encode().unwrap();
        assert_eq!(b[0], FRAME_TAG);
        assert!(is_frame(&b));
        assert_eq!(Frame::decode(&b).unwrap(), f);
        assert_eq!(f.encoded_len().unwrap(), b.len());
    }

    #[test]
    fn rejects_trailing_bytes_and_versions() {
        let mut b = Frame::IntroduceAck { session: 1 }.encode().unwrap();
        b.push(0);
        assert_eq!(Frame::decode(&b), Err(WireError::Malformed));
        let mut b = Frame::IntroduceAck { session: 1 }.encode().unwrap();
        b[1] = 9;
        assert_eq!(Frame::decode(&b), Err(WireError::Version(9)));
    }

    #[test]
    fn rejects_long_names_both_ways() {
        let f = Frame::Connect {
            txn: 1,
            target: "x".repeat(MAX_NAME_LEN + 1),
        };
        assert!(matches!(f.encode(), Err(WireError::Bounds(_))));
        // Hand-build the over-long frame the encoder refuses, to prove the decoder checks too.
        let mut b = vec![FRAME_TAG, WIRE_VERSION];
        b.extend(postcard::to_allocvec(&f).unwrap());
        assert!(matches!(Frame::decode(&b), Err(WireError::Bounds(_))));
    }
}
