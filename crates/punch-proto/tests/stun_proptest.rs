//! Property tests of the STUN codec: encode→decode is the identity on arbitrary messages,
//! and decode never panics, whatever the bytes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;
use punch_proto::stun::{
    looks_like_stun, Attribute, ChangeRequest, Class, ErrorCode, Message, Method, TransactionId,
};

/// Attribute types this codec decodes into typed variants (plus FINGERPRINT), which a
/// [`Attribute::Raw`] must avoid to round-trip.
const TYPED: [u16; 13] = [
    0x0001, 0x0003, 0x0004, 0x0005, 0x0009, 0x000A, 0x0020, 0x0026, 0x0027, 0x8022, 0x8028, 0x802B,
    0x802C,
];

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
        // flowinfo and scope id are not on the wire.
        (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            0
        )
        .into()),
    ]
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        socket_addr().prop_map(Attribute::MappedAddress),
        socket_addr().prop_map(Attribute::XorMappedAddress),
        socket_addr().prop_map(Attribute::SourceAddress),
        socket_addr().prop_map(Attribute::ChangedAddress),
        socket_addr().prop_map(Attribute::ResponseOrigin),
        socket_addr().prop_map(Attribute::OtherAddress),
        (any::<bool>(), any::<bool>()).prop_map(|(change_ip, change_port)| {
            Attribute::ChangeRequest(ChangeRequest {
                change_ip,
                change_port,
            })
        }),
        any::<u16>().prop_map(Attribute::ResponsePort),
        (0u16..600).prop_map(Attribute::Padding),
        ".{0,40}".prop_map(Attribute::Software),
        (300u16..700, ".{0,40}").prop_map(|(code, reason)| {
            Attribute::ErrorCode(ErrorCode::new(code, reason).expect("code in range"))
        }),
        prop::collection::vec(any::<u16>(), 0..6).prop_map(Attribute::UnknownAttributes),
        (
            any::<u16>().prop_filter("typed", |t| !TYPED.contains(t)),
            prop::collection::vec(any::<u8>(), 0..48)
        )
            .prop_map(|(typ, value)| Attribute::Raw { typ, value }),
    ]
}

fn transaction_id() -> impl Strategy<Value = TransactionId> {
    prop_oneof![
        any::<[u8; 12]>().prop_map(TransactionId::new),
        any::<[u8; 16]>().prop_map(TransactionId::from_bytes),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            Just(Class::Request),
            Just(Class::Indication),
            Just(Class::SuccessResponse),
            Just(Class::ErrorResponse),
        ],
        (0u16..=0x0FFF).prop_map(|m| Method::new(m).expect("12 bits")),
        transaction_id(),
        prop::collection::vec(attribute(), 0..12),
        any::<bool>(),
    )
        .prop_map(
            |(class, method, transaction_id, attributes, fingerprint)| Message {
                class,
                method,
                transaction_id,
                attributes,
                fingerprint,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // Integration tests have no lib.rs beside them to anchor a regressions file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn encode_decode_is_identity(msg in message()) {
        let bytes = msg.encode().expect("generated messages fit");
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        // RFC 7983 demultiplexing only admits first bytes 0..=3 (methods below 0x100).
        if !msg.transaction_id.is_classic() && bytes[0] <= 3 {
            prop_assert!(looks_like_stun(&bytes));
        }
        let decoded = Message::decode(&bytes).expect("own encoding decodes");
        prop_assert_eq!(&decoded, &msg);
        prop_assert_eq!(decoded.encode().expect("re-encodes"), bytes);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::decode(&bytes);
        let _ = looks_like_stun(&bytes);
    }

    /// Arbitrary bytes rarely get past the header check; these do: a valid header whose
    /// length matches, followed by random attribute bytes.
    #[test]
    fn decode_never_panics_behind_a_valid_header(
        typ in 0u16..0x3FFF,
        id in any::<[u8; 16]>(),
        words in prop::collection::vec(any::<[u8; 4]>(), 0..50),
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&typ.to_be_bytes());
        bytes.extend_from_slice(&((words.len() * 4) as u16).to_be_bytes());
        bytes.extend_from_slice(&id);
        bytes.extend(words.iter().flatten());
        if let Ok(msg) = Message::decode(&bytes) {
            // What decodes re-encodes to something that decodes to the same message.
            let again = msg.encode().expect("decoded messages re-encode");
            prop_assert_eq!(Message::decode(&again).expect("re-decodes"), msg);
        }
    }

    /// Single-byte corruptions of valid messages: decode must return, never panic.
    #[test]
    fn decode_never_panics_on_mutations(
        msg in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = msg.encode().expect("generated messages fit");
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= value;
        }
        let _ = Message::decode(&bytes);
    }
}
