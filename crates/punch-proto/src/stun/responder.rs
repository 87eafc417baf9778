//! The server side of NAT behaviour discovery, sans-IO: RFC 5780 §6 for modern clients and
//! RFC 3489 §8.2 / §11.2 for classic ones, answering Binding requests received on up to four
//! local sockets (two addresses × two ports).
//!
//! # What this module owns
//! - [`ServerAddrs`]: the primary address `A1:P1` and, optionally, the alternate IP `A2` and
//!   the alternate port `P2`; [`SocketId`] names each of the (up to) four sockets.
//! - [`StunResponder::respond`]: from the bytes a socket received, the [`Reply`] to send, the
//!   socket to send it from (RFC 5780 §6.1 table 1, CHANGE-REQUEST) and where to send it
//!   (the request's source, or RESPONSE-PORT, RFC 5780 §7.5).
//!
//! # What it does not own
//! Sockets, binding them, rate limiting and logging belong to the IO layer (`crates/punch`).
//! No authentication: MESSAGE-INTEGRITY, USERNAME and the other RFC 8489 §9 attributes are
//! ignored, never verified.
//!
//! # Decisions
//! - **Missing alternate address.** RFC 5780 §6: a server that cannot use the same ports on
//!   two IP addresses "MUST NOT include an OTHER-ADDRESS attribute in any Response and MUST
//!   respond with a 420 (Unknown Attribute)" to CHANGE-REQUEST; §6.1 repeats the 420 for a
//!   server without "an alternate address and port". We follow it: OTHER-ADDRESS (and the
//!   classic CHANGED-ADDRESS) only when both `A2` and `P2` exist, and otherwise 420 with
//!   UNKNOWN-ATTRIBUTES = CHANGE-REQUEST to any change flag, even change-port on a server
//!   that has `P2` but no `A2` (a client that saw no OTHER-ADDRESS must not run the tests).
//!   One deviation: a CHANGE-REQUEST with *no* flag set asks for nothing we lack and gets a
//!   normal answer, because classic clients (`stun-client`) put one with zero flags in every
//!   first test and deserve their mapped address from a single-address server.
//! - **Both mapped addresses.** RFC 5780 §6.1: modern answers carry XOR-MAPPED-ADDRESS *and*
//!   MAPPED-ADDRESS (a client can detect address-rewriting ALGs, §3.6), and RESPONSE-ORIGIN
//!   always (also without an alternate address: it is true and helps detect double NAT,
//!   §7.3). Classic answers carry only what RFC 3489 clients parse: MAPPED-ADDRESS,
//!   SOURCE-ADDRESS, CHANGED-ADDRESS (RFC 3489 §11.2; their parsers reject unknown
//!   comprehension-required types such as XOR-MAPPED-ADDRESS) and SOFTWARE (optional).
//!   RESPONSE-ORIGIN and SOURCE-ADDRESS are left out while the sending socket's IP is
//!   unspecified (a wildcard bind the IO layer could not resolve): `0.0.0.0` would be a lie.
//! - **RESPONSE-PORT** (RFC 5780 §7.5) is supported: the reply goes to the request's source
//!   IP and that port, so it can only reach the host that asked. With PADDING too, or with
//!   port 0, the answer is 400 (RFC 5780 §6.1).
//! - **PADDING** (RFC 5780 §7.6) is mirrored with the request's own length rather than the
//!   MTU the RFC suggests, so a small request cannot buy a large answer (no amplification).
//! - RESPONSE-ADDRESS and the other RFC 3489 attributes we do not implement are unknown
//!   comprehension-required attributes: 420. We never send to an address the request names.
//! - Anything that is not a well-formed Binding request gets no answer (`None`): indications,
//!   responses, other methods, garbage. Error replies go out of the socket the request came
//!   in on.

use std::net::{IpAddr, SocketAddr};

use super::message::Encoder;
use super::{Attribute, ChangeRequest, Class, ErrorCode, Message, Method};

/// Comprehension-required attributes of RFC 8489 §9 (authentication) and §14 that a server
/// without authentication may ignore rather than answer with 420: USERNAME, MESSAGE-INTEGRITY,
/// REALM, NONCE, MESSAGE-INTEGRITY-SHA256, USERHASH.
const IGNORED_AUTH_ATTRIBUTES: [u16; 6] = [0x0006, 0x0008, 0x0014, 0x0015, 0x001C, 0x001E];

