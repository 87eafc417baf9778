//! STUN attributes: the typed ones a Binding server and a RFC 5780 client need, and a raw
//! fallback for the rest.
//!
//! Every attribute is TLV: 16-bit type, 16-bit value length, the value, then padding to a
//! multiple of 4 whose contents are ignored (RFC 8489 §14). Types 0x0000-0x7FFF are
//! comprehension-required, 0x8000-0xFFFF comprehension-optional (RFC 8489 §14, §18.3).
//! This file owns value decoding and encoding; framing (header, padding, FINGERPRINT) is in
//! `message.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::StunError;

/// Address family codes of the address attributes (RFC 8489 §14.1).
const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// One STUN attribute.
///
/// Addresses are stored as the real transport address: XOR-MAPPED-ADDRESS is un-XORed on
/// decode and XORed again on encode. FINGERPRINT is not an attribute here: see
/// [`Message::fingerprint`](super::Message::fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// MAPPED-ADDRESS (0x0001, RFC 8489 §14.1, RFC 3489 §11.2.1): the reflexive address, in
    /// the clear. What RFC 3489 clients read.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS (0x0020, RFC 8489 §14.2): the reflexive address, XORed with the
    /// magic cookie (and the transaction id for IPv6) so that NATs do not rewrite it.
    XorMappedAddress(SocketAddr),
    /// CHANGE-REQUEST (0x0003, RFC 5780 §7.2, RFC 3489 §11.2.4).
    ChangeRequest(ChangeRequest),
    /// SOURCE-ADDRESS (0x0004, RFC 3489 §11.2.5): the address the classic server sent from.
    SourceAddress(SocketAddr),
    /// CHANGED-ADDRESS (0x0005, RFC 3489 §11.2.3): the classic server's alternate address.
    ChangedAddress(SocketAddr),
    /// ERROR-CODE (0x0009, RFC 8489 §14.8).
    ErrorCode(ErrorCode),
    /// UNKNOWN-ATTRIBUTES (0x000A, RFC 8489 §14.9): the types a 420 response complains about.
    UnknownAttributes(Vec<u16>),
    /// PADDING (0x0026, RFC 5780 §7.6): this many bytes whose contents are ignored (sent as
    /// zeros).
    Padding(u16),
    /// RESPONSE-PORT (0x0027, RFC 5780 §7.5): the port the response should go to.
    ResponsePort(u16),
    /// SOFTWARE (0x8022, RFC 8489 §14.14): a UTF-8 description of the sender's software.
    Software(String),
    /// RESPONSE-ORIGIN (0x802B, RFC 5780 §7.3): the address the response was sent from.
    ResponseOrigin(SocketAddr),
    /// OTHER-ADDRESS (0x802C, RFC 5780 §7.4): the server's alternate address and port.
    OtherAddress(SocketAddr),
    /// Any other attribute, kept byte for byte (without padding). Unknown
    /// comprehension-required types (below 0x8000) land here too, so that a server can
    /// answer 420 (see [`Message::unknown_comprehension_required`](super::Message::unknown_comprehension_required)).
    Raw {
        /// The attribute type.
        typ: u16,
        /// The value, without padding.
        value: Vec<u8>,
    },
}

/// The flags of a CHANGE-REQUEST (RFC 5780 §7.2): which of its addresses the server should
/// answer from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ChangeRequest {
    /// Flag A (0x4): answer from the other IP address.
    pub change_ip: bool,
    /// Flag B (0x2): answer from the other port.
    pub change_port: bool,
}

impl ChangeRequest {
    /// Bit of flag A, "change IP".
    pub const CHANGE_IP: u32 = 0x4;
    /// Bit of flag B, "change port".
    pub const CHANGE_PORT: u32 = 0x2;

    fn to_bits(self) -> u32 {
        (if self.change_ip { Self::CHANGE_IP } else { 0 })
            | (if self.change_port {
                Self::CHANGE_PORT
            } else {
                0
            })
    }

    fn from_bits(bits: u32) -> Self {
        // The other bits are reserved; RFC 5780 §7.2 does not ask receivers to reject them.
        ChangeRequest {
            change_ip: bits & Self::CHANGE_IP != 0,
            change_port: bits & Self::CHANGE_PORT != 0,
        }
    }
}

/// An ERROR-CODE value (RFC 8489 §14.8): a code in 300..=699 and a reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    code: u16,
    reason: String,
}

impl ErrorCode {
    /// 300 Try Alternate (RFC 8489 §14.8).
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400 Bad Request (RFC 8489 §14.8).
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated (RFC 8489 §14.8).
    pub const UNAUTHENTICATED: u16 = 401;
    /// 420 Unknown Attribute (RFC 8489 §14.8); goes with UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 438 Stale Nonce (RFC 8489 §14.8).
    pub const STALE_NONCE: u16 = 438;
    /// 500 Server Error (RFC 8489 §14.8).
    pub const SERVER_ERROR: u16 = 500;

    /// An error code; fails unless `code` is in 300..=699 (the class must be 3 to 6).
    pub fn new(code: u16, reason: impl Into<String>) -> Result<Self, StunError> {
        if !(300..=699).contains(&code) {
            return Err(StunError::InvalidErrorCode(code));
        }
        Ok(ErrorCode {
            code,
            reason: reason.into(),
        })
    }

