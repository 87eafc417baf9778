//! The responder never panics, whatever bytes arrive on whichever socket, and whatever it
//! answers is a well-formed STUN response to the same transaction, encoded exactly as
//! [`Message::encode`] would; answering into a used buffer gives the same answer.

use std::net::SocketAddr;

use proptest::prelude::*;
use punch_proto::stun::{
    Attribute, ChangeRequest, Class, Message, ServerAddrs, SocketId, StunResponder, TransactionId,
};

fn responders() -> [StunResponder; 2] {
    let primary: SocketAddr = "203.0.113.1:3478".parse().unwrap();
    [
        StunResponder::new(
            ServerAddrs::new(primary, Some("203.0.113.2".parse().unwrap()), Some(3479)).unwrap(),
        ),
        StunResponder::new(ServerAddrs::single(primary)),
    ]
}

fn check(bytes: &[u8], on: usize, from: SocketAddr) {
    let on = SocketId::ALL[on];
    for r in responders() {
        let mut reused = vec![0xAB; 700];
        let into = r.respond_into(on, from, bytes, &mut reused);
        let reply = r.respond(on, from, bytes);
        assert_eq!(
            into,
            reply.as_ref().map(|r| (r.socket, r.dest)),
            "respond_into and respond agree"
        );
        match &reply {
            Some(reply) => assert_eq!(reused, reply.payload),
            None => assert!(reused.is_empty(), "nothing left to send"),
        }
        if let Some(reply) = reply {
            let req = Message::decode(bytes).expect("answered only decodable requests");
            let resp = Message::decode(&reply.payload).expect("answer decodes");
            assert_eq!(
                resp.encode().unwrap(),
                reply.payload,
                "the codec's own encoding"
            );
            assert_eq!(resp.transaction_id, req.transaction_id);
            assert!(matches!(
                resp.class,
                Class::SuccessResponse | Class::ErrorResponse
            ));
            assert!(r.addrs().addr(reply.socket).is_some());
            assert_eq!(reply.dest.ip(), from.ip());
        }
    }
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(change_ip, change_port)| {
            Attribute::ChangeRequest(ChangeRequest {
                change_ip,
                change_port,
            })
        }),
        any::<u16>().prop_map(Attribute::ResponsePort),
        (0u16..2000).prop_map(Attribute::Padding),
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(typ, value)| Attribute::Raw { typ, value }),
        Just(Attribute::Software("x".into())),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        on in 0usize..4,
        port in any::<u16>(),
    ) {
        check(&bytes, on, SocketAddr::from(([198, 51, 100, 7], port)));
    }

    #[test]
    fn arbitrary_binding_requests_never_panic(
        id in any::<[u8; 16]>(),
        attrs in proptest::collection::vec(attribute(), 0..6),
        fingerprint in any::<bool>(),
        on in 0usize..4,
        port in any::<u16>(),
    ) {
        let mut msg = Message::binding_request(TransactionId::from_bytes(id));
        msg.attributes = attrs
            .into_iter()
            .filter(|a| a.typ() != Attribute::FINGERPRINT)
            .collect();
        msg.fingerprint = fingerprint;
        if let Ok(bytes) = msg.encode() {
            check(&bytes, on, SocketAddr::from(([198, 51, 100, 7], port)));
        }
    }
}
