//! The STUN message: header (RFC 8489 §5), attribute framing (RFC 8489 §14), FINGERPRINT
//! (RFC 8489 §14.7), and the Binding helpers a server and a client need (RFC 8489 §6,
//! RFC 3489 §9-§11 for classic clients). Attribute values are in `attribute.rs`.

use std::net::SocketAddr;

use rand::Rng;

use super::attribute::{Attribute, ErrorCode};
use super::crc::fingerprint as fingerprint_crc;
use super::{StunError, HEADER_LEN, MAGIC_COOKIE, MAX_ATTRIBUTES, SOFTWARE};

/// Size of the FINGERPRINT attribute with its header (RFC 8489 §14.7).
const FINGERPRINT_LEN: usize = 8;

/// Largest value of the 16-bit message length field that is a multiple of 4.
const MAX_BODY_LEN: usize = 0xFFFC;

/// The class of a message, the C1 C0 bits of the message type (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 0b00: a request, answered by a response with the same transaction id.
    Request,
    /// 0b01: an indication, never answered.
    Indication,
    /// 0b10: a success response.
    SuccessResponse,
    /// 0b11: an error response, carrying ERROR-CODE.
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// A STUN method: 12 bits of the message type (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(u16);

impl Method {
    /// Binding (0x001, RFC 8489 §18.2), the only method a NAT-discovery server needs.
    pub const BINDING: Method = Method(0x001);
    /// Shared Secret (0x002, RFC 3489 §8.2), reserved since RFC 5389.
    pub const SHARED_SECRET: Method = Method(0x002);

    /// A method, or `None` if `value` does not fit 12 bits.
    pub const fn new(value: u16) -> Option<Method> {
        if value <= 0x0FFF {
            Some(Method(value))
        } else {
            None
        }
    }

    /// The 12-bit method number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// Splits a message type into class and method (RFC 8489 §5, figure 3: the class bits C0
/// and C1 sit at bits 4 and 8, the method fills the other 12 bits).
pub(crate) fn split_type(typ: u16) -> (Class, Method) {
    let class = ((typ >> 4) & 0b01) | ((typ >> 7) & 0b10);
    let method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2);
    (Class::from_bits(class), Method(method))
}

/// Inverse of [`split_type`].
fn join_type(class: Class, method: Method) -> u16 {
    let (c, m) = (class.bits(), method.0);
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// The 128 bits after the length field, which tell the two dialects apart.
///
/// RFC 5389 and later (RFC 8489 §5): the magic cookie, then a 96-bit transaction id.
/// RFC 3489 §11.1: a 128-bit transaction id and no cookie. A classic id that happens to
/// start with the cookie is indistinguishable from a modern one and is treated as modern,
/// as every RFC 5389 server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId([u8; 16]);

impl TransactionId {
    /// A RFC 5389+ transaction id: the magic cookie followed by `id`.
    pub fn new(id: [u8; 12]) -> Self {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        raw[4..].copy_from_slice(&id);
        TransactionId(raw)
    }

    /// The transaction id of a header whose bytes 4..20 are `raw` (either dialect).
    pub fn from_bytes(raw: [u8; 16]) -> Self {
        TransactionId(raw)
    }

    /// A random RFC 5389+ transaction id (RFC 8489 §6: uniformly random, from a
    /// cryptographically strong source when the caller's `rng` is one).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; 12];
        rng.fill_bytes(&mut id);
        Self::new(id)
    }

    /// A random RFC 3489 transaction id, as a classic client would send; its first four
    /// bytes never equal the magic cookie.
    pub fn random_classic<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        if raw[..4] == MAGIC_COOKIE.to_be_bytes() {
            raw[0] ^= 0xFF;
        }
        TransactionId(raw)
    }

    /// True for a RFC 3489 id (no magic cookie).
    pub fn is_classic(&self) -> bool {
        self.0[..4] != MAGIC_COOKIE.to_be_bytes()
    }

    /// The 96-bit id of a RFC 5389+ message, `None` for a classic one.
    pub fn id96(&self) -> Option<[u8; 12]> {
        if self.is_classic() {
            return None;
        }
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.0[4..]);
        Some(id)
    }

    /// The 16 header bytes after the length field, as on the wire.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// A STUN message (RFC 8489 §5, §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request, indication, success or error response.
    pub class: Class,
    /// The method, [`Method::BINDING`] for everything this project sends.
    pub method: Method,
    /// The transaction id, which also says which dialect the peer speaks.
    pub transaction_id: TransactionId,
    /// The attributes in wire order, FINGERPRINT excluded.
    pub attributes: Vec<Attribute>,
    /// Whether the message carries (on decode: carried a valid) FINGERPRINT as its last
    /// attribute (RFC 8489 §14.7). On encode the value is computed and appended.
    pub fingerprint: bool,
}

