//! When punching ends without a direct path, the application hears `DirectFailed` for
//! that peer, while the connection carries on over the relay. Here both clients report a
//! symmetric NAT, so punching is ruled out at the introduction; a pair that punches
//! fine hears no such event.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::client::{Client, ClientConfig, ClientEvent, PathKind, RelayMode};
use punch::identity::Identity;
use punch::punch_proto::nat::Classic;
use punch::server::{ServerConfig, ServerHandle};
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

async fn client(server: SocketAddr, name: &str) -> Client {
    let mut cfg = ClientConfig::new(server, name);
    cfg.bind = loopback();
    cfg.relay = RelayMode::Auto;
    Client::start(cfg, Identity::generate())
        .await
        .unwrap_or_else(|e| panic!("{name} failed to start: {e}"))
}

/// Events until `until` matches one (which is returned), or `None` after `wait`.
async fn find_event(
    c: &Client,
    wait: Duration,
    until: impl Fn(&ClientEvent) -> bool,
) -> Option<ClientEvent> {
    timeout(wait, async {
        loop {
            match c.next_event().await {
                Some(ev) if until(&ev) => return Some(ev),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn ruled_out_punching_is_reported_and_the_relay_carries_on() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn(loopback(), ServerConfig::default())
            .await
            .expect("server");
        let alice = client(server.local_addr(), "alice").await;
        let bob = client(server.local_addr(), "bob").await;
        alice.set_nat(Classic::Symmetric).await;
        bob.set_nat(Classic::Symmetric).await;
        // The server learns the types from the next datagrams; give them a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let to_alice = bob.connect("alice").await.expect("bob reaches alice");
        assert_eq!(
            to_alice.path.map(|p| p.kind),
            Some(PathKind::Relay),
            "{:?}",
            to_alice.path
        );
        let failed = find_event(&bob, Duration::from_secs(3), |ev| {
            matches!(ev, ClientEvent::DirectFailed { .. })
        })
        .await;
        match failed {
            Some(ClientEvent::DirectFailed { peer, reason }) => {
                assert_eq!(peer, "alice");
                let reason = reason.to_string();
                assert!(reason.contains("randomise ports"), "{reason}");
            }
            other => panic!("bob expected DirectFailed, got {other:?}"),
        }
        // The relayed connection works.
        let mut send = to_alice
            .quic_connection()
            .expect("QUIC")
            .open_uni()
            .await
            .unwrap();
        send.write_all(b"over the relay").await.unwrap();
        send.finish().unwrap();
        let incoming = find_event(&alice, Duration::from_secs(3), |ev| {
            matches!(ev, ClientEvent::Incoming(_))
        })
        .await;
        let Some(ClientEvent::Incoming(to_bob)) = incoming else {
            panic!("alice expected an incoming connection, got {incoming:?}");
        };
        let mut recv = to_bob
            .quic_connection()
            .expect("QUIC")
            .accept_uni()
            .await
            .unwrap();
        assert_eq!(recv.read_to_end(100).await.unwrap(), b"over the relay");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_punched_pair_hears_no_direct_failed() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn(loopback(), ServerConfig::default())
            .await
            .expect("server");
        let alice = client(server.local_addr(), "alice").await;
        let bob = client(server.local_addr(), "bob").await;
        let _to_alice = bob.connect("alice").await.expect("bob reaches alice");
        let failed = find_event(&bob, Duration::from_secs(2), |ev| {
            matches!(ev, ClientEvent::DirectFailed { .. })
        })
        .await;
        assert!(failed.is_none(), "unexpected {failed:?}");
        let path = bob.current_path(&alice.public_key()).expect("a path");
        assert_eq!(path.kind, PathKind::Direct);
    })
    .await
    .expect("test timed out");
}
