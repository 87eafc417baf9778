//! `punch demo`: a server and two peers on loopback in one process, no flags, no root.
//!
//! Shows the whole path a real chat takes (register, introduction, punching, pinned-key
//! QUIC, messages both ways) and prints which path the peers used.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use punch::client::{Client, ClientConfig, PathKind};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};

/// Whole demo must finish within this long, or it reports what hung.
const DEMO_TIMEOUT: Duration = Duration::from_secs(20);

/// Run the demo, printing each step.
pub async fn run() -> Result<()> {
    tokio::time::timeout(DEMO_TIMEOUT, steps())
        .await
        .context("the demo did not finish in time")?
}

async fn steps() -> Result<()> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = ServerHandle::spawn(loopback, ServerConfig::default())
        .await
        .context("starting the server")?;
    println!("1. rendezvous server listening on {}", server.local_addr());

    let mut cfg = ClientConfig::new(server.local_addr(), "alice");
    cfg.bind = loopback;
    let alice = Client::start(cfg.clone(), Identity::generate())
        .await
        .context("starting alice")?;
    println!(
        "2. alice registered: public address {}, key {}",
        alice.public_addr(),
        alice.public_key()
    );
    cfg.name = "bob".into();
    let bob = Client::start(cfg, Identity::generate())
        .await
        .context("starting bob")?;
    println!(
        "   bob registered:   public address {}, key {}",
        bob.public_addr(),
        bob.public_key()
    );

    println!("3. bob asks the server for alice; both punch toward each other");
    let started = Instant::now();
    let to_alice = bob
        .connect("alice")
        .await
        .context("bob connecting to alice")?;
    let Some(to_bob) = alice.next_incoming().await else {
        bail!("alice did not see bob connect");
    };
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let first = to_alice.path.context("connected without a path")?;
    let alice_conn = to_alice
        .quic_connection()
        .context("a QUIC connection")?
        .clone();
    let bob_conn = to_bob
        .quic_connection()
        .context("a QUIC connection")?
        .clone();
    println!(
        "4. connected in {took:.1} ms over the {} path ({}), keys verified both ways",
        first.kind, first.remote
    );
    // With the relay on (the default), the first packets may go through the server while
    // punching finishes; the connection then moves to the direct path underneath.
    let mut path = bob.current_path(&to_alice.key).unwrap_or(first);
    let wait_until = Instant::now() + Duration::from_secs(5);
    while path.kind != PathKind::Direct && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        path = bob.current_path(&to_alice.key).unwrap_or(path);
    }
    println!(
        "   path now: {} to alice's {} address {} (probe rtt {:.2} ms); QUIC rtt {:.2} ms",
        path.kind,
        path.candidate_str(),
        path.remote,
        path.rtt.as_secs_f64() * 1000.0,
        alice_conn.rtt().as_secs_f64() * 1000.0
    );
    if to_bob.key != bob.public_key() || to_alice.key != alice.public_key() {
        bail!("a peer presented an unexpected key");
    }

    let mut s = alice_conn.open_uni().await?;
    punch::chat::send_message(&mut s, "hello alice, this is bob").await?;
    s.finish()?;
    let mut r = bob_conn.accept_uni().await?;
    let got = punch::chat::read_message(&mut r)
        .await?
        .context("no message")?;
    println!("5. alice received: [bob] {got}");

    let mut s = bob_conn.open_uni().await?;
    punch::chat::send_message(&mut s, "hi bob! alice here").await?;
    s.finish()?;
    let mut r = alice_conn.accept_uni().await?;
    let got = punch::chat::read_message(&mut r)
        .await?
        .context("no message")?;
    println!("   bob received:   [alice] {got}");

    let path = bob.current_path(&to_alice.key).unwrap_or(path);
    println!(
        "6. done: both directions delivered over the {} path. Try it across real NATs:",
        path.kind
    );
    println!("     punch server                                  # on a public host");
    println!("     punch chat --server HOST --name alice          # behind one NAT");
    println!("     punch chat --server HOST --name bob --peer alice   # behind another");
    alice.close().await;
    bob.close().await;
    Ok(())
}