impl Message {
    /// A message without attributes or FINGERPRINT.
    pub fn new(class: Class, method: Method, transaction_id: TransactionId) -> Self {
        Message {
            class,
            method,
            transaction_id,
            attributes: Vec::new(),
            fingerprint: false,
        }
    }

    /// A Binding request without attributes (RFC 8489 §6.1). Use
    /// [`TransactionId::random`] for a fresh id.
    pub fn binding_request(transaction_id: TransactionId) -> Self {
        Self::new(Class::Request, Method::BINDING, transaction_id)
    }

    /// The success response to `request` telling the client its reflexive address `mapped`.
    ///
    /// RFC 5389+ requests get XOR-MAPPED-ADDRESS (RFC 8489 §14.2), classic RFC 3489
    /// requests MAPPED-ADDRESS (RFC 3489 §11.2.1); both get SOFTWARE "punch", and
    /// FINGERPRINT if the request had one. An IPv4-mapped IPv6 `mapped` (from a dual-stack
    /// socket) is reported as IPv4. A RFC 5780 or RFC 3489 server adds RESPONSE-ORIGIN and
    /// OTHER-ADDRESS (or SOURCE-ADDRESS and CHANGED-ADDRESS) itself: only it knows them.
    pub fn binding_success(request: &Message, mapped: SocketAddr) -> Self {
        let mapped = canonical(mapped);
        let address = if request.transaction_id.is_classic() {
            Attribute::MappedAddress(mapped)
        } else {
            Attribute::XorMappedAddress(mapped)
        };
        Message {
            class: Class::SuccessResponse,
            method: request.method,
            transaction_id: request.transaction_id,
            attributes: vec![address, Attribute::Software(SOFTWARE.to_owned())],
            fingerprint: request.fingerprint,
        }
    }

    /// The error response to `request` (RFC 8489 §6.3.1.1): ERROR-CODE and SOFTWARE, and
    /// FINGERPRINT if the request had one. For 420 push
    /// [`Attribute::UnknownAttributes`] with [`Message::unknown_comprehension_required`].
    pub fn error_response(request: &Message, error: ErrorCode) -> Self {
        Message {
            class: Class::ErrorResponse,
            method: request.method,
            transaction_id: request.transaction_id,
            attributes: vec![
                Attribute::ErrorCode(error),
                Attribute::Software(SOFTWARE.to_owned()),
            ],
            fingerprint: request.fingerprint,
        }
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS if present, else MAPPED-ADDRESS.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        let xor = self.attributes.iter().find_map(|a| match a {
            Attribute::XorMappedAddress(addr) => Some(*addr),
            _ => None,
        });
        xor.or_else(|| {
            self.attributes.iter().find_map(|a| match a {
                Attribute::MappedAddress(addr) => Some(*addr),
                _ => None,
            })
        })
    }

