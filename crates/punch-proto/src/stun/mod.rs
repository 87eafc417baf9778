//! STUN codec (RFC 8489, RFC 5780, RFC 3489 compatible).
