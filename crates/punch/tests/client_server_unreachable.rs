//! A client whose server never answers gives up after `server_timeout` with
//! `ClientError::ServerUnreachable`, having retransmitted its registration meanwhile.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch::client::{Client, ClientConfig, ClientError};
use punch::identity::Identity;
use punch_proto::wire::Frame;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);
const SERVER_TIMEOUT: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn silent_server_is_unreachable() {
    timeout(TEST_TIMEOUT, async {
        // A "server" that reads and never answers.
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let mut cfg = ClientConfig::new(silent_addr, "alice");
        cfg.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        cfg.server_timeout = SERVER_TIMEOUT;

        let started = Instant::now();
        let result = Client::start(cfg, Identity::generate()).await;
        let took = started.elapsed();
        match result {
            Err(ClientError::ServerUnreachable(addr, after)) => {
                assert_eq!(addr, silent_addr);
                assert_eq!(after, SERVER_TIMEOUT);
            }
            Err(other) => panic!("expected ServerUnreachable, got {other}"),
            Ok(_) => panic!("a silent server cannot register anyone"),
        }
        assert!(took >= SERVER_TIMEOUT, "gave up early: {took:?}");
        assert!(took < SERVER_TIMEOUT * 3, "gave up late: {took:?}");

        // What the client sent meanwhile: registrations for "alice", retransmitted.
        let mut registers = 0;
        let mut buf = [0u8; 1500];
        while let Ok((n, _)) = silent.try_recv_from(&mut buf) {
            match Frame::decode(&buf[..n]) {
                Ok(Frame::Register { name, .. }) => {
                    assert_eq!(name, "alice");
                    registers += 1;
                }
                other => panic!("unexpected datagram: {other:?}"),
            }
        }
        assert!(
            registers >= 2,
            "the registration was retransmitted ({registers} sent)"
        );
    })
    .await
    .expect("test timed out");
}
