//! A client over TCP alone keeps its control connection: when the server goes away the
//! client reports it, and when the server is back on the same ports the client connects
//! and registers again by itself (backoff from 0.5 s), so a newcomer can reach it.

use std::net::SocketAddr;
use std::time::Duration;

use punch::client::{Client, ClientConfig, ClientEvent, TransportMode};
use punch::identity::Identity;
use punch::tcp::server::{TcpServerConfig, TcpServerHandle};
use tokio::time::timeout;

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(main: SocketAddr, assist: SocketAddr, name: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(main, name);
    cfg.transport = TransportMode::Tcp;
    cfg.tcp_assist_port = Some(assist.port());
    cfg
}

async fn next_matching(client: &Client, want: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
    loop {
        let ev = client.next_event().await.expect("client open");
        if want(&ev) {
            return ev;
        }
    }
}

#[tokio::test]
async fn the_control_connection_comes_back_after_a_server_restart() {
    let server = TcpServerHandle::spawn(lo(), lo(), TcpServerConfig::default())
        .await
        .unwrap();
    let (main, assist) = (server.main_addr(), server.assist_addr());
    let alice = Client::start(config(main, assist, "alice"), Identity::generate())
        .await
        .expect("alice registers over TCP");
    drop(server);
    let lost = timeout(
        Duration::from_secs(5),
        next_matching(&alice, |e| matches!(e, ClientEvent::ServerLost)),
    )
    .await;
    assert!(lost.is_ok(), "alice did not notice the server going away");
    // The server comes back, empty, on the same ports.
    let _server = TcpServerHandle::spawn(main, assist, TcpServerConfig::default())
        .await
        .expect("the same ports again");
    let back = timeout(
        Duration::from_secs(10),
        next_matching(&alice, |e| matches!(e, ClientEvent::ServerBack { .. })),
    )
    .await;
    assert!(back.is_ok(), "alice did not register again");
    // Her registration is really back: bob reaches her.
    let bob = Client::start(config(main, assist, "bob"), Identity::generate())
        .await
        .expect("bob registers");
    let pc = timeout(Duration::from_secs(10), bob.connect("alice"))
        .await
        .expect("in time")
        .expect("bob reaches alice after the restart");
    assert_eq!(pc.key, alice.public_key());
}
