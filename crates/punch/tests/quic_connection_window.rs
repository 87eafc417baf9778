//! A peer cannot make us buffer more than `tls::CONNECTION_WINDOW` of stream data we have
//! not read, however many streams it opens: a client that raised its own send window
//! pushes 12 streams of 1.2 MB (each within its stream window, 14.4 MB in all) to a server
//! that reads none of them, and what reaches the server stops at the connection window.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use punch::identity::{Identity, PublicKey};
use punch::tls::{self, AcceptPeer};
use tokio::time::{sleep, timeout, Instant};

const STREAMS: usize = 12;
const PER_STREAM: usize = 1_200_000;

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

#[tokio::test]
async fn unread_streams_stop_at_the_connection_window() {
    timeout(Duration::from_secs(30), async {
        let server_id = Identity::generate();
        let client_id = Identity::generate();
        let accept: AcceptPeer = Arc::new(|_: &PublicKey| true);
        let config = tls::server_config(&server_id, accept).expect("server config");
        let server = quinn::Endpoint::server(config, loopback()).expect("bind server");
        let server_addr = server.local_addr().unwrap();

        // The client's own limit on what it buffers to send is raised well beyond what it
        // pushes, so only the server's windows can hold it back.
        let mut config = tls::client_config(&client_id, server_id.public_key()).unwrap();
        let mut transport = quinn::TransportConfig::default();
        transport.send_window(64_000_000);
        config.transport_config(Arc::new(transport));
        let client = quinn::Endpoint::client(loopback()).expect("bind client");
        let connecting = client
            .connect_with(config, server_addr, tls::SERVER_NAME)
            .unwrap();
        let incoming = server.accept().await.expect("incoming");
        let (conn, server_conn) = tokio::join!(connecting, incoming);
        let (conn, server_conn) = (conn.expect("client handshake"), server_conn.unwrap());

        let mut writers = Vec::new();
        for _ in 0..STREAMS {
            let mut send = conn.open_uni().await.unwrap();
            writers.push(tokio::spawn(async move {
                let _ = send.write_all(&vec![0x5a; PER_STREAM]).await;
                send // kept open: finishing is not needed, and the server never reads
            }));
        }

        // Until the bytes arriving at the server come near the window and stop growing (the
        // sender is blocked); a busy machine's pause below it does not end the wait.
        let window = tls::CONNECTION_WINDOW as u64;
        let received = || server_conn.stats().udp_rx.bytes;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = received();
        loop {
            sleep(Duration::from_millis(300)).await;
            let now = received();
            if (now == last && now >= window - window / 10) || Instant::now() > deadline {
                last = now;
                break;
            }
            last = now;
        }
        let total = (STREAMS * PER_STREAM) as u64;
        assert!(
            total > window + window / 4,
            "the test pushes well beyond the window"
        );
        // Stream data up to the window, plus packet headers and the handshake.
        assert!(
            last <= window + window / 10,
            "{last} bytes reached the server, window {window}"
        );
        assert!(
            last >= window - window / 10,
            "only {last} bytes reached the server: the sender did not get to the window"
        );
        assert!(
            server_conn.close_reason().is_none(),
            "the connection stays up"
        );
        for w in writers {
            w.abort();
        }
        conn.close(0u32.into(), b"done");
    })
    .await
    .expect("test timed out");
}