    /// The first attribute of type `typ`, if any.
    pub fn attribute(&self, typ: u16) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.typ() == typ)
    }

    /// Types of the raw attributes a receiver must understand but this codec does not type
    /// (RFC 8489 §6.3.1: a server answers a request carrying any with 420 and lists them in
    /// UNKNOWN-ATTRIBUTES). Includes MESSAGE-INTEGRITY and USERNAME: whoever handles
    /// authentication filters those out first.
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        self.attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::Raw { typ, .. } if Attribute::is_comprehension_required(*typ) => {
                    Some(*typ)
                }
                _ => None,
            })
            .collect()
    }

    /// Size of [`Message::encode`]'s output (computed even when encoding would fail).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        let attrs: usize = self
            .attributes
            .iter()
            .map(|a| 4 + padded(a.value_len()))
            .sum();
        attrs + if self.fingerprint { FINGERPRINT_LEN } else { 0 }
    }

    /// Encodes the message, appending FINGERPRINT if [`Message::fingerprint`] is set.
    ///
    /// Padding is zeros (RFC 8489 §14). Fails if the attributes do not fit the 16-bit length
    /// field, if there are more than [`MAX_ATTRIBUTES`], or for a [`Attribute::Raw`] of type
    /// FINGERPRINT: the output always decodes again with [`Message::decode`].
    pub fn encode(&self) -> Result<Vec<u8>, StunError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// [`Message::encode`] into `out`, which is cleared first: a caller that keeps `out`
    /// encodes without allocating. On error `out` holds no valid message.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), StunError> {
        let mut enc = Encoder::new(out, self.class, self.method, &self.transaction_id);
        for attr in &self.attributes {
            enc.attribute(attr)?;
        }
        enc.finish(self.fingerprint)
    }

    /// Decodes one STUN message that fills `buf` exactly (a whole UDP datagram).
    ///
    /// Checks (RFC 8489 §5, §14): the first two bits are zero; the length field is a
    /// multiple of 4 and equals the bytes after the header; every attribute and its padding
    /// lies within the message; at most [`MAX_ATTRIBUTES`]; typed attributes are well formed;
    /// FINGERPRINT, if present, is last and matches (§14.7). Padding contents are ignored
    /// (§14). Unknown attributes of either comprehension range are kept as
    /// [`Attribute::Raw`]. Messages with and without the magic cookie are both accepted.
    pub fn decode(buf: &[u8]) -> Result<Message, StunError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Err(StunError::Truncated(buf.len()));
        };
        if header[0] & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        let (class, method) = split_type(u16::from_be_bytes([header[0], header[1]]));
        let length = u16::from_be_bytes([header[2], header[3]]);
        if length % 4 != 0 {
            return Err(StunError::UnalignedLength(length));
        }
        let actual = buf.len() - HEADER_LEN;
        if usize::from(length) != actual {
            return Err(StunError::LengthMismatch {
                header: length,
                actual,
            });
        }
        let mut raw_id = [0u8; 16];
        raw_id.copy_from_slice(&header[4..]);
        let transaction_id = TransactionId(raw_id);

        let mut message = Message::new(class, method, transaction_id);
        let mut offset = HEADER_LEN;
        let mut count = 0;
        while offset < buf.len() {
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            let (typ, value, next) = read_tlv(buf, offset)?;
            if typ == Attribute::FINGERPRINT {
                if next != buf.len() {
                    return Err(StunError::FingerprintNotLast);
                }
                let received: [u8; 4] =
                    value.try_into().map_err(|_| StunError::InvalidAttribute {
                        typ,
                        reason: "length is not 4",
                    })?;
                let received = u32::from_be_bytes(received);
                let expected = fingerprint_crc(&buf[..offset]);
                if received != expected {
                    return Err(StunError::FingerprintMismatch { expected, received });
                }
                message.fingerprint = true;
            } else {
                let attr = Attribute::decode_value(typ, value, transaction_id.as_bytes())?;
                message.attributes.push(attr);
            }
            offset = next;
        }
        Ok(message)
    }
}

/// Writes a message into a caller's buffer one attribute at a time, without building a
/// [`Message`] (no attribute list, no owned values): the allocation-free path of the
/// responder's answers. The length field and FINGERPRINT are written by
/// [`Encoder::finish`], which also enforces [`Message::encode`]'s limits.
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    key: [u8; 16],
    count: usize,
}

