//! The TCP relay: with punching off, both sides meet through the server's main port and
//! run TLS end to end through the splice; messages go both ways. The UDP relay's limits
//! hold for it too: the rate slows the sender, and the volume limit ends the session with
//! the reason told to both peers.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punch::chat::{read_message, send_message};
use punch::client::{Client, ClientConfig, PathKind, RelayMode, TransportMode};
use punch::identity::Identity;
use punch::punch_proto::relay::RelayConfig;
use punch::tcp::punch::TcpLink;
use punch::tcp::server::{TcpServerConfig, TcpServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server with these relay limits, and bob's and alice's ends of a relayed connection
/// (keeping the clients and the server alive alongside).
async fn relayed_pair(
    limits: RelayConfig,
) -> (
    TcpServerHandle,
    (Client, Client),
    TcpLink,
    TcpLink,
    (Identity, Identity),
) {
    let cfg = TcpServerConfig {
        relay_limits: limits,
        ..TcpServerConfig::default()
    };
    let server = TcpServerHandle::spawn(lo(), lo(), cfg).await.unwrap();
    let (m, a) = (server.main_addr(), server.assist_addr());
    let (ia, ib) = (Identity::generate(), Identity::generate());
    // Relay only: no punching.
    let config = |name: &str| {
        let mut cfg = ClientConfig::new(m, name);
        cfg.transport = TransportMode::Tcp;
        cfg.tcp_assist_port = Some(a.port());
        cfg.relay = RelayMode::Only;
        cfg
    };
    let alice = Client::start(config("alice"), ia.clone()).await.unwrap();
    let bob = Client::start(config("bob"), ib.clone()).await.unwrap();
    let (to_alice, from_bob) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(bob.connect("alice"), alice.next_incoming())
    })
    .await
    .expect("relay within 10 s");
    let to_alice = to_alice
        .expect("bob connects")
        .into_tcp()
        .expect("over TCP");
    let from_bob = from_bob
        .expect("alice expected bob")
        .into_tcp()
        .expect("over TCP");
    (server, (alice, bob), to_alice, from_bob, (ia, ib))
}

#[tokio::test]
async fn tcp_pair_meets_through_the_relay() {
    let (_server, _clients, mut to_alice, mut from_bob, (ia, ib)) =
        relayed_pair(RelayConfig::default()).await;
    assert_eq!(to_alice.path.kind, PathKind::Relay);
    assert_eq!(from_bob.path.kind, PathKind::Relay);
    assert_eq!(to_alice.key, ia.public_key());
    assert_eq!(from_bob.key, ib.public_key());

    send_message(&mut to_alice.stream, "via relay")
        .await
        .unwrap();
    let got = read_message(&mut from_bob.stream).await.unwrap();
    assert_eq!(got.as_deref(), Some("via relay"));
    send_message(&mut from_bob.stream, "back").await.unwrap();
    let got = read_message(&mut to_alice.stream).await.unwrap();
    assert_eq!(got.as_deref(), Some("back"));
}

#[tokio::test]
async fn the_rate_limit_slows_a_relayed_stream() {
    // 125 000 bytes/s (1 Mbit/s) with one second's burst: 375 000 bytes need about 2 s.
    let limits = RelayConfig {
        rate: 125_000,
        ..RelayConfig::default()
    };
    let (_server, _clients, mut to_alice, mut from_bob, _) = relayed_pair(limits).await;
    let total = 375_000;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        to_alice.stream.write_all(&vec![7u8; total]).await.unwrap();
        to_alice.stream.flush().await.unwrap();
        to_alice
    });
    let mut got = vec![0u8; total];
    tokio::time::timeout(
        Duration::from_secs(10),
        from_bob.stream.read_exact(&mut got),
    )
    .await
    .expect("all bytes within 10 s")
    .unwrap();
    let took = started.elapsed();
    assert!(got.iter().all(|&b| b == 7), "bytes changed on the way");
    assert!(
        took >= Duration::from_millis(1500),
        "375 000 bytes at 125 000 bytes/s (+1 s burst) took only {took:?}"
    );
    let _ = writer.await;
}

#[tokio::test]
async fn the_volume_limit_ends_the_session_and_both_peers_hear_why() {
    let limits = RelayConfig {
        max_bytes: 64 * 1024,
        ..RelayConfig::default()
    };
    let (_server, _clients, mut to_alice, mut from_bob, _) = relayed_pair(limits).await;
    let mut end_bob = to_alice.relay_end.take().expect("a relayed connection");
    let mut end_alice = from_bob.relay_end.take().expect("a relayed connection");
    // Alice reads until the relay cuts the stream; bob writes more than the limit.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0;
        while let Ok(k) = from_bob.stream.read(&mut buf).await {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        to_alice.stream.write_all(&vec![1u8; 256 * 1024]),
    )
    .await;
    let read = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("alice's stream ends")
        .unwrap();
    assert!(
        read < 256 * 1024,
        "alice read {read} bytes past a 64 KiB limit"
    );
    for end in [&mut end_bob, &mut end_alice] {
        let why = end.reason(Duration::from_secs(5)).await;
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("relay limit reached")),
            "{why:?}"
        );
    }
}

#[tokio::test]
async fn an_idle_relayed_session_ends_with_its_reason() {
    let limits = RelayConfig {
        idle_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let (_server, _clients, mut to_alice, mut from_bob, _) = relayed_pair(limits).await;
    let mut end = to_alice.relay_end.take().expect("a relayed connection");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), from_bob.stream.read(&mut buf))
        .await
        .expect("the relay closes an idle session");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let why = end.reason(Duration::from_secs(5)).await;
    assert!(
        why.as_deref().is_some_and(|w| w.contains("idle")),
        "{why:?}"
    );
}