/// One of the two choices for each half of a server socket: primary or alternate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The primary IP address `A1` or the primary port `P1`.
    Primary,
    /// The alternate IP address `A2` or the alternate port `P2`.
    Alternate,
}

impl Side {
    /// The other side.
    pub fn flip(self) -> Side {
        match self {
            Side::Primary => Side::Alternate,
            Side::Alternate => Side::Primary,
        }
    }
}

/// Names one of the server's (up to) four sockets: which IP address and which port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    /// `A1` or `A2`.
    pub ip: Side,
    /// `P1` or `P2`.
    pub port: Side,
}

impl SocketId {
    /// `A1:P1`, the address clients are configured with.
    pub const PRIMARY: SocketId = SocketId {
        ip: Side::Primary,
        port: Side::Primary,
    };

    /// All four combinations, primary first.
    pub const ALL: [SocketId; 4] = [
        SocketId::PRIMARY,
        SocketId {
            ip: Side::Primary,
            port: Side::Alternate,
        },
        SocketId {
            ip: Side::Alternate,
            port: Side::Primary,
        },
        SocketId {
            ip: Side::Alternate,
            port: Side::Alternate,
        },
    ];

    /// The socket RFC 5780 §6.1 table 1 answers from when a request arrived on `self`
    /// carrying `change`: change IP flips the address, change port flips the port.
    pub fn changed(self, change: ChangeRequest) -> SocketId {
        SocketId {
            ip: if change.change_ip {
                self.ip.flip()
            } else {
                self.ip
            },
            port: if change.change_port {
                self.port.flip()
            } else {
                self.port
            },
        }
    }
}

/// Why a [`ServerAddrs`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerAddrsError {
    /// The alternate IP is of another family than the primary address.
    #[error("alternate address {alternate} is not of the same IP family as {primary}")]
    FamilyMismatch {
        /// The primary address.
        primary: SocketAddr,
        /// The alternate IP.
        alternate: IpAddr,
    },
    /// The alternate IP equals the primary one (RFC 5780 §6 needs two different addresses).
    #[error("alternate address {0} is the primary address")]
    SameIp(IpAddr),
    /// The alternate port equals the primary one.
    #[error("alternate port {0} is the primary port")]
    SamePort(u16),
    /// A wildcard primary address with an alternate IP: the server could not tell which
    /// address a request arrived on, nor answer from a chosen one.
    #[error("the primary address must be a concrete IP when an alternate address is given")]
    UnspecifiedPrimary,
}

/// The server's local addresses: `A1:P1`, and optionally `A2` and `P2` (RFC 5780 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerAddrs {
    primary: SocketAddr,
    alternate_ip: Option<IpAddr>,
    alternate_port: Option<u16>,
}

impl ServerAddrs {
    /// Checks and assembles the addresses: the alternate IP must be of the primary's family
    /// and differ from it, the alternate port must differ from the primary port.
    pub fn new(
        primary: SocketAddr,
        alternate_ip: Option<IpAddr>,
        alternate_port: Option<u16>,
    ) -> Result<Self, ServerAddrsError> {
        if let Some(alt) = alternate_ip {
            if alt.is_ipv4() != primary.is_ipv4() {
                return Err(ServerAddrsError::FamilyMismatch {
                    primary,
                    alternate: alt,
                });
            }
            if alt == primary.ip() {
                return Err(ServerAddrsError::SameIp(alt));
            }
            if primary.ip().is_unspecified() {
                return Err(ServerAddrsError::UnspecifiedPrimary);
            }
        }
        if alternate_port == Some(primary.port()) {
            return Err(ServerAddrsError::SamePort(primary.port()));
        }
        Ok(ServerAddrs {
            primary,
            alternate_ip,
            alternate_port,
        })
    }

    /// A server with one address and port only: no CHANGE-REQUEST, no OTHER-ADDRESS.
    pub fn single(primary: SocketAddr) -> Self {
        ServerAddrs {
            primary,
            alternate_ip: None,
            alternate_port: None,
        }
    }

    /// `A1:P1`.
    pub fn primary(&self) -> SocketAddr {
        self.primary
    }

