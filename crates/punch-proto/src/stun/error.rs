//! Errors of the STUN codec: every way untrusted bytes can fail to be a STUN message, and the
//! few ways a hand-built [`Message`](super::Message) can fail to encode.

/// Why bytes could not be decoded as STUN, or a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// The buffer is shorter than the 20-byte header (RFC 8489 §5).
    #[error("STUN message truncated: {0} bytes, the header alone needs 20")]
    Truncated(usize),
    /// The two most significant bits of the first byte are not zero, so this is not STUN
    /// (RFC 8489 §5, RFC 7983 §7).
    #[error("not a STUN message: the first two bits are not zero")]
    NotStun,
    /// The message length field is not a multiple of 4 (RFC 8489 §5).
    #[error("STUN message length {0} is not a multiple of 4")]
    UnalignedLength(u16),
    /// The message length field disagrees with the number of bytes after the header.
    #[error("STUN length field says {header} bytes, {actual} follow the header")]
    LengthMismatch {
        /// The value of the length field.
        header: u16,
        /// The number of bytes actually present after the header.
        actual: usize,
    },
    /// An attribute (with its padding, RFC 8489 §14) runs past the end of the message.
    #[error("STUN attribute {typ:#06x} at offset {offset} runs past the end of the message")]
    AttributeOverrun {
        /// The attribute type.
        typ: u16,
        /// Offset of the attribute header from the start of the message.
        offset: usize,
    },
    /// The message has more than [`MAX_ATTRIBUTES`](super::MAX_ATTRIBUTES) attributes.
    #[error("STUN message has more than {} attributes", super::MAX_ATTRIBUTES)]
    TooManyAttributes,
    /// A known attribute has a value that does not follow its RFC (wrong length, unknown
    /// address family, invalid UTF-8, ...), or cannot be encoded.
    #[error("malformed STUN attribute {typ:#06x}: {reason}")]
    InvalidAttribute {
        /// The attribute type.
        typ: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("STUN FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// FINGERPRINT does not match the CRC-32 of the message (RFC 8489 §14.7).
    #[error("STUN FINGERPRINT mismatch: computed {expected:#010x}, received {received:#010x}")]
    FingerprintMismatch {
        /// The value computed over the received bytes.
        expected: u32,
        /// The value carried in the attribute.
        received: u32,
    },
    /// The attributes do not fit the 16-bit length field (at most 65532 bytes after the header).
    #[error("STUN message body of {0} bytes does not fit the 16-bit length field")]
    MessageTooLong(usize),
    /// An ERROR-CODE outside 300..=699 (RFC 8489 §14.8).
    #[error("STUN error code {0} is outside 300..=699")]
    InvalidErrorCode(u16),
}
