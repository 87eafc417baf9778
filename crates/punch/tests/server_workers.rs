//! A server with several sockets on its address (`SO_REUSEPORT` workers): every client
//! socket gets its STUN answer from the address it asked, whichever worker took its
//! request (a port in use, and the workers' twins: `server_send_only_twin`).

use std::net::Ipv4Addr;
use std::time::Duration;

use punch::punch_proto::stun::{Message, TransactionId};
use punch::server::{ServerConfig, ServerHandle};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Bound of every test: loopback answers take microseconds.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Client sockets: enough that the kernel's hash lands on every worker.
const CLIENTS: usize = 64;

#[tokio::test]
async fn every_client_is_answered_from_the_address_it_asked() {
    timeout(TEST_TIMEOUT, async {
        let cfg = ServerConfig {
            workers: 4,
            ..ServerConfig::default()
        };
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), cfg)
            .await
            .expect("server");
        let addr = server.local_addr();
        for i in 0..CLIENTS {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let req = Message::binding_request(TransactionId::new([i as u8; 12]));
            let mut buf = [0u8; 256];
            // Retransmit as a client would: a datagram may be lost under load.
            let (n, from) = loop {
                sock.send_to(&req.encode().unwrap(), addr).await.unwrap();
                if let Ok(got) = timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
                {
                    break got.expect("recv");
                }
            };
            assert_eq!(from, addr, "answer from the address asked");
            let answer = Message::decode(&buf[..n]).expect("a STUN answer");
            assert_eq!(answer.transaction_id, req.transaction_id);
            assert_eq!(answer.mapped_address(), Some(sock.local_addr().unwrap()));
        }
    })
    .await
    .expect("test timed out");
}
