//! A second client that registers a name already held by another key is refused:
//! `Client::start` fails with `ClientError::Refused` naming the name, and the holder keeps
//! it (peers asking for the name still reach the holder's key).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::client::{Client, ClientConfig, ClientError};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn config(server: SocketAddr, name: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(server, name);
    cfg.bind = (Ipv4Addr::LOCALHOST, 0).into();
    cfg
}

#[tokio::test]
async fn second_key_for_a_name_is_refused() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let holder = Client::start(config(server.local_addr(), "alice"), Identity::generate())
            .await
            .expect("first alice registers");

        let err =
            match Client::start(config(server.local_addr(), "alice"), Identity::generate()).await {
                Err(e) => e,
                Ok(_) => panic!("a second key must not get the name"),
            };
        match &err {
            ClientError::Refused { reason, .. } => {
                assert!(reason.contains("alice"), "reason names the name: {reason}")
            }
            other => panic!("expected Refused, got {other}"),
        }
        assert!(err.to_string().contains("alice"), "{err}");

        // The name still leads to the holder.
        let bob = Client::start(config(server.local_addr(), "bob"), Identity::generate())
            .await
            .expect("bob");
        let pc = bob.connect("alice").await.expect("bob reaches alice");
        assert_eq!(pc.key, holder.public_key());
        bob.close().await;
        holder.close().await;
    })
    .await
    .expect("test timed out");
}
