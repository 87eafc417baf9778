//! Asking for a name nobody registered fails at once with the server's refusal,
//! `ConnectError::Refused { code: ErrorCode::UnknownPeer, .. }`, well before the server timeout, and
//! leaves the client usable.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punch::client::{Client, ClientConfig, ConnectError};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};
use punch_proto::wire::ErrorCode;
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The answer is one loopback round trip; a second is generous, and far from the
/// default five-second server timeout the failure must not wait for.
const QUICK: Duration = Duration::from_secs(1);

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

#[tokio::test]
async fn unknown_peer_is_refused_quickly() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn(loopback(), ServerConfig::default())
            .await
            .expect("server");
        let mut cfg = ClientConfig::new(server.local_addr(), "bob");
        cfg.bind = loopback();
        assert!(cfg.server_timeout > QUICK * 2);
        let bob = Client::start(cfg, Identity::generate()).await.expect("bob");

        let started = Instant::now();
        let err = bob
            .connect("nobody")
            .await
            .expect_err("nobody is registered");
        let took = started.elapsed();
        match &err {
            ConnectError::Refused {
                code: ErrorCode::UnknownPeer,
                reason,
            } => {
                assert!(reason.contains("nobody"), "reason names the peer: {reason}")
            }
            other => panic!("expected Refused(UnknownPeer, _), got {other:?}"),
        }
        assert!(took < QUICK, "took {took:?}");
        assert!(err.to_string().contains("unknown"), "{err}");

        // Asking again gets the same answer: nothing was left behind.
        let again = bob.connect("nobody").await.expect_err("still unknown");
        assert!(matches!(
            again,
            ConnectError::Refused {
                code: ErrorCode::UnknownPeer,
                ..
            }
        ));
    })
    .await
    .expect("test timed out");
}