    /// The address of socket `id`, or `None` if the server lacks its IP or its port.
    pub fn addr(&self, id: SocketId) -> Option<SocketAddr> {
        let ip = match id.ip {
            Side::Primary => self.primary.ip(),
            Side::Alternate => self.alternate_ip?,
        };
        let port = match id.port {
            Side::Primary => self.primary.port(),
            Side::Alternate => self.alternate_port?,
        };
        Some(SocketAddr::new(ip, port))
    }

    /// The sockets the IO layer must bind, primary first (one, two or four).
    pub fn sockets(&self) -> Vec<(SocketId, SocketAddr)> {
        SocketId::ALL
            .iter()
            .filter_map(|&id| Some((id, self.addr(id)?)))
            .collect()
    }

    /// True when the server has both an alternate IP and an alternate port: the condition
    /// of RFC 5780 §6 for OTHER-ADDRESS and CHANGE-REQUEST, i.e. full behaviour discovery.
    pub fn supports_behavior_discovery(&self) -> bool {
        self.alternate_ip.is_some() && self.alternate_port.is_some()
    }

    /// OTHER-ADDRESS / CHANGED-ADDRESS for a request received on `on`: `Ca:Cp`, the socket
    /// with both halves flipped (RFC 5780 §6.1 table 1, RFC 3489 §11.2.3); `None` without
    /// full behaviour-discovery support.
    pub fn other_address(&self, on: SocketId) -> Option<SocketAddr> {
        if !self.supports_behavior_discovery() {
            return None;
        }
        self.addr(SocketId {
            ip: on.ip.flip(),
            port: on.port.flip(),
        })
    }
}

/// A datagram the responder wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The server socket to send from.
    pub socket: SocketId,
    /// Destination: the request's source, or its IP with the RESPONSE-PORT port.
    pub dest: SocketAddr,
    /// The encoded STUN response.
    pub payload: Vec<u8>,
}

/// Answers Binding requests for RFC 5780 behaviour discovery and RFC 3489 classic clients.
#[derive(Debug, Clone)]
pub struct StunResponder {
    addrs: ServerAddrs,
}

impl StunResponder {
    /// A responder for the given local addresses.
    pub fn new(addrs: ServerAddrs) -> Self {
        StunResponder { addrs }
    }

    /// The addresses this responder answers for.
    pub fn addrs(&self) -> &ServerAddrs {
        &self.addrs
    }

    /// The answer to `request`, received on socket `on` from `from`, or `None` when the
    /// datagram deserves none (see the module doc). Never panics, whatever the bytes.
    pub fn respond(&self, on: SocketId, from: SocketAddr, request: &[u8]) -> Option<Reply> {
        let mut payload = Vec::new();
        let (socket, dest) = self.respond_into(on, from, request, &mut payload)?;
        Some(Reply {
            socket,
            dest,
            payload,
        })
    }

