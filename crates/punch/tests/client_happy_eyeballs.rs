//! Happy Eyeballs toward the server (RFC 8305), on loopback: with both families
//! answering, IPv6 wins; with IPv6 silent, IPv4 wins one attempt delay later; a client
//! registers with the winner and offers its other family as a candidate.

use std::net::SocketAddr;
use std::time::Duration;

use punch::client::eyeballs::{race, ATTEMPT_DELAY};
use punch::client::{Client, ClientConfig, PathKind, RelayMode};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use punch::socket::family::DUAL_STACK_ANY;
use punch::socket::DemuxSocket;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(20);

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
}

/// A dual-stack server on `[::]` (this host must have IPv6 loopback: the test says so
/// if not, rather than pass).
async fn dual_stack_server() -> ServerHandle {
    ServerHandle::spawn(DUAL_STACK_ANY, ServerConfig::default())
        .await
        .expect("a dual-stack server on [::] (does this host have IPv6 loopback?)")
}

#[tokio::test]
async fn ipv6_wins_when_both_families_answer() {
    timeout(TEST_TIMEOUT, async {
        let server = dual_stack_server().await;
        let port = server.local_addr().port();
        let (socket, mut ctl) = DemuxSocket::bind(DUAL_STACK_ANY).await.expect("bind");
        // IPv4 listed first, as a resolver may: IPv6 still goes first.
        let got = race(
            &socket,
            &mut ctl,
            &[v4(port), v6(port)],
            Duration::from_secs(5),
        )
        .await
        .expect("an outcome");
        assert_eq!(got.server, v6(port));
        assert!(got.answered);
        assert_eq!(got.other, Some(v4(port)));
        assert!(got.took < ATTEMPT_DELAY, "no wait for IPv4: {:?}", got.took);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn ipv4_wins_after_the_attempt_delay_when_ipv6_is_silent() {
    timeout(TEST_TIMEOUT, async {
        // The server on IPv4 only; on IPv6 nothing answers at that port... but a closed
        // UDP port answers with ICMP, which is no `<HI!>`: the race waits it out.
        let server = ServerHandle::spawn(v4(0), ServerConfig::default())
            .await
            .expect("server");
        let port = server.local_addr().port();
        let (socket, mut ctl) = DemuxSocket::bind(DUAL_STACK_ANY).await.expect("bind");
        let got = race(
            &socket,
            &mut ctl,
            &[v6(port), v4(port)],
            Duration::from_secs(5),
        )
        .await
        .expect("an outcome");
        assert_eq!(got.server, v4(port));
        assert!(got.answered);
        assert!(
            got.took >= ATTEMPT_DELAY,
            "IPv4 starts one attempt delay after IPv6: {:?}",
            got.took
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_client_registers_over_ipv6_and_offers_its_ipv4_address() {
    timeout(TEST_TIMEOUT, async {
        let server = dual_stack_server().await;
        let port = server.local_addr().port();
        let mut cfg = ClientConfig::new(v4(port), "alice");
        cfg.server_addrs = vec![v4(port), v6(port)];
        cfg.relay = RelayMode::Never;
        let alice = Client::start(cfg, Identity::generate())
            .await
            .expect("alice registers");
        assert_eq!(alice.server_addr(), v6(port));
        assert!(alice.public_addr().is_ipv6(), "{}", alice.public_addr());
        let mut cfg = ClientConfig::new(v4(port), "bob");
        cfg.server_addrs = vec![v4(port), v6(port)];
        cfg.relay = RelayMode::Never;
        let bob = Client::start(cfg, Identity::generate())
            .await
            .expect("bob registers");
        let to_alice = bob.connect("alice").await.expect("bob reaches alice");
        let path = to_alice.path.expect("a path");
        assert_eq!(path.kind, PathKind::Direct);
        assert!(path.remote.is_ipv6(), "IPv6 chosen: {path:?}");
    })
    .await
    .expect("test timed out");
}
