//! `punch-loadgen quic-plain`: a plain QUIC connection between two hosts that need no
//! traversal, the reference for punch's connect time.
//!
//! Same QUIC stack and the same TLS setup as punch's peer connections (quinn, rustls with
//! Ed25519 raw public keys, through `punch::tls`), so the only difference left is what
//! punch adds: registration lookup, introduction, punching. The exchange is the one
//! `punch bench` makes: the client opens a stream and sends one byte, the server answers
//! with the wall-clock time (ns since the Unix epoch) the byte arrived. Both hosts run on
//! one machine (lab namespaces share its clock), so that stamp minus the client's start
//! is the one-way time to the first application byte delivered.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use clap::Subcommand;
use punch::identity::{Identity, PublicKey};
use punch::tls;
use serde_json::json;

/// Which side to run.
#[derive(Subcommand, Debug)]
pub enum Side {
    /// Accept COUNT connections (then exit); answer each one's first byte with the time it
    /// arrived. Prints {"listening": ADDR, "key": KEY} first: the client needs the key.
    Server {
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:4433")]
        listen: SocketAddr,
        /// Connections to serve before exiting.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Give up after this many seconds without a connection.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Connect, send one byte, print the handshake time and the time to the first byte
    /// delivered (milliseconds from the connect call).
    Client {
        /// The server's ADDR:PORT.
        #[arg(long)]
        server: SocketAddr,
        /// The server's key (its `key` line).
        #[arg(long)]
        key: PublicKey,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
}

/// Nanoseconds since the Unix epoch, now.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    ensure!(
        v.is_finite() && v > 0.0 && v <= 3600.0,
        "--{name} must be between 0 and 3600 seconds, got {v}"
    );
    Ok(Duration::from_secs_f64(v))
}

pub fn run(side: Side) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match side {
            Side::Server {
                listen,
                count,
                timeout,
            } => server(listen, count, seconds("timeout", timeout)?).await,
            Side::Client {
                server,
                key,
                timeout,
            } => {
                let t = seconds("timeout", timeout)?;
                tokio::time::timeout(t, client(server, key))
                    .await
                    .with_context(|| format!("no answer from {server} within {t:?}"))?
            }
        }
    })
}

async fn server(listen: SocketAddr, count: usize, timeout: Duration) -> Result<()> {
    let identity = Identity::generate();
    let accept: tls::AcceptPeer = Arc::new(|_: &PublicKey| true);
    let cfg = tls::server_config(&identity, accept).context("TLS setup")?;
    let endpoint =
        quinn::Endpoint::server(cfg, listen).with_context(|| format!("bind {listen}"))?;
    println!(
        "{}",
        json!({"listening": endpoint.local_addr()?.to_string(), "key": identity.public_key().to_string()})
    );
    for _ in 0..count {
        let Ok(Some(incoming)) = tokio::time::timeout(timeout, endpoint.accept()).await else {
            anyhow::bail!("no connection within {timeout:?}");
        };
        let serve = async {
            let conn = incoming.await?;
            let (mut send, mut recv) = conn.accept_bi().await?;
            let mut byte = [0u8; 1];
            recv.read_exact(&mut byte).await?;
            send.write_all(&wall_ns().to_be_bytes()).await?;
            send.finish()?;
            // The client closes once it has the answer.
            conn.closed().await;
            anyhow::Ok(())
        };
        if let Err(e) = tokio::time::timeout(timeout, serve)
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "connection not finished within {timeout:?}"
                ))
            })
        {
            eprintln!("quic-plain server: {e:#}");
        }
    }
    endpoint.close(0u32.into(), b"done");
    Ok(())
}

async fn client(server: SocketAddr, key: PublicKey) -> Result<()> {
    let identity = Identity::generate();
    let cfg = tls::client_config(&identity, key).context("TLS setup")?;
    let endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .context("binding the client socket")?;
    let start_wall = wall_ns();
    let start = Instant::now();
    let conn = endpoint
        .connect_with(cfg, server, tls::SERVER_NAME)?
        .await
        .with_context(|| format!("QUIC handshake with {server}"))?;
    let handshake = start.elapsed();
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[1]).await?;
    send.finish()?;
    let mut stamp = [0u8; 8];
    recv.read_exact(&mut stamp).await?;
    let echo = start.elapsed();
    let first_byte_ns = u64::from_be_bytes(stamp).saturating_sub(start_wall);
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    println!(
        "{}",
        json!({
            "handshake_ms": handshake.as_secs_f64() * 1e3,
            "first_byte_ms": first_byte_ns as f64 / 1e6,
            "echo_ms": echo.as_secs_f64() * 1e3,
            "rtt_ms": conn.rtt().as_secs_f64() * 1e3,
        })
    );
    Ok(())
}
