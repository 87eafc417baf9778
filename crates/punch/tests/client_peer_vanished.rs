//! A peer that registered and then vanished (process gone, socket closed) cannot be
//! punched: the server still introduces it until its registration expires, and
//! `connect` fails with `ConnectError::NoPath` naming the address it tried, after the
//! punching deadline and not before.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch::client::{Client, ClientConfig, ConnectError};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_millis(1500);

fn config(server: SocketAddr, name: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(server, name);
    cfg.bind = (Ipv4Addr::LOCALHOST, 0).into();
    cfg.punch.deadline = DEADLINE;
    cfg
}

#[tokio::test]
async fn vanished_peer_gives_no_path() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let alice = Client::start(config(server.local_addr(), "alice"), Identity::generate())
            .await
            .expect("alice");
        let alice_addr = alice.local_addr();
        drop(alice);
        let bob = Client::start(config(server.local_addr(), "bob"), Identity::generate())
            .await
            .expect("bob");

        let started = Instant::now();
        let err = bob.connect("alice").await.expect_err("alice is gone");
        let took = started.elapsed();
        match &err {
            ConnectError::NoPath {
                deadline, tried, ..
            } => {
                assert_eq!(*deadline, DEADLINE);
                assert!(
                    tried.iter().any(|a| a.port() == alice_addr.port()),
                    "names the address tried: {tried:?}"
                );
            }
            other => panic!("expected NoPath, got {other:?}"),
        }
        assert!(took >= DEADLINE, "failed before the deadline: {took:?}");
        assert!(took < DEADLINE + Duration::from_secs(2), "took {took:?}");
        assert!(err.to_string().contains("no direct path"), "{err}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn no_path_names_each_address_once() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let alice = Client::start(config(server.local_addr(), "alice"), Identity::generate())
            .await
            .expect("alice");
        drop(alice);
        let bob = Client::start(config(server.local_addr(), "bob"), Identity::generate())
            .await
            .expect("bob");
        match bob.connect("alice").await {
            Err(ConnectError::NoPath { tried, .. }) => {
                let mut unique = tried.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(tried.len(), unique.len(), "tried {tried:?}");
                assert!(!tried.is_empty());
            }
            other => panic!("expected NoPath, got {other:?}"),
        }
    })
    .await
    .expect("test timed out");
}