    /// [`StunResponder::respond`] with the answer encoded into `out` (cleared first): the
    /// socket to send it from and its destination, or `None` (then `out` holds nothing to
    /// send). A plain Binding request is answered without allocating once `out` has grown.
    pub fn respond_into(
        &self,
        on: SocketId,
        from: SocketAddr,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<(SocketId, SocketAddr)> {
        out.clear();
        self.addrs.addr(on)?;
        let req = Message::decode(request).ok()?;
        if req.class != Class::Request || req.method != Method::BINDING {
            return None;
        }
        let mut error = |code: u16, reason: &str, unknown: Option<Vec<u16>>| {
            // Cannot fail: every code passed below is in 300..=699.
            let code = ErrorCode::new(code, reason).ok()?;
            let mut msg = Message::error_response(&req, code);
            if let Some(types) = unknown {
                msg.attributes.push(Attribute::UnknownAttributes(types));
            }
            if msg.encode_into(out).is_err() {
                out.clear();
                return None;
            }
            Some((on, from))
        };

        // RFC 8489 §6.3.1: unknown comprehension-required attributes get 420.
        let unknown: Vec<u16> = req
            .unknown_comprehension_required()
            .into_iter()
            .filter(|t| !IGNORED_AUTH_ATTRIBUTES.contains(t))
            .collect();
        if !unknown.is_empty() {
            return error(
                ErrorCode::UNKNOWN_ATTRIBUTE,
                "Unknown Attribute",
                Some(unknown),
            );
        }

        // RFC 5780 §6.1 table 1; 420 when a flag needs an address or port we lack (§6).
        let change = req
            .attributes
            .iter()
            .find_map(|a| match a {
                Attribute::ChangeRequest(c) => Some(*c),
                _ => None,
            })
            .unwrap_or_default();
        let out_socket = on.changed(change);
        let asks_change = change.change_ip || change.change_port;
        let refused = asks_change && !self.addrs.supports_behavior_discovery();
        let origin = match self.addrs.addr(out_socket) {
            Some(origin) if !refused => origin,
            _ => {
                return error(
                    ErrorCode::UNKNOWN_ATTRIBUTE,
                    "Unknown Attribute: no alternate address for CHANGE-REQUEST",
                    Some(vec![Attribute::CHANGE_REQUEST]),
                )
            }
        };

        let response_port = req.attributes.iter().find_map(|a| match a {
            Attribute::ResponsePort(p) => Some(*p),
            _ => None,
        });
        let padding = req.attributes.iter().find_map(|a| match a {
            Attribute::Padding(len) => Some(*len),
            _ => None,
        });
        let dest = match response_port {
            // RFC 5780 §6.1, §7.5: never RESPONSE-PORT together with PADDING.
            Some(_) if padding.is_some() => {
                return error(
                    ErrorCode::BAD_REQUEST,
                    "Bad Request: RESPONSE-PORT with PADDING",
                    None,
                )
            }
            Some(0) => return error(ErrorCode::BAD_REQUEST, "Bad Request: port 0", None),
            Some(port) => SocketAddr::new(from.ip(), port),
            None => from,
        };

        let mapped = canonical(from);
        let known_origin = !origin.ip().is_unspecified();
        let mut enc = Encoder::new(
            out,
            Class::SuccessResponse,
            Method::BINDING,
            &req.transaction_id,
        );
        let classic = req.transaction_id.is_classic();
        if classic {
            // RFC 3489 §8.2, §11.2.
            enc.attribute(&Attribute::MappedAddress(mapped)).ok()?;
            if known_origin {
                enc.attribute(&Attribute::SourceAddress(origin)).ok()?;
            }
            if let Some(other) = self.addrs.other_address(on) {
                enc.attribute(&Attribute::ChangedAddress(other)).ok()?;
            }
        } else {
            // RFC 5780 §6.1.
            enc.attribute(&Attribute::XorMappedAddress(mapped)).ok()?;
            enc.attribute(&Attribute::MappedAddress(mapped)).ok()?;
            if known_origin {
                enc.attribute(&Attribute::ResponseOrigin(origin)).ok()?;
            }
            if let Some(other) = self.addrs.other_address(on) {
                enc.attribute(&Attribute::OtherAddress(other)).ok()?;
            }
        }
        if let Some(len) = padding {
            enc.attribute(&Attribute::Padding(len)).ok()?;
        }
        // RFC 3489 parsers (the classic `stun` client) require every attribute length to
        // be a multiple of 4 and reject the 5-byte "punch": classic answers go without.
        if !classic {
            enc.raw(Attribute::SOFTWARE, super::SOFTWARE.as_bytes());
        }
        // Fails only if the mirrored PADDING no longer fits the length field: no answer.
        if enc.finish(req.fingerprint).is_err() {
            out.clear();
            return None;
        }
        Some((out_socket, dest))
    }
}

/// An IPv4-mapped IPv6 address (from a dual-stack socket) as plain IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::TransactionId;

    const A1: &str = "203.0.113.1:3478";
    const A2: &str = "203.0.113.2";
    const P2: u16 = 3479;
    const CLIENT: &str = "198.51.100.7:40000";

    fn full() -> StunResponder {
        StunResponder::new(
            ServerAddrs::new(A1.parse().unwrap(), Some(A2.parse().unwrap()), Some(P2)).unwrap(),
        )
    }

    fn single() -> StunResponder {
        StunResponder::new(ServerAddrs::single(A1.parse().unwrap()))
    }

    fn client() -> SocketAddr {
        CLIENT.parse().unwrap()
    }

