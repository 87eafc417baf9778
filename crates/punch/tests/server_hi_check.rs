//! The server answers the netcat liveness check: `<Hi!>` with `<HI!>`, and a line
//! (`<Hi!>\n`, `<Hi!>\r\n`) with a line (`<HI!>\n`); near misses get no answer.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::server::{ServerConfig, ServerHandle};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Bound of every test: loopback answers take microseconds.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn ask(sock: &UdpSocket, server: SocketAddr, request: &[u8]) -> Vec<u8> {
    sock.send_to(request, server).await.expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).await.expect("recv");
    assert_eq!(from, server);
    buf[..n].to_vec()
}

#[tokio::test]
async fn hi_is_answered_with_hi() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = server.local_addr();
        assert_eq!(ask(&sock, addr, b"<Hi!>").await, b"<HI!>");
        assert_eq!(ask(&sock, addr, b"<Hi!>\n").await, b"<HI!>\n");
        assert_eq!(ask(&sock, addr, b"<Hi!>\r\n").await, b"<HI!>\n");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn near_misses_get_no_answer() {
    timeout(TEST_TIMEOUT, async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = server.local_addr();
        for miss in [
            &b"<hi!>"[..],
            b"<HI!>",
            b"<Hi!> ",
            b"<Hi!>\n\n",
            b" <Hi!>",
            b"<Hi!",
        ] {
            sock.send_to(miss, addr).await.unwrap();
        }
        // Datagrams on one loopback socket pair arrive in order: the first answer is the
        // one to the real check, so none of the near misses was answered.
        assert_eq!(ask(&sock, addr, b"<Hi!>").await, b"<HI!>");
    })
    .await
    .expect("test timed out");
}
