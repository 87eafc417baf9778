//! Every receiving socket of a server (one by default, one per worker with `--workers`)
//! has a send-only twin on the same address and port, and every datagram still reaches a
//! receiving socket: each of many clients, asking once and never again, gets its answer
//! from the address it asked. A second server on that port is refused rather than
//! joining them.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use punch::punch_proto::ratelimit::RateLimit;
use punch::punch_proto::stun::{Message, TransactionId};
use punch::server::{ServerConfig, ServerHandle, ServerSockets};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Bound of every test: loopback answers take microseconds.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Client sockets, each from its own port: without the steering the kernel's hash would
/// give about half of them to the twins, which never read.
const CLIENTS: usize = 200;

/// Sockets in this network namespace bound to 127.0.0.1:`port` (`/proc/net/udp`),
/// counted by inode over several reads of the table. The kernel hands the table out a
/// chunk per read call and resumes by position, so a read while other tests' sockets come
/// and go may list a socket twice or skip some (a CI run once saw none of a port's two);
/// the sockets of this port change only when the test itself binds or drops them.
fn bound_on(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    let mut inodes = HashSet::new();
    for _ in 0..5 {
        let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
        inodes.extend(table.lines().skip(1).filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()))
                .then(|| fields.get(9).map(|s| s.to_string()))?
        }));
    }
    inodes.len()
}

#[tokio::test]
async fn the_twin_takes_no_datagram_and_answers_come_from_the_address_asked() {
    twins_take_no_datagram(1).await;
}

#[tokio::test]
async fn with_several_workers_no_twin_takes_a_datagram() {
    twins_take_no_datagram(3).await;
}

async fn twins_take_no_datagram(workers: usize) {
    timeout(TEST_TIMEOUT, async {
        // Every client asks from 127.0.0.1: no per-address limit.
        let cfg = ServerConfig {
            stun_limit: RateLimit::new(0.0, 0.0),
            workers,
            ..ServerConfig::default()
        };
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), cfg)
            .await
            .expect("server");
        let addr = server.local_addr();
        assert_eq!(
            bound_on(addr.port()),
            2 * workers,
            "each receiving socket and its send-only twin"
        );
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let mut id = [0u8; 12];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let req = Message::binding_request(TransactionId::new(id));
            sock.send_to(&req.encode().unwrap(), addr).await.unwrap();
            clients.push((sock, req));
        }
        // One request each, no retransmission: on loopback only a datagram given to the
        // wrong socket goes unanswered.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut answered = HashSet::new();
        for (i, (sock, req)) in clients.iter().enumerate() {
            let mut buf = [0u8; 256];
            let Ok(got) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await else {
                continue;
            };
            let (n, from): (usize, SocketAddr) = got.expect("recv");
            assert_eq!(from, addr, "answer from the address asked");
            let answer = Message::decode(&buf[..n]).expect("a STUN answer");
            assert_eq!(answer.transaction_id, req.transaction_id);
            assert_eq!(answer.mapped_address(), Some(sock.local_addr().unwrap()));
            answered.insert(i);
        }
        assert_eq!(answered.len(), CLIENTS, "every client answered at once");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_port_in_use_is_refused_not_shared() {
    for workers in [1, 2] {
        let any = (Ipv4Addr::LOCALHOST, 0).into();
        let first = ServerSockets::bind_workers(&[(any, None)], None, workers)
            .await
            .expect("bind");
        let port: SocketAddr = first.local_addr();
        assert_eq!(bound_on(port.port()), 2 * workers, "the sockets and twins");
        for second_workers in [1, 2] {
            let second = ServerSockets::bind_workers(&[(port, None)], None, second_workers).await;
            assert!(second.is_err(), "a second server joined the first's port");
        }
        assert_eq!(bound_on(port.port()), 2 * workers);
    }
}
