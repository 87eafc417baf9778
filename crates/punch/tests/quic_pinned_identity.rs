//! QUIC between two loopback endpoints authenticates both peers by their pinned Ed25519 keys:
//! the right keys connect and see each other, a wrong server key or a refused client key fails.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use punch::identity::{Identity, PublicKey};
use punch::tls::{self, AcceptPeer};
use tokio::time::timeout;

/// Upper bound for every test: loopback handshakes take milliseconds.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

fn accept_only(keys: impl IntoIterator<Item = PublicKey>) -> AcceptPeer {
    let keys: HashSet<PublicKey> = keys.into_iter().collect();
    Arc::new(move |key| keys.contains(key))
}

fn server(identity: &Identity, accept: AcceptPeer) -> quinn::Endpoint {
    let config = tls::server_config(identity, accept).expect("server config");
    quinn::Endpoint::server(config, loopback()).expect("bind server")
}

fn client() -> quinn::Endpoint {
    quinn::Endpoint::client(loopback()).expect("bind client")
}

#[tokio::test]
async fn right_keys_connect_and_carry_bytes_both_ways() {
    timeout(TEST_TIMEOUT, async {
        let server_id = Identity::generate();
        let client_id = Identity::generate();
        let server = server(&server_id, accept_only([client_id.public_key()]));
        let server_addr = server.local_addr().unwrap();

        let server_task = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("handshake");
            let peer = tls::peer_public_key(&conn);
            let (mut send, mut recv) = conn.accept_bi().await.expect("accept stream");
            let request = recv.read_to_end(1024).await.expect("read request");
            send.write_all(b"pong from server").await.unwrap();
            send.finish().unwrap();
            // Keep the connection until the client has read the answer and closed.
            conn.closed().await;
            (peer, request)
        });

        let client_ep = client();
        let config = tls::client_config(&client_id, server_id.public_key()).unwrap();
        let conn = client_ep
            .connect_with(config, server_addr, tls::SERVER_NAME)
            .unwrap()
            .await
            .expect("client handshake");
        assert_eq!(tls::peer_public_key(&conn), Some(server_id.public_key()));
        assert_eq!(
            conn.handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol),
            Some(tls::ALPN.to_vec())
        );

        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"ping from client").await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(1024).await.expect("read answer");
        assert_eq!(answer, b"pong from server");
        conn.close(0u32.into(), b"done");

        let (server_saw, request) = server_task.await.unwrap();
        assert_eq!(server_saw, Some(client_id.public_key()));
        assert_eq!(request, b"ping from client");
        client_ep.wait_idle().await;
    })
    .await
    .expect("test timed out");
}

/// The QUIC error code of a TLS access_denied alert (RFC 9001 §4.8: 0x100 + alert 49, RFC 8446
/// §6.2), which rustls sends when a verifier refuses the presented key.
fn access_denied() -> quinn::TransportErrorCode {
    quinn::TransportErrorCode::crypto(49)
}

/// The TLS alert code of a connection error, whichever side raised it.
fn error_code(err: &quinn::ConnectionError) -> Option<quinn::TransportErrorCode> {
    match err {
        quinn::ConnectionError::TransportError(e) => Some(e.code),
        quinn::ConnectionError::ConnectionClosed(close) => Some(close.error_code),
        _ => None,
    }
}

#[tokio::test]
async fn client_expecting_another_key_fails_the_handshake() {
    timeout(TEST_TIMEOUT, async {
        let server_id = Identity::generate();
        let client_id = Identity::generate();
        let impostor_expected = Identity::generate().public_key();
        let server = server(&server_id, accept_only([client_id.public_key()]));
        let server_addr = server.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let incoming = server.accept().await.expect("incoming");
            incoming.await.map(|_| ())
        });

        let config = tls::client_config(&client_id, impostor_expected).unwrap();
        let err = client()
            .connect_with(config, server_addr, tls::SERVER_NAME)
            .unwrap()
            .await
            .expect_err("client must refuse a server with another key");
        // The client itself detected the mismatch.
        assert!(
            matches!(err, quinn::ConnectionError::TransportError(ref e) if e.code == access_denied()),
            "unexpected client error: {err:?}"
        );
        let server_err = server_task.await.unwrap().expect_err("server must not complete");
        assert_eq!(error_code(&server_err), Some(access_denied()), "{server_err:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn server_refusing_the_client_key_rejects_the_connection() {
    timeout(TEST_TIMEOUT, async {
        let server_id = Identity::generate();
        let client_id = Identity::generate();
        let someone_else = Identity::generate().public_key();
        let server = server(&server_id, accept_only([someone_else]));
        let server_addr = server.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let incoming = server.accept().await.expect("incoming");
            incoming.await.map(|_| ())
        });

        let config = tls::client_config(&client_id, server_id.public_key()).unwrap();
        let connecting = client()
            .connect_with(config, server_addr, tls::SERVER_NAME)
            .unwrap();
        // The server itself refused the key.
        let server_err = server_task.await.unwrap().expect_err("server must refuse the client");
        assert!(
            matches!(server_err, quinn::ConnectionError::TransportError(ref e) if e.code == access_denied()),
            "unexpected server error: {server_err:?}"
        );
        // In TLS 1.3 the client finishes its side of the handshake before the server has checked
        // its key (RFC 8446 §4.4.2), so `connecting` may succeed; the connection is then closed
        // by the server's alert.
        let client_err = match connecting.await {
            Err(e) => e,
            Ok(conn) => conn.closed().await,
        };
        assert_eq!(error_code(&client_err), Some(access_denied()), "{client_err:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn refused_stranger_does_not_block_a_known_peer() {
    timeout(TEST_TIMEOUT, async {
        let server_id = Identity::generate();
        let known = Identity::generate();
        let stranger = Identity::generate();
        let server = server(&server_id, accept_only([known.public_key()]));
        let server_addr = server.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let first = server.accept().await.expect("incoming").await;
            let second = server.accept().await.expect("incoming").await;
            (
                first.map(|c| tls::peer_public_key(&c)),
                second.map(|c| tls::peer_public_key(&c)),
            )
        });
        let ep = client();
        let stranger_conn = ep
            .connect_with(
                tls::client_config(&stranger, server_id.public_key()).unwrap(),
                server_addr,
                tls::SERVER_NAME,
            )
            .unwrap();
        if let Ok(conn) = stranger_conn.await {
            conn.closed().await;
        }
        let known_conn = ep
            .connect_with(
                tls::client_config(&known, server_id.public_key()).unwrap(),
                server_addr,
                tls::SERVER_NAME,
            )
            .unwrap()
            .await
            .expect("known client connects");
        let (first, second) = server_task.await.unwrap();
        assert!(first.is_err());
        assert_eq!(second.unwrap(), Some(known.public_key()));
        known_conn.close(0u32.into(), b"");
    })
    .await
    .expect("test timed out");
}
