//! Two clients on loopback, introduced by an in-process server, punch and open a QUIC
//! connection: `connect` returns the peer's pinned key and the path it took, the other
//! side hears `Incoming` with the initiator's key, and bytes cross a stream both ways.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::client::{Client, ClientConfig, PathKind, RelayMode};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use punch::tls;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

async fn client(server: SocketAddr, name: &str) -> Client {
    let mut cfg = ClientConfig::new(server, name);
    cfg.bind = loopback();
    // This test is about the punched path: no relay to start on.
    cfg.relay = RelayMode::Never;
    Client::start(cfg, Identity::generate())
        .await
        .unwrap_or_else(|e| panic!("{name} failed to start: {e}"))
}

#[tokio::test]
async fn two_clients_connect_and_exchange_bytes() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn(loopback(), ServerConfig::default())
            .await
            .expect("server");
        let alice = client(server.local_addr(), "alice").await;
        let bob = client(server.local_addr(), "bob").await;
        assert_eq!(
            alice.public_addr(),
            alice.local_addr(),
            "no NAT on loopback"
        );

        let to_alice = bob.connect("alice").await.expect("bob connects to alice");
        assert_eq!(to_alice.name, "alice");
        assert_eq!(to_alice.key, alice.public_key());
        assert_eq!(
            tls::peer_public_key(to_alice.quic_connection().expect("QUIC")),
            Some(alice.public_key()),
            "the key was proven in the handshake"
        );
        let path = to_alice.path.expect("connected on a path");
        assert_eq!(path.kind, PathKind::Direct);
        assert_eq!(path.remote, alice.local_addr());
        assert!(path.candidate.is_some(), "{path:?}");
        // quinn sees a stable virtual address (240/4); the real path is underneath.
        assert!(
            matches!(to_alice.quic_connection().expect("QUIC").remote_address().ip(), std::net::IpAddr::V4(ip) if ip.octets()[0] == 240)
        );

        let to_bob = alice
            .next_incoming()
            .await
            .expect("alice expected an incoming connection");
        assert_eq!(to_bob.name, "bob");
        assert_eq!(to_bob.key, bob.public_key());
        assert_eq!(
            tls::peer_public_key(to_bob.quic_connection().expect("QUIC")),
            Some(bob.public_key())
        );
        assert_eq!(to_bob.path.map(|p| p.remote), Some(bob.local_addr()));

        // bob -> alice on a bidirectional stream, and the answer back.
        let (mut send, mut recv) = to_alice.quic_connection().expect("QUIC").open_bi().await.unwrap();
        send.write_all(b"hello alice").await.unwrap();
        send.finish().unwrap();
        let (mut a_send, mut a_recv) = to_bob.quic_connection().expect("QUIC").accept_bi().await.unwrap();
        assert_eq!(a_recv.read_to_end(1024).await.unwrap(), b"hello alice");
        a_send.write_all(b"hello bob").await.unwrap();
        a_send.finish().unwrap();
        assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello bob");

        bob.close().await;
        alice.close().await;
    })
    .await
    .expect("test timed out");
}
