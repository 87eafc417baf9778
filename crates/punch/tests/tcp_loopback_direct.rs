//! TCP punching on loopback: a server's main + assist listeners and two clients; the
//! requester reaches the target directly, TLS pins both keys, and a message goes each way.
use std::net::SocketAddr;
use std::time::Duration;

use punch::chat::{read_message, send_message};
use punch::client::{Client, ClientConfig, PathKind, Transport, TransportMode};
use punch::identity::Identity;
use punch::tcp::server::{TcpServerConfig, TcpServerHandle};

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn tcp_pair_connects_directly_with_pinned_keys() {
    let server = TcpServerHandle::spawn(lo(), lo(), TcpServerConfig::default())
        .await
        .unwrap();
    let (m, a) = (server.main_addr(), server.assist_addr());
    let (ia, ib) = (Identity::generate(), Identity::generate());
    let config = |name: &str| {
        let mut cfg = ClientConfig::new(m, name);
        cfg.transport = TransportMode::Tcp;
        cfg.tcp_assist_port = Some(a.port());
        cfg
    };
    let alice = Client::start(config("alice"), ia.clone()).await.unwrap();
    let bob = Client::start(config("bob"), ib.clone()).await.unwrap();
    assert_eq!(alice.transport(), Transport::Tcp);

    let (to_alice, from_bob) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(bob.connect("alice"), alice.next_incoming())
    })
    .await
    .expect("connect within 10 s");
    let to_alice = to_alice.expect("bob connects");
    assert_eq!(to_alice.transport(), Transport::Tcp);
    let mut to_alice = to_alice.into_tcp().expect("over TCP");
    let mut from_bob = from_bob
        .expect("alice expected bob")
        .into_tcp()
        .expect("over TCP");
    assert_eq!(to_alice.path.kind, PathKind::Direct);
    assert_eq!(to_alice.key, ia.public_key());
    assert_eq!(from_bob.key, ib.public_key());
    assert_eq!(from_bob.name, "bob");

    send_message(&mut to_alice.stream, "hi alice")
        .await
        .unwrap();
    let got = read_message(&mut from_bob.stream).await.unwrap();
    assert_eq!(got.as_deref(), Some("hi alice"));
    send_message(&mut from_bob.stream, "hi bob").await.unwrap();
    let got = read_message(&mut to_alice.stream).await.unwrap();
    assert_eq!(got.as_deref(), Some("hi bob"));
}
