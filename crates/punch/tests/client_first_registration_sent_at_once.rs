//! `Client::start` puts its first registration on the wire at once, not one
//! retransmission timeout later: on loopback the server sees it within milliseconds and
//! start() returns well within `INITIAL_RTO`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch::client::{Client, ClientConfig, INITIAL_RTO};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use punch_proto::wire::Frame;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Far more than a loopback datagram needs, far less than a retransmission timeout.
const PROMPT: Duration = Duration::from_millis(100);

#[tokio::test]
async fn first_registration_reaches_the_server_at_once() {
    timeout(TEST_TIMEOUT, async {
        let recorder = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let mut cfg = ClientConfig::new(recorder.local_addr().unwrap(), "alice");
        cfg.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        cfg.server_timeout = Duration::from_millis(500);
        let started = Instant::now();
        let first_arrival = async {
            let mut buf = [0u8; 1500];
            let (n, _) = recorder.recv_from(&mut buf).await.unwrap();
            assert!(matches!(
                Frame::decode(&buf[..n]),
                Ok(Frame::Register { .. })
            ));
            started.elapsed()
        };
        // The client fails in the end (nobody answers); only the first send matters.
        let (_, arrived_after) =
            tokio::join!(Client::start(cfg, Identity::generate()), first_arrival);
        assert!(
            arrived_after < PROMPT,
            "first registration arrived after {arrived_after:?} (INITIAL_RTO is {INITIAL_RTO:?})"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn start_returns_within_one_round_trip() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let mut cfg = ClientConfig::new(server.local_addr(), "alice");
        cfg.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let started = Instant::now();
        let client = Client::start(cfg, Identity::generate())
            .await
            .expect("start");
        let took = started.elapsed();
        assert!(
            took < PROMPT,
            "start() took {took:?} (INITIAL_RTO is {INITIAL_RTO:?})"
        );
        client.close().await;
    })
    .await
    .expect("test timed out");
}
