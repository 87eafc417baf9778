//! Classic RFC 3489 clients: cookie-less requests decode, and get a MAPPED-ADDRESS answer
//! that echoes their 128-bit transaction id.

use std::net::SocketAddr;

use punch_proto::stun::{looks_like_stun, Attribute, ChangeRequest, Class, Message, Method};

/// A RFC 3489 §11.1 Binding Request: no magic cookie, a 128-bit transaction id, and the
/// CHANGE-REQUEST (flags 0) that classic clients such as `stun-client` send.
const CLASSIC_REQUEST: [u8; 28] = [
    0x00, 0x01, 0x00, 0x08, // Binding Request, length 8
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // transaction id ...
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, // ... 128 bits
    0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, // CHANGE-REQUEST, no flags
];

#[test]
fn classic_request_decodes() {
    assert!(looks_like_stun(&CLASSIC_REQUEST));
    let msg = Message::decode(&CLASSIC_REQUEST).unwrap();
    assert_eq!(msg.class, Class::Request);
    assert_eq!(msg.method, Method::BINDING);
    assert!(msg.transaction_id.is_classic());
    assert_eq!(msg.transaction_id.id96(), None);
    assert_eq!(msg.transaction_id.as_bytes()[..], CLASSIC_REQUEST[4..20]);
    assert_eq!(
        msg.attributes,
        [Attribute::ChangeRequest(ChangeRequest::default())]
    );
    assert!(!msg.fingerprint);
}

#[test]
fn classic_response_uses_mapped_address() {
    let request = Message::decode(&CLASSIC_REQUEST).unwrap();
    let mapped: SocketAddr = "198.51.100.20:61000".parse().unwrap();
    let response = Message::binding_success(&request, mapped);
    let bytes = response.encode().unwrap();
    let expected: [u8; 44] = [
        0x01, 0x01, 0x00, 0x18, // Binding Response, length 24
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // the request's id, verbatim
        0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, //
        0x00, 0x01, 0x00, 0x08, // MAPPED-ADDRESS, length 8
        0x00, 0x01, 0xee, 0x48, // IPv4, port 61000
        198, 51, 100, 20, // address in the clear
        0x80, 0x22, 0x00, 0x05, // SOFTWARE, length 5
        b'p', b'u', b'n', b'c', b'h', 0, 0, 0, // "punch" + padding
    ];
    assert_eq!(bytes, expected);
    assert!(looks_like_stun(&bytes));
    let decoded = Message::decode(&bytes).unwrap();
    assert_eq!(decoded.mapped_address(), Some(mapped));
    assert_eq!(decoded.transaction_id, request.transaction_id);
}

#[test]
fn classic_server_attributes_round_trip() {
    let request = Message::decode(&CLASSIC_REQUEST).unwrap();
    let mut response = Message::binding_success(&request, "192.0.2.1:1".parse().unwrap());
    response.attributes.push(Attribute::SourceAddress(
        "192.0.2.100:3478".parse().unwrap(),
    ));
    response.attributes.push(Attribute::ChangedAddress(
        "192.0.2.101:3479".parse().unwrap(),
    ));
    let decoded = Message::decode(&response.encode().unwrap()).unwrap();
    assert_eq!(decoded, response);
}

#[test]
fn cookie_less_other_methods_are_not_demuxed_as_stun() {
    // Without the cookie only RFC 3489's methods count as STUN for the demultiplexer.
    let mut bytes = CLASSIC_REQUEST;
    bytes[1] = 0x05;
    assert!(!looks_like_stun(&bytes));
    // decode still accepts it: looks_like_stun is only a hint.
    assert!(Message::decode(&bytes).is_ok());
}