    fn request(change: Option<ChangeRequest>, classic: bool) -> Message {
        let id = if classic {
            TransactionId::from_bytes([7; 16])
        } else {
            TransactionId::new([9; 12])
        };
        let mut req = Message::binding_request(id);
        if let Some(c) = change {
            req.attributes.push(Attribute::ChangeRequest(c));
        }
        req
    }

    fn flags(change_ip: bool, change_port: bool) -> Option<ChangeRequest> {
        Some(ChangeRequest {
            change_ip,
            change_port,
        })
    }

    fn answer(r: &StunResponder, on: SocketId, req: &Message) -> (Reply, Message) {
        let reply = r
            .respond(on, client(), &req.encode().unwrap())
            .expect("an answer");
        let msg = Message::decode(&reply.payload).unwrap();
        assert_eq!(msg.transaction_id, req.transaction_id);
        (reply, msg)
    }

    fn attr<T>(msg: &Message, f: impl Fn(&Attribute) -> Option<T>) -> Option<T> {
        msg.attributes.iter().find_map(f)
    }

    fn other(msg: &Message) -> Option<SocketAddr> {
        attr(msg, |a| match a {
            Attribute::OtherAddress(x) => Some(*x),
            _ => None,
        })
    }

    fn origin(msg: &Message) -> Option<SocketAddr> {
        attr(msg, |a| match a {
            Attribute::ResponseOrigin(x) => Some(*x),
            _ => None,
        })
    }

    fn error_code(msg: &Message) -> Option<u16> {
        attr(msg, |a| match a {
            Attribute::ErrorCode(e) => Some(e.code()),
            _ => None,
        })
    }

    #[test]
    fn change_request_selects_the_socket() {
        let r = full();
        let alt_alt: SocketAddr = "203.0.113.2:3479".parse().unwrap();
        for (change, ip, port) in [
            (None, Side::Primary, Side::Primary),
            (flags(false, false), Side::Primary, Side::Primary),
            (flags(true, false), Side::Alternate, Side::Primary),
            (flags(false, true), Side::Primary, Side::Alternate),
            (flags(true, true), Side::Alternate, Side::Alternate),
        ] {
            let (reply, msg) = answer(&r, SocketId::PRIMARY, &request(change, false));
            assert_eq!(reply.socket, SocketId { ip, port }, "{change:?}");
            assert_eq!(reply.dest, client());
            assert_eq!(msg.class, Class::SuccessResponse);
            assert_eq!(msg.mapped_address(), Some(client()));
            assert_eq!(origin(&msg), r.addrs().addr(reply.socket));
            // OTHER-ADDRESS is Ca:Cp whatever the flags (table 1).
            assert_eq!(other(&msg), Some(alt_alt));
        }
    }

    #[test]
    fn modern_answer_has_both_mapped_addresses() {
        let (_, msg) = answer(&full(), SocketId::PRIMARY, &request(None, false));
        let typs: Vec<u16> = msg.attributes.iter().map(Attribute::typ).collect();
        assert_eq!(
            typs,
            [
                Attribute::XOR_MAPPED_ADDRESS,
                Attribute::MAPPED_ADDRESS,
                Attribute::RESPONSE_ORIGIN,
                Attribute::OTHER_ADDRESS,
                Attribute::SOFTWARE
            ]
        );
        assert!(!msg.fingerprint);
    }

    #[test]
    fn request_on_alternate_socket_flips_relative_to_it() {
        let r = full();
        let on = SocketId {
            ip: Side::Alternate,
            port: Side::Primary,
        };
        let (reply, msg) = answer(&r, on, &request(flags(true, false), false));
        assert_eq!(reply.socket, SocketId::PRIMARY);
        assert_eq!(other(&msg), Some("203.0.113.1:3479".parse().unwrap()));
    }

    #[test]
    fn fingerprint_is_echoed() {
        let mut req = request(None, false);
        req.fingerprint = true;
        let (_, msg) = answer(&full(), SocketId::PRIMARY, &req);
        assert!(msg.fingerprint);
    }

