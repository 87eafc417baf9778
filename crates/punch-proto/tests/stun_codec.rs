//! STUN codec against the RFC 5769 test vectors, and rejection of malformed input with the
//! right error.

use std::net::SocketAddr;

use punch_proto::stun::{
    looks_like_stun, Attribute, ChangeRequest, Class, ErrorCode, Message, Method, StunError,
    TransactionId, MAX_ATTRIBUTES,
};
use rand::{rngs::StdRng, SeedableRng};

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// RFC 5769 §2.1 sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
/// MESSAGE-INTEGRITY, FINGERPRINT).
const SAMPLE_REQUEST: &str = "
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf";

/// RFC 5769 §2.2 sample IPv4 response.
const SAMPLE_IPV4_RESPONSE: &str = "
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96";

/// RFC 5769 §2.3 sample IPv6 response.
const SAMPLE_IPV6_RESPONSE: &str = "
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c";

const TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

#[test]
fn rfc5769_sample_request() {
    let bytes = hex(SAMPLE_REQUEST);
    assert!(looks_like_stun(&bytes));
    let msg = Message::decode(&bytes).expect("RFC 5769 §2.1 decodes");
    assert_eq!(msg.class, Class::Request);
    assert_eq!(msg.method, Method::BINDING);
    assert_eq!(msg.transaction_id, TransactionId::new(TXID));
    assert!(!msg.transaction_id.is_classic());
    assert!(msg.fingerprint, "FINGERPRINT verified");
    let types: Vec<u16> = msg.attributes.iter().map(Attribute::typ).collect();
    assert_eq!(types, [0x8022, 0x0024, 0x8029, 0x0006, 0x0008]);
    assert_eq!(
        msg.attributes[0],
        Attribute::Software("STUN test client".into())
    );
    // USERNAME is raw, without its three bytes of padding.
    assert_eq!(
        msg.attributes[3],
        Attribute::Raw {
            typ: 0x0006,
            value: b"evtj:h6vY".to_vec()
        }
    );
    // PRIORITY, USERNAME, MESSAGE-INTEGRITY: comprehension-required and untyped.
    assert_eq!(
        msg.unknown_comprehension_required(),
        [0x0024, 0x0006, 0x0008]
    );
    assert_eq!(msg.mapped_address(), None);

    // Re-encoding pads with zeros instead of the vector's spaces; everything else,
    // including the raw MESSAGE-INTEGRITY bytes, is identical.
    let encoded = msg.encode().unwrap();
    assert_eq!(encoded.len(), bytes.len());
    assert_eq!(encoded.len(), msg.encoded_len());
    assert_eq!(encoded[..73], bytes[..73]); // up to the end of USERNAME's value
    assert_eq!(encoded[76..100], bytes[76..100]); // MESSAGE-INTEGRITY
    assert_eq!(Message::decode(&encoded).unwrap(), msg);
}

#[test]
fn rfc5769_ipv4_response() {
    let bytes = hex(SAMPLE_IPV4_RESPONSE);
    let msg = Message::decode(&bytes).expect("RFC 5769 §2.2 decodes");
    assert_eq!(msg.class, Class::SuccessResponse);
    assert_eq!(msg.method, Method::BINDING);
    assert!(msg.fingerprint);
    let expected: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(msg.attributes[1], Attribute::XorMappedAddress(expected));
    assert_eq!(msg.mapped_address(), Some(expected));
    // The SOFTWARE value is 11 bytes; the trailing space of the vector is padding.
    assert_eq!(msg.attributes[0], Attribute::Software("test vector".into()));
    // XOR-MAPPED-ADDRESS re-encodes to exactly the vector's bytes.
    let encoded = msg.encode().unwrap();
    assert_eq!(encoded[36..48], bytes[36..48]);
    assert_eq!(Message::decode(&encoded).unwrap(), msg);
}

#[test]
fn rfc5769_ipv6_response() {
    let bytes = hex(SAMPLE_IPV6_RESPONSE);
    let msg = Message::decode(&bytes).expect("RFC 5769 §2.3 decodes");
    assert!(msg.fingerprint);
    let expected: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(msg.mapped_address(), Some(expected));
    let encoded = msg.encode().unwrap();
    assert_eq!(encoded[36..60], bytes[36..60]);
}

#[test]
fn corrupted_fingerprint_is_rejected() {
    let mut bytes = hex(SAMPLE_IPV4_RESPONSE);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(
        Message::decode(&bytes),
        Err(StunError::FingerprintMismatch {
            expected: 0xc07d_4c96,
            received: 0xc07d_4c97
        })
    ));
}