impl<'a> Encoder<'a> {
    /// Clears `out` and writes the header (length still 0).
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        class: Class,
        method: Method,
        transaction_id: &TransactionId,
    ) -> Self {
        out.clear();
        out.extend_from_slice(&join_type(class, method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(transaction_id.as_bytes());
        Encoder {
            out,
            key: *transaction_id.as_bytes(),
            count: 0,
        }
    }

    /// Appends a typed attribute (never FINGERPRINT: that is [`Encoder::finish`]'s).
    pub(crate) fn attribute(&mut self, attr: &Attribute) -> Result<(), StunError> {
        let typ = attr.typ();
        if typ == Attribute::FINGERPRINT {
            return Err(StunError::InvalidAttribute {
                typ,
                reason: "FINGERPRINT is set with Message::fingerprint, not as an attribute",
            });
        }
        let value_len = attr.value_len();
        self.header(typ, value_len);
        attr.write_value(self.out, &self.key);
        self.pad(value_len);
        Ok(())
    }

    /// Appends an attribute from its type and raw value.
    pub(crate) fn raw(&mut self, typ: u16, value: &[u8]) {
        self.header(typ, value.len());
        self.out.extend_from_slice(value);
        self.pad(value.len());
    }

    fn header(&mut self, typ: u16, value_len: usize) {
        self.count += 1;
        // An oversized value makes the whole body too long: `finish` refuses it.
        let len16 = u16::try_from(value_len).unwrap_or(u16::MAX);
        self.out.extend_from_slice(&typ.to_be_bytes());
        self.out.extend_from_slice(&len16.to_be_bytes());
    }

    fn pad(&mut self, value_len: usize) {
        self.out
            .resize(self.out.len() + padded(value_len) - value_len, 0);
    }

    /// Checks the limits, writes the length field, and appends FINGERPRINT if asked.
    pub(crate) fn finish(self, fingerprint: bool) -> Result<(), StunError> {
        if self.count + usize::from(fingerprint) > MAX_ATTRIBUTES {
            return Err(StunError::TooManyAttributes);
        }
        let body_len = self.out.len() - HEADER_LEN + if fingerprint { FINGERPRINT_LEN } else { 0 };
        let length = u16::try_from(body_len)
            .ok()
            .filter(|_| body_len <= MAX_BODY_LEN)
            .ok_or(StunError::MessageTooLong(body_len))?;
        self.out[2..4].copy_from_slice(&length.to_be_bytes());
        if fingerprint {
            // RFC 8489 §14.7: CRC-32 of the message up to the attribute, with the length
            // field already counting the FINGERPRINT attribute.
            let crc = fingerprint_crc(self.out);
            self.out
                .extend_from_slice(&Attribute::FINGERPRINT.to_be_bytes());
            self.out.extend_from_slice(&4u16.to_be_bytes());
            self.out.extend_from_slice(&crc.to_be_bytes());
        }
        Ok(())
    }
}

/// Reads the attribute at `offset`: its type, its value without padding, and the offset of
/// the next attribute.
fn read_tlv(buf: &[u8], offset: usize) -> Result<(u16, &[u8], usize), StunError> {
    let overrun = |typ| StunError::AttributeOverrun { typ, offset };
    let Some(&[t0, t1, l0, l1]) = buf.get(offset..offset.saturating_add(4)) else {
        return Err(overrun(0));
    };
    let typ = u16::from_be_bytes([t0, t1]);
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let start = offset + 4;
    let next = start + padded(len);
    if next > buf.len() {
        return Err(overrun(typ));
    }
    let value = buf.get(start..start + len).ok_or(overrun(typ))?;
    Ok((typ, value, next))
}

/// `len` rounded up to a multiple of 4 (RFC 8489 §14).
fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as plain IPv4; anything else unchanged.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}
