//! Properties of the two codecs on arbitrary bytes, shared by the `stun_decode` and
//! `frame_decode` fuzz targets and the stable replay test.
//!
//! Decoding untrusted bytes must never panic. When the bytes decode, the value must encode
//! again (a decoded value respects every bound the encoder checks), and that encoding must
//! decode to an equal value and be a fixed point of encode∘decode.

use punch_proto::stun::{looks_like_stun, Message, MAGIC_COOKIE};
use punch_proto::wire::{is_frame, Frame, MAX_FRAME_LEN};

/// Checks `stun::Message::decode` and the round trip on `data`; true if `data` decoded.
pub fn check_stun(data: &[u8]) -> bool {
    let looks = looks_like_stun(data);
    let Ok(msg) = Message::decode(data) else {
        return false;
    };
    let bytes = match msg.encode() {
        Ok(bytes) => bytes,
        Err(e) => panic!("decoded STUN message does not re-encode: {e}\n{msg:?}"),
    };
    assert_eq!(bytes.len(), msg.encoded_len(), "encoded_len disagrees");
    // Every attribute re-encodes to the same padded length (RESPONSE-PORT's 2-byte form
    // becomes 4 bytes, which is its padded size anyway), so the message keeps its length.
    assert_eq!(bytes.len(), data.len(), "re-encoding changed the length");
    let again = match Message::decode(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("re-encoded STUN message does not decode: {e}\n{msg:?}"),
    };
    assert_eq!(again, msg, "STUN round trip changed the message");
    assert_eq!(
        again.encode().ok(),
        Some(bytes),
        "encode is not a fixed point"
    );
    // A valid RFC 5389+ message whose type fits RFC 7983's STUN range must pass the demux
    // test, or the shared socket would drop it.
    // (`decode` succeeded, so the 20-byte header is there.)
    if data[0] <= 3 && data[4..8] == MAGIC_COOKIE.to_be_bytes() {
        assert!(looks, "a valid STUN message fails looks_like_stun");
    }
    true
}

/// Checks `wire::Frame::decode` and the round trip on `data`; true if `data` decoded.
pub fn check_frame(data: &[u8]) -> bool {
    let looks = is_frame(data);
    let Ok(frame) = Frame::decode(data) else {
        return false;
    };
    assert!(looks, "a decodable frame fails is_frame");
    let bytes = match frame.encode() {
        Ok(bytes) => bytes,
        Err(e) => panic!("decoded frame does not re-encode: {e}\n{frame:?}"),
    };
    assert_eq!(
        frame.encoded_len(),
        Ok(bytes.len()),
        "encoded_len disagrees"
    );
    // The encoder writes the shortest varints; the input can only be as long or longer.
    assert!(bytes.len() <= data.len(), "re-encoding grew the frame");
    assert!(bytes.len() <= MAX_FRAME_LEN);
    let again = match Frame::decode(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("re-encoded frame does not decode: {e}\n{frame:?}"),
    };
    assert_eq!(again, frame, "frame round trip changed the frame");
    assert_eq!(
        again.encode().ok(),
        Some(bytes),
        "encode is not a fixed point"
    );
    true
}

/// Checks `owners::Owner::from_record` on `data` (its first byte picks the name's length,
/// the rest of the first up-to-65 bytes is the name, what follows is the stored value);
/// true if it parsed. A parsed record must re-encode to the very value it came from.
pub fn check_owner_record(data: &[u8]) -> bool {
    use punch_proto::owners::Owner;
    let Some((&n, rest)) = data.split_first() else {
        return false;
    };
    let n = usize::from(n % 66).min(rest.len());
    let (name, value) = rest.split_at(n);
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let Some(owner) = Owner::from_record(name, value) else {
        return false;
    };
    assert_eq!(owner.to_record().as_slice(), value, "record round trip");
    true
}