#[test]
fn corrupted_body_breaks_fingerprint() {
    let mut bytes = hex(SAMPLE_REQUEST);
    bytes[25] ^= 0x20; // a letter of SOFTWARE
    assert!(matches!(
        Message::decode(&bytes),
        Err(StunError::FingerprintMismatch { .. })
    ));
}

#[test]
fn attribute_after_fingerprint_is_rejected() {
    let mut msg = Message::binding_request(TransactionId::new(TXID));
    msg.fingerprint = true;
    let mut bytes = msg.encode().unwrap();
    // Append SOFTWARE "abcd" after FINGERPRINT and fix the length field.
    bytes.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'a', b'b', b'c', b'd']);
    let len = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::decode(&bytes), Err(StunError::FingerprintNotLast));
}

#[test]
fn bad_lengths_are_rejected() {
    let good = hex(SAMPLE_IPV4_RESPONSE);

    assert_eq!(Message::decode(&good[..19]), Err(StunError::Truncated(19)));
    assert_eq!(Message::decode(&[]), Err(StunError::Truncated(0)));

    // One byte missing at the end.
    assert_eq!(
        Message::decode(&good[..good.len() - 4]),
        Err(StunError::LengthMismatch {
            header: 0x3c,
            actual: 0x38
        })
    );
    // Trailing garbage.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    assert!(matches!(
        Message::decode(&long),
        Err(StunError::LengthMismatch { header: 0x3c, .. })
    ));

    // Length field not a multiple of 4.
    let mut unaligned = good.clone();
    unaligned[3] = 0x3d;
    assert_eq!(
        Message::decode(&unaligned),
        Err(StunError::UnalignedLength(0x3d))
    );

    // SOFTWARE claims 0x40 bytes, more than the message holds.
    let mut overrun = good.clone();
    overrun[22..24].copy_from_slice(&[0x00, 0x40]);
    assert_eq!(
        Message::decode(&overrun),
        Err(StunError::AttributeOverrun {
            typ: 0x8022,
            offset: 20
        })
    );

    // XOR-MAPPED-ADDRESS with an IPv4 family but 20 bytes of value is malformed.
    let mut wrong_family = hex(SAMPLE_IPV6_RESPONSE);
    wrong_family[41] = 0x01;
    assert!(matches!(
        Message::decode(&wrong_family),
        Err(StunError::InvalidAttribute { typ: 0x0020, .. })
    ));
}

#[test]
fn not_stun_is_rejected() {
    let mut bytes = hex(SAMPLE_IPV4_RESPONSE);
    bytes[0] |= 0x40; // QUIC long headers start with 0b11
    assert_eq!(Message::decode(&bytes), Err(StunError::NotStun));
    assert!(!looks_like_stun(&bytes));
}

#[test]
fn too_many_attributes_are_rejected() {
    let mut msg = Message::binding_request(TransactionId::new(TXID));
    msg.attributes = vec![Attribute::Padding(0); MAX_ATTRIBUTES];
    let bytes = msg.encode().unwrap();
    assert_eq!(Message::decode(&bytes).unwrap(), msg);

    msg.fingerprint = true;
    assert_eq!(msg.encode(), Err(StunError::TooManyAttributes));

    // Hand-build 65 empty attributes.
    let mut bytes = bytes;
    bytes.extend_from_slice(&[0x00, 0x26, 0x00, 0x00]);
    let len = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::decode(&bytes), Err(StunError::TooManyAttributes));
}

#[test]
fn oversized_messages_do_not_encode() {
    let mut msg = Message::binding_request(TransactionId::new(TXID));
    msg.attributes.push(Attribute::Raw {
        typ: 0x8123,
        value: vec![0; 70_000],
    });
    assert!(matches!(msg.encode(), Err(StunError::MessageTooLong(_))));
    msg.attributes = vec![Attribute::Raw {
        typ: 0x8028,
        value: vec![0; 4],
    }];
    assert!(matches!(
        msg.encode(),
        Err(StunError::InvalidAttribute { typ: 0x8028, .. })
    ));
}

#[test]
fn binding_success_for_modern_request() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut request = Message::binding_request(TransactionId::random(&mut rng));
    request.fingerprint = true;
    let request = Message::decode(&request.encode().unwrap()).unwrap();

    let mapped: SocketAddr = "[::ffff:198.51.100.7]:40000".parse().unwrap();
    let response = Message::binding_success(&request, mapped);
    let bytes = response.encode().unwrap();
    assert!(looks_like_stun(&bytes));
    let decoded = Message::decode(&bytes).unwrap();
    assert_eq!(decoded.class, Class::SuccessResponse);
    assert_eq!(decoded.transaction_id, request.transaction_id);
    assert!(decoded.fingerprint);
    // Only XOR-MAPPED-ADDRESS, IPv4-mapped reported as IPv4.
    let v4: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    assert_eq!(
        decoded.attributes,
        [
            Attribute::XorMappedAddress(v4),
            Attribute::Software("punch".into())
        ]
    );
    assert_eq!(decoded.mapped_address(), Some(v4));
}

