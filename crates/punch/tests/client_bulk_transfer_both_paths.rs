//! A bulk transfer between two clients on loopback arrives whole, over the relay and over
//! the direct path. Large enough that quinn sends GSO trains: on the relay path every
//! segment carries its own relay header, the server forwards trains as trains, and the
//! receiver reads them back (GRO) and unwraps each datagram.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::client::{Client, ClientConfig, RelayMode};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Enough for many full congestion windows of GSO trains.
const BYTES: usize = 16 * 1024 * 1024;

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

async fn client(server: SocketAddr, name: &str, relay: RelayMode) -> Client {
    let mut cfg = ClientConfig::new(server, name);
    cfg.bind = loopback();
    cfg.relay = relay;
    Client::start(cfg, Identity::generate())
        .await
        .unwrap_or_else(|e| panic!("{name} failed to start: {e}"))
}

/// A pattern that changes with the offset, so lost, repeated or reordered bytes show.
fn byte_at(i: usize) -> u8 {
    (i % 251) as u8
}

async fn transfer(relay: RelayMode, expect_path: &str) {
    let server = ServerHandle::spawn(loopback(), ServerConfig::default())
        .await
        .expect("server");
    let alice = client(server.local_addr(), "alice", relay).await;
    let bob = client(server.local_addr(), "bob", relay).await;

    let to_alice = bob.connect("alice").await.expect("bob connects to alice");
    assert_eq!(to_alice.path.map(|p| p.kind.as_str()), Some(expect_path));
    let to_bob = alice
        .next_incoming()
        .await
        .expect("alice expected an incoming connection");

    let data: Vec<u8> = (0..BYTES).map(byte_at).collect();
    let (mut send, _recv) = to_alice
        .quic_connection()
        .expect("QUIC")
        .open_bi()
        .await
        .unwrap();
    let sender = tokio::spawn(async move {
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
        send
    });
    let (_a_send, mut a_recv) = to_bob
        .quic_connection()
        .expect("QUIC")
        .accept_bi()
        .await
        .unwrap();
    let got = a_recv.read_to_end(BYTES + 1).await.unwrap();
    assert_eq!(got.len(), BYTES);
    assert!(
        got.iter().enumerate().all(|(i, b)| *b == byte_at(i)),
        "bytes arrived altered"
    );
    drop(sender.await.unwrap());
    // Path MTU discovery ran (quinn starts at 1,200 bytes and probes upward only on a
    // socket that cannot fragment): on loopback it reaches punch's bound, which leaves room
    // for the relay header, so the relayed datagrams fit too.
    let mtu = to_alice
        .quic_connection()
        .expect("QUIC")
        .stats()
        .path
        .current_mtu;
    assert_eq!(
        mtu,
        punch::tls::MAX_QUIC_PAYLOAD,
        "path MTU after the transfer"
    );

    bob.close().await;
    alice.close().await;
}

#[tokio::test]
async fn bulk_transfer_over_the_relay_arrives_whole() {
    timeout(TEST_TIMEOUT, transfer(RelayMode::Only, "relay"))
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn bulk_transfer_over_the_direct_path_arrives_whole() {
    timeout(TEST_TIMEOUT, transfer(RelayMode::Never, "direct"))
        .await
        .expect("test timed out");
}
