//! A name hijack across a server restart is refused by the peer, not trusted: bob meets
//! alice and keeps her key in his `known_peers` file; the server restarts and a second key
//! registers "alice" before alice refreshes; bob (started again, same file) asks for alice
//! and is refused with the file and line to remove, and the impostor hears nothing. With
//! `accept_new_key` for that name the new key is taken and replaces the old one in the file.
//! Over UDP and over TCP (the two transports share the file).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use punch::client::{Client, ClientConfig, ClientEvent, ConnectError, TransportMode};
use punch::identity::Identity;
use punch::known_peers::KNOWN_PEERS_FILE;
use punch::server::{ServerConfig, ServerHandle};
use punch::tcp::server::{TcpServerConfig, TcpServerHandle};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

/// A temporary home, removed on drop (also when the test fails).
struct Home(PathBuf);

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn home(test: &str) -> Home {
    let dir = std::env::temp_dir().join(format!("punch-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp home");
    Home(dir)
}

/// The two servers of a transport, started and restarted on the same ports.
enum Servers {
    Udp(ServerHandle),
    Tcp(TcpServerHandle),
}

impl Servers {
    /// Start on `at` (the ports of a server just dropped, whose tasks may take a moment
    /// to let them go), or on fresh ports.
    async fn start(tcp: bool, at: Option<(SocketAddr, SocketAddr)>) -> Servers {
        let (main, assist) = at.unwrap_or((loopback(), loopback()));
        let mut tries = 0;
        loop {
            let r = if tcp {
                TcpServerHandle::spawn(main, assist, TcpServerConfig::default())
                    .await
                    .map(Servers::Tcp)
            } else {
                ServerHandle::spawn(main, ServerConfig::default())
                    .await
                    .map(Servers::Udp)
            };
            match r {
                Ok(s) => return s,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("server on {main}: {e}"),
            }
        }
    }

    fn addrs(&self) -> (SocketAddr, SocketAddr) {
        match self {
            Servers::Udp(s) => (s.local_addr(), s.local_addr()),
            Servers::Tcp(s) => (s.main_addr(), s.assist_addr()),
        }
    }
}

async fn client(
    servers: &Servers,
    name: &str,
    id: Identity,
    known: Option<&Path>,
    accept: &[&str],
) -> Client {
    let (main, assist) = servers.addrs();
    let mut cfg = ClientConfig::new(main, name);
    cfg.bind = loopback();
    if let Servers::Tcp(_) = servers {
        cfg.transport = TransportMode::Tcp;
        cfg.tcp_assist_port = Some(assist.port());
    }
    cfg.known_peers = known.map(Path::to_path_buf);
    cfg.accept_new_key = accept.iter().map(|s| s.to_string()).collect();
    timeout(STEP, Client::start(cfg, id))
        .await
        .expect("start in time")
        .unwrap_or_else(|e| panic!("{name} failed to start: {e}"))
}

async fn hijack_is_refused(tcp: bool) {
    let dir = home(if tcp { "hijack-tcp" } else { "hijack-udp" });
    let file = dir.0.join(KNOWN_PEERS_FILE);
    let servers = Servers::start(tcp, None).await;
    let alice_id = Identity::generate();
    let alice_key = alice_id.public_key();
    let alice = client(&servers, "alice", alice_id, None, &[]).await;

    // Bob meets alice: her key goes into his file.
    let bob_id = Identity::generate();
    let bob = client(&servers, "bob", bob_id.clone(), Some(&file), &[]).await;
    let pc = timeout(STEP, bob.connect("alice"))
        .await
        .expect("in time")
        .expect("bob reaches alice");
    assert_eq!(pc.key, alice_key);
    let text = std::fs::read_to_string(&file).expect("bob kept alice's key");
    assert!(text.contains(&alice_key.to_string()), "{text}");
    drop((pc, bob));

    // The server restarts, empty; an impostor registers "alice" first.
    let at = servers.addrs();
    drop(servers);
    let servers = Servers::start(tcp, Some(at)).await;
    let impostor_id = Identity::generate();
    let impostor_key = impostor_id.public_key();
    let impostor = client(&servers, "alice", impostor_id, None, &[]).await;

    // Bob, started again with his file, asks for alice: refused, and told where to look.
    let bob = client(&servers, "bob", bob_id.clone(), Some(&file), &[]).await;
    let err = timeout(STEP, bob.connect("alice"))
        .await
        .expect("in time")
        .expect_err("the impostor's key must be refused");
    match &err {
        ConnectError::KeyChanged {
            name,
            known,
            offered,
        } => {
            assert_eq!(name, "alice");
            assert_eq!(known, alice_key.as_bytes());
            assert_eq!(offered, impostor_key.as_bytes());
        }
        other => panic!("expected KeyChanged, got {other}"),
    }
    // Reported as an event too, with the file and the line.
    let ev = timeout(STEP, async {
        loop {
            match bob.next_event().await.expect("bob open") {
                ev @ ClientEvent::PeerKeyRefused { .. } => return ev,
                _ => continue,
            }
        }
    })
    .await
    .expect("a refusal event");
    let ClientEvent::PeerKeyRefused { file: at, .. } = ev else {
        unreachable!()
    };
    assert_eq!(at, Some((file.clone(), 2)), "line 1 is the header");
    // The impostor was never connected to.
    let heard = timeout(Duration::from_millis(500), async {
        loop {
            if let Some(ClientEvent::Incoming(_)) = impostor.next_event().await {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_err(), "the impostor got a connection from bob");
    drop(bob);

    // Bob accepts the new key explicitly: it connects, and the file now holds it.
    let bob = client(&servers, "bob", bob_id, Some(&file), &["alice"]).await;
    let pc = timeout(STEP, bob.connect("alice"))
        .await
        .expect("in time")
        .expect("an accepted change connects");
    assert_eq!(pc.key, impostor_key);
    let text = std::fs::read_to_string(&file).expect("file");
    let last = text.lines().last().expect("a line");
    assert!(last.contains(&impostor_key.to_string()), "{text}");
    drop((pc, bob, impostor, alice, dir));
}

#[tokio::test]
async fn a_hijacked_name_is_refused_over_udp() {
    hijack_is_refused(false).await;
}

#[tokio::test]
async fn a_hijacked_name_is_refused_over_tcp() {
    hijack_is_refused(true).await;
}