#[test]
fn mapped_address_prefers_xor() {
    let mut msg = Message::new(
        Class::SuccessResponse,
        Method::BINDING,
        TransactionId::new(TXID),
    );
    let plain: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let xor: SocketAddr = "203.0.113.9:2".parse().unwrap();
    msg.attributes.push(Attribute::MappedAddress(plain));
    assert_eq!(msg.mapped_address(), Some(plain));
    msg.attributes.push(Attribute::XorMappedAddress(xor));
    assert_eq!(msg.mapped_address(), Some(xor));
}

#[test]
fn rfc5780_attributes_round_trip() {
    let mut msg = Message::binding_request(TransactionId::new(TXID));
    msg.attributes = vec![
        Attribute::ChangeRequest(ChangeRequest {
            change_ip: true,
            change_port: false,
        }),
        Attribute::ResponsePort(5000),
        Attribute::Padding(1400),
        Attribute::ResponseOrigin("192.0.2.10:3478".parse().unwrap()),
        Attribute::OtherAddress("192.0.2.11:3479".parse().unwrap()),
    ];
    let bytes = msg.encode().unwrap();
    // CHANGE-REQUEST with flag A only: 0x00000004.
    assert_eq!(bytes[20..28], [0x00, 0x03, 0x00, 0x04, 0, 0, 0, 4]);
    // RESPONSE-PORT: port then two bytes of padding in the value.
    assert_eq!(bytes[28..36], [0x00, 0x27, 0x00, 0x04, 0x13, 0x88, 0, 0]);
    assert_eq!(Message::decode(&bytes).unwrap(), msg);
}

#[test]
fn error_response_with_unknown_attributes() {
    let request = Message::decode(&hex(SAMPLE_REQUEST)).unwrap();
    let mut response = Message::error_response(
        &request,
        ErrorCode::new(ErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute").unwrap(),
    );
    response.attributes.push(Attribute::UnknownAttributes(
        request.unknown_comprehension_required(),
    ));
    let bytes = response.encode().unwrap();
    // ERROR-CODE: class 4, number 20.
    assert_eq!(bytes[20..28], [0x00, 0x09, 0x00, 0x15, 0, 0, 4, 20]);
    let decoded = Message::decode(&bytes).unwrap();
    assert_eq!(decoded, response);
    assert_eq!(decoded.class, Class::ErrorResponse);
    assert!(decoded.fingerprint);

    assert_eq!(
        ErrorCode::new(700, "x"),
        Err(StunError::InvalidErrorCode(700))
    );
    assert_eq!(
        ErrorCode::new(299, "x"),
        Err(StunError::InvalidErrorCode(299))
    );
}

#[test]
fn method_and_class_bits() {
    // RFC 8489 §5: a Binding success response is 0x0101, an error response 0x0111.
    for (class, typ) in [
        (Class::Request, 0x0001u16),
        (Class::Indication, 0x0011),
        (Class::SuccessResponse, 0x0101),
        (Class::ErrorResponse, 0x0111),
    ] {
        let bytes = Message::new(class, Method::BINDING, TransactionId::new(TXID))
            .encode()
            .unwrap();
        assert_eq!(bytes[..2], typ.to_be_bytes());
    }
    // Method 0xFFF sets every non-class bit of the 14.
    let bytes = Message::new(
        Class::Request,
        Method::new(0x0FFF).unwrap(),
        TransactionId::new(TXID),
    )
    .encode()
    .unwrap();
    assert_eq!(bytes[..2], [0x3E, 0xEF]);
    assert_eq!(Method::new(0x1000), None);
}

#[test]
fn random_transaction_ids_come_from_the_callers_rng() {
    let a = TransactionId::random(&mut StdRng::seed_from_u64(1));
    let b = TransactionId::random(&mut StdRng::seed_from_u64(1));
    let c = TransactionId::random(&mut StdRng::seed_from_u64(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(!a.is_classic());
    assert!(a.id96().is_some());
    let classic = TransactionId::random_classic(&mut StdRng::seed_from_u64(1));
    assert!(classic.is_classic());
    assert_eq!(classic.id96(), None);
}