    #[test]
    fn classic_request_gets_rfc3489_attributes() {
        let r = full();
        let (reply, msg) = answer(&r, SocketId::PRIMARY, &request(flags(false, true), true));
        assert_eq!(
            reply.socket,
            SocketId {
                ip: Side::Primary,
                port: Side::Alternate
            }
        );
        assert_eq!(
            msg.attributes,
            [
                Attribute::MappedAddress(client()),
                Attribute::SourceAddress("203.0.113.1:3479".parse().unwrap()),
                Attribute::ChangedAddress("203.0.113.2:3479".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn single_address_server_answers_plain_requests_without_other_address() {
        let r = single();
        for classic in [false, true] {
            // Zero flags, as stun-client sends in test I, is not refused.
            for change in [None, flags(false, false)] {
                let (reply, msg) = answer(&r, SocketId::PRIMARY, &request(change, classic));
                assert_eq!(reply.socket, SocketId::PRIMARY);
                assert_eq!(msg.class, Class::SuccessResponse);
                assert_eq!(other(&msg), None);
                assert!(msg.attribute(Attribute::CHANGED_ADDRESS).is_none());
            }
        }
    }

    #[test]
    fn single_address_server_refuses_change_with_420() {
        let r = single();
        for change in [flags(true, false), flags(false, true), flags(true, true)] {
            let (reply, msg) = answer(&r, SocketId::PRIMARY, &request(change, false));
            assert_eq!(reply.socket, SocketId::PRIMARY);
            assert_eq!(msg.class, Class::ErrorResponse);
            assert_eq!(error_code(&msg), Some(420));
            assert_eq!(
                msg.attribute(Attribute::UNKNOWN_ATTRIBUTES),
                Some(&Attribute::UnknownAttributes(vec![
                    Attribute::CHANGE_REQUEST
                ]))
            );
        }
    }

    #[test]
    fn port_only_server_refuses_every_change_flag() {
        // RFC 5780 §6: without the same ports on two IPs, 420 to CHANGE-REQUEST and no
        // OTHER-ADDRESS, even for change-port that this server could physically honour.
        let r = StunResponder::new(ServerAddrs::new(A1.parse().unwrap(), None, Some(P2)).unwrap());
        assert_eq!(r.addrs().sockets().len(), 2);
        for change in [flags(false, true), flags(true, false)] {
            let (reply, msg) = answer(&r, SocketId::PRIMARY, &request(change, false));
            assert_eq!(reply.socket, SocketId::PRIMARY);
            assert_eq!(error_code(&msg), Some(420));
        }
        let (_, msg) = answer(&r, SocketId::PRIMARY, &request(None, false));
        assert_eq!(other(&msg), None, "no OTHER-ADDRESS without a second IP");
    }

    #[test]
    fn unknown_comprehension_required_attribute_gets_420() {
        let mut req = request(None, false);
        req.attributes.push(Attribute::Raw {
            typ: 0x0002, // RESPONSE-ADDRESS (RFC 3489): we never reflect elsewhere
            value: vec![0, 1, 0, 80, 192, 0, 2, 1],
        });
        req.attributes.push(Attribute::Raw {
            typ: 0x7FFF,
            value: vec![],
        });
        req.attributes.push(Attribute::Raw {
            typ: 0xC000, // comprehension-optional: ignored
            value: vec![],
        });
        let (reply, msg) = answer(&full(), SocketId::PRIMARY, &req);
        assert_eq!(reply.socket, SocketId::PRIMARY);
        assert_eq!(error_code(&msg), Some(420));
        assert_eq!(
            msg.attribute(Attribute::UNKNOWN_ATTRIBUTES),
            Some(&Attribute::UnknownAttributes(vec![0x0002, 0x7FFF]))
        );
    }

    #[test]
    fn authentication_attributes_are_ignored() {
        let mut req = request(None, false);
        req.attributes.push(Attribute::Raw {
            typ: 0x0006,
            value: b"user".to_vec(),
        });
        req.attributes.push(Attribute::Raw {
            typ: 0x0008,
            value: vec![0; 20],
        });
        let (_, msg) = answer(&full(), SocketId::PRIMARY, &req);
        assert_eq!(msg.class, Class::SuccessResponse);
    }

    #[test]
    fn response_port_redirects_to_the_same_ip() {
        let mut req = request(None, false);
        req.attributes.push(Attribute::ResponsePort(5555));
        let (reply, msg) = answer(&full(), SocketId::PRIMARY, &req);
        assert_eq!(reply.dest, "198.51.100.7:5555".parse().unwrap());
        assert_eq!(msg.mapped_address(), Some(client()));
    }

    #[test]
    fn response_port_with_padding_or_zero_is_bad_request() {
        let mut req = request(None, false);
        req.attributes.push(Attribute::ResponsePort(5555));
        req.attributes.push(Attribute::Padding(16));
        let (reply, msg) = answer(&full(), SocketId::PRIMARY, &req);
        assert_eq!(reply.dest, client());
        assert_eq!(error_code(&msg), Some(400));

        let mut req = request(None, false);
        req.attributes.push(Attribute::ResponsePort(0));
        let (_, msg) = answer(&full(), SocketId::PRIMARY, &req);
        assert_eq!(error_code(&msg), Some(400));
    }

    #[test]
    fn padding_is_mirrored_not_amplified() {
        let mut req = request(None, false);
        req.attributes.push(Attribute::Padding(100));
        let bytes = req.encode().unwrap();
        let reply = full().respond(SocketId::PRIMARY, client(), &bytes).unwrap();
        let msg = Message::decode(&reply.payload).unwrap();
        assert_eq!(
            msg.attribute(Attribute::PADDING),
            Some(&Attribute::Padding(100))
        );
        assert!(reply.payload.len() < bytes.len() + 100);
    }

    #[test]
    fn non_requests_and_garbage_get_nothing() {
        let r = full();
        let from = client();
        let resp = Message::binding_success(&request(None, false), from);
        assert!(r
            .respond(SocketId::PRIMARY, from, &resp.encode().unwrap())
            .is_none());
        let mut ind = request(None, false);
        ind.class = Class::Indication;
        assert!(r
            .respond(SocketId::PRIMARY, from, &ind.encode().unwrap())
            .is_none());
        let mut other_method = request(None, false);
        other_method.method = Method::new(0x003).unwrap();
        assert!(r
            .respond(SocketId::PRIMARY, from, &other_method.encode().unwrap())
            .is_none());
        assert!(r.respond(SocketId::PRIMARY, from, b"hello").is_none());
        assert!(r.respond(SocketId::PRIMARY, from, &[]).is_none());
    }

    #[test]
    fn socket_the_server_lacks_gets_nothing() {
        let bytes = request(None, false).encode().unwrap();
        let alt = SocketId {
            ip: Side::Alternate,
            port: Side::Alternate,
        };
        assert!(single().respond(alt, client(), &bytes).is_none());
    }

    #[test]
    fn mapped_v4_in_v6_is_reported_as_v4() {
        let r = StunResponder::new(ServerAddrs::single("[::]:3478".parse().unwrap()));
        let from: SocketAddr = "[::ffff:198.51.100.7]:40000".parse().unwrap();
        let bytes = request(None, false).encode().unwrap();
        let reply = r.respond(SocketId::PRIMARY, from, &bytes).unwrap();
        let msg = Message::decode(&reply.payload).unwrap();
        assert_eq!(msg.mapped_address(), Some(client()));
        assert_eq!(reply.dest, from);
        assert_eq!(origin(&msg), None, "a wildcard origin is not reported");
    }

    #[test]
    fn server_addrs_validation() {
        let p: SocketAddr = A1.parse().unwrap();
        assert_eq!(
            ServerAddrs::new(p, Some(p.ip()), None),
            Err(ServerAddrsError::SameIp(p.ip()))
        );
        assert_eq!(
            ServerAddrs::new(p, None, Some(p.port())),
            Err(ServerAddrsError::SamePort(p.port()))
        );
        assert!(matches!(
            ServerAddrs::new(p, Some("::1".parse().unwrap()), None),
            Err(ServerAddrsError::FamilyMismatch { .. })
        ));
        assert_eq!(
            ServerAddrs::new(
                "0.0.0.0:3478".parse().unwrap(),
                Some(A2.parse().unwrap()),
                None
            ),
            Err(ServerAddrsError::UnspecifiedPrimary)
        );
        let addrs = ServerAddrs::new(p, Some(A2.parse().unwrap()), Some(P2)).unwrap();
        assert_eq!(addrs.sockets().len(), 4);
        assert_eq!(addrs.sockets()[0], (SocketId::PRIMARY, p));
        assert_eq!(ServerAddrs::single(p).sockets().len(), 1);
    }
}
