//! The server is a STUN binding responder: a RFC 8489 request (magic cookie, FINGERPRINT)
//! gets a success response with XOR-MAPPED-ADDRESS equal to the client's address, the same
//! transaction id and a valid FINGERPRINT; a classic RFC 3489 request (no cookie) gets
//! MAPPED-ADDRESS in the clear and its 128-bit transaction id back.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::server::{ServerConfig, ServerHandle};
use punch_proto::stun::{Attribute, Class, Message, Method, TransactionId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn exchange(request: &Message) -> (Message, SocketAddr) {
    let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
        .await
        .expect("server");
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let bytes = request.encode().expect("encode request");
    sock.send_to(&bytes, server.local_addr()).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).await.unwrap();
    assert_eq!(from, server.local_addr());
    let response = Message::decode(&buf[..n]).expect("a valid STUN response");
    (response, sock.local_addr().unwrap())
}

#[tokio::test]
async fn modern_request_gets_xor_mapped_address() {
    timeout(TEST_TIMEOUT, async {
        let mut rng = StdRng::seed_from_u64(1);
        let mut request = Message::binding_request(TransactionId::random(&mut rng));
        request.fingerprint = true;
        let (response, client) = exchange(&request).await;
        assert_eq!(response.class, Class::SuccessResponse);
        assert_eq!(response.method, Method::BINDING);
        assert_eq!(response.transaction_id, request.transaction_id);
        assert!(
            response.fingerprint,
            "FINGERPRINT asked, FINGERPRINT answered"
        );
        assert_eq!(
            response.attribute(Attribute::XOR_MAPPED_ADDRESS),
            Some(&Attribute::XorMappedAddress(client))
        );
        assert_eq!(response.mapped_address(), Some(client));
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn classic_request_gets_mapped_address() {
    timeout(TEST_TIMEOUT, async {
        let mut rng = StdRng::seed_from_u64(2);
        let request = Message::binding_request(TransactionId::random_classic(&mut rng));
        assert!(request.transaction_id.is_classic());
        let (response, client) = exchange(&request).await;
        assert_eq!(response.class, Class::SuccessResponse);
        assert_eq!(response.transaction_id, request.transaction_id);
        assert_eq!(
            response.attribute(Attribute::MAPPED_ADDRESS),
            Some(&Attribute::MappedAddress(client))
        );
        assert_eq!(
            response.attribute(Attribute::XOR_MAPPED_ADDRESS),
            None,
            "a RFC 3489 client does not know XOR-MAPPED-ADDRESS"
        );
    })
    .await
    .expect("test timed out");
}