    /// The numeric code, 300..=699.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reason phrase.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Attribute {
    /// Type of MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// Type of CHANGE-REQUEST.
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// Type of SOURCE-ADDRESS.
    pub const SOURCE_ADDRESS: u16 = 0x0004;
    /// Type of CHANGED-ADDRESS.
    pub const CHANGED_ADDRESS: u16 = 0x0005;
    /// Type of USERNAME (RFC 8489 §14.3), kept raw.
    pub const USERNAME: u16 = 0x0006;
    /// Type of MESSAGE-INTEGRITY (RFC 8489 §14.5), kept raw.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// Type of ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// Type of UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// Type of XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// Type of PADDING.
    pub const PADDING: u16 = 0x0026;
    /// Type of RESPONSE-PORT.
    pub const RESPONSE_PORT: u16 = 0x0027;
    /// Type of SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// Type of FINGERPRINT (RFC 8489 §14.7); handled by the message, never an [`Attribute`].
    pub const FINGERPRINT: u16 = 0x8028;
    /// Type of RESPONSE-ORIGIN.
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    /// Type of OTHER-ADDRESS.
    pub const OTHER_ADDRESS: u16 = 0x802C;

    /// The attribute type as on the wire.
    pub fn typ(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => Self::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => Self::XOR_MAPPED_ADDRESS,
            Attribute::ChangeRequest(_) => Self::CHANGE_REQUEST,
            Attribute::SourceAddress(_) => Self::SOURCE_ADDRESS,
            Attribute::ChangedAddress(_) => Self::CHANGED_ADDRESS,
            Attribute::ErrorCode(_) => Self::ERROR_CODE,
            Attribute::UnknownAttributes(_) => Self::UNKNOWN_ATTRIBUTES,
            Attribute::Padding(_) => Self::PADDING,
            Attribute::ResponsePort(_) => Self::RESPONSE_PORT,
            Attribute::Software(_) => Self::SOFTWARE,
            Attribute::ResponseOrigin(_) => Self::RESPONSE_ORIGIN,
            Attribute::OtherAddress(_) => Self::OTHER_ADDRESS,
            Attribute::Raw { typ, .. } => *typ,
        }
    }

    /// True for types 0x0000-0x7FFF, which a receiver must understand (RFC 8489 §14).
    pub fn is_comprehension_required(typ: u16) -> bool {
        typ < 0x8000
    }

    /// Length of the value on the wire, without padding.
    pub(crate) fn value_len(&self) -> usize {
        fn addr_len(addr: &SocketAddr) -> usize {
            match addr {
                SocketAddr::V4(_) => 8,
                SocketAddr::V6(_) => 20,
            }
        }
        match self {
            Attribute::MappedAddress(a)
            | Attribute::XorMappedAddress(a)
            | Attribute::SourceAddress(a)
            | Attribute::ChangedAddress(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a) => addr_len(a),
            Attribute::ChangeRequest(_) | Attribute::ResponsePort(_) => 4,
            Attribute::ErrorCode(e) => 4 + e.reason.len(),
            Attribute::UnknownAttributes(types) => 2 * types.len(),
            Attribute::Padding(len) => usize::from(*len),
            Attribute::Software(s) => s.len(),
            Attribute::Raw { value, .. } => value.len(),
        }
    }

    /// Appends the value (no header, no padding) to `out`; exactly [`Self::value_len`] bytes.
    ///
    /// `xor_key` is the 16 bytes after the message length field (RFC 8489 §14.2).
    pub(crate) fn write_value(&self, out: &mut Vec<u8>, xor_key: &[u8; 16]) {
        match self {
            Attribute::MappedAddress(a)
            | Attribute::SourceAddress(a)
            | Attribute::ChangedAddress(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a) => write_address(out, *a, &[0; 16]),
            Attribute::XorMappedAddress(a) => write_address(out, *a, xor_key),
            Attribute::ChangeRequest(flags) => {
                out.extend_from_slice(&flags.to_bits().to_be_bytes())
            }
            // RFC 5780 §7.5: the port, then 2 bytes of padding inside the value.
            Attribute::ResponsePort(port) => {
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            // RFC 8489 §14.8: 21 reserved bits, class (3 bits), number (8 bits), reason.
            Attribute::ErrorCode(e) => {
                // `ErrorCode::new` keeps the code in 300..=699, so class fits 3 bits and
                // number is below 100: the `as u8` casts cannot truncate.
                out.extend_from_slice(&[0, 0, (e.code / 100) as u8, (e.code % 100) as u8]);
                out.extend_from_slice(e.reason.as_bytes());
            }
            Attribute::UnknownAttributes(types) => {
                for t in types {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            Attribute::Padding(len) => out.resize(out.len() + usize::from(*len), 0),
            Attribute::Software(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::Raw { value, .. } => out.extend_from_slice(value),
        }
    }

    /// Decodes the value of an attribute of type `typ` (padding already stripped).
    ///
    /// `xor_key` is the 16 bytes after the message length field. FINGERPRINT must have been
    /// handled by the caller; anything not typed here becomes [`Attribute::Raw`].
    pub(crate) fn decode_value(
        typ: u16,
        value: &[u8],
        xor_key: &[u8; 16],
    ) -> Result<Self, StunError> {
        let invalid = |reason| StunError::InvalidAttribute { typ, reason };
        Ok(match typ {
            Self::MAPPED_ADDRESS => Attribute::MappedAddress(read_address(typ, value, &[0; 16])?),
            Self::XOR_MAPPED_ADDRESS => {
                Attribute::XorMappedAddress(read_address(typ, value, xor_key)?)
            }
            Self::SOURCE_ADDRESS => Attribute::SourceAddress(read_address(typ, value, &[0; 16])?),
            Self::CHANGED_ADDRESS => Attribute::ChangedAddress(read_address(typ, value, &[0; 16])?),
            Self::RESPONSE_ORIGIN => Attribute::ResponseOrigin(read_address(typ, value, &[0; 16])?),
            Self::OTHER_ADDRESS => Attribute::OtherAddress(read_address(typ, value, &[0; 16])?),
            Self::CHANGE_REQUEST => {
                let bits: [u8; 4] = value.try_into().map_err(|_| invalid("length is not 4"))?;
                Attribute::ChangeRequest(ChangeRequest::from_bits(u32::from_be_bytes(bits)))
            }
            // RFC 5780 §7.5 puts 2 bytes of padding in the value; accept senders that count
            // only the port and let the usual attribute padding follow.
            Self::RESPONSE_PORT => match value {
                [hi, lo] | [hi, lo, _, _] => {
                    Attribute::ResponsePort(u16::from_be_bytes([*hi, *lo]))
                }
                _ => return Err(invalid("length is not 2 or 4")),
            },
            Self::ERROR_CODE => {
                let [_, _, class, number, reason @ ..] = value else {
                    return Err(invalid("shorter than 4 bytes"));
                };
                let (class, number) = (u16::from(class & 0x07), u16::from(*number));
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(invalid("class not in 3..=6 or number above 99"));
                }
                let reason = std::str::from_utf8(reason)
                    .map_err(|_| invalid("reason phrase is not UTF-8"))?;
                Attribute::ErrorCode(ErrorCode {
                    code: class * 100 + number,
                    reason: reason.to_owned(),
                })
            }
            Self::UNKNOWN_ATTRIBUTES => {
                if value.len() % 2 != 0 {
                    return Err(invalid("odd length"));
                }
                Attribute::UnknownAttributes(
                    value
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
            // The value was sliced out of a message whose length field is a u16, so it fits.
            Self::PADDING => Attribute::Padding(
                u16::try_from(value.len()).map_err(|_| invalid("longer than 65535 bytes"))?,
            ),
            Self::SOFTWARE => Attribute::Software(
                std::str::from_utf8(value)
                    .map_err(|_| invalid("not UTF-8"))?
                    .to_owned(),
            ),
            _ => Attribute::Raw {
                typ,
                value: value.to_vec(),
            },
        })
    }
}

/// Writes an address attribute value (RFC 8489 §14.1), XORing port and address with
/// `key` (all zeros for the plain attributes). For XOR-MAPPED-ADDRESS the key is the magic
/// cookie followed by the transaction id (RFC 8489 §14.2); for a RFC 3489 message it is the
/// 128-bit transaction id occupying the same header bytes.
fn write_address(out: &mut Vec<u8>, addr: SocketAddr, key: &[u8; 16]) {
    let (family, ip): (u8, &[u8]) = match &addr.ip() {
        IpAddr::V4(v4) => (FAMILY_IPV4, &v4.octets()[..]),
        IpAddr::V6(v6) => (FAMILY_IPV6, &v6.octets()[..]),
    };
    let port = addr.port() ^ u16::from_be_bytes([key[0], key[1]]);
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend(ip.iter().zip(key).map(|(b, k)| b ^ k));
}

/// Reads an address attribute value; see [`write_address`].
fn read_address(typ: u16, value: &[u8], key: &[u8; 16]) -> Result<SocketAddr, StunError> {
    let invalid = |reason| StunError::InvalidAttribute { typ, reason };
    // The first byte is reserved: RFC 8489 §14.1 says receivers ignore it.
    let [_, family, p0, p1, ip @ ..] = value else {
        return Err(invalid("shorter than 4 bytes"));
    };
    let port = u16::from_be_bytes([*p0, *p1]) ^ u16::from_be_bytes([key[0], key[1]]);
    let mut octets = [0u8; 16];
    for ((o, b), k) in octets.iter_mut().zip(ip).zip(key) {
        *o = b ^ k;
    }
    let ip = match (*family, ip.len()) {
        (FAMILY_IPV4, 4) => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        (FAMILY_IPV6, 16) => IpAddr::V6(Ipv6Addr::from(octets)),
        (FAMILY_IPV4 | FAMILY_IPV6, _) => return Err(invalid("length does not match family")),
        _ => return Err(invalid("unknown address family")),
    };
    Ok(SocketAddr::new(ip, port))
}
