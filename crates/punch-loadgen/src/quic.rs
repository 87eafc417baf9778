//! `punch-loadgen quic-plain`: a plain QUIC connection between two hosts that need no
//! traversal, the reference for punch's connect time and for its direct bulk throughput.
//!
//! Same QUIC stack, the same TLS setup and transport parameters as punch's peer connections
//! (quinn, rustls with Ed25519 raw public keys, through `punch::tls`) and the same socket
//! buffers ([`punch::socket::SOCKET_BUFFER`]), so the only difference left is what punch
//! adds: registration lookup, introduction, punching, and its own socket layer (the demux
//! of QUIC, relayed and control datagrams on one socket). The exchange is the one
//! `punch bench` makes: the client opens a stream and sends one byte, the server answers
//! with the wall-clock time (ns since the Unix epoch) the byte arrived. Both hosts run on
//! one machine (lab namespaces share its clock), so that stamp minus the client's start
//! is the one-way time to the first application byte delivered. With `--mib N` the client
//! then pushes N MiB on a second stream, as `punch bench --mib N` does, and the server
//! answers with the count it received.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use clap::Subcommand;
use punch::identity::{Identity, PublicKey};
use punch::tls;
use serde_json::json;

/// The size of each write of the bulk and each read of it (as `punch bench`).
const CHUNK: usize = 64 * 1024;

/// The most `--mib` takes (1 TiB).
const MAX_MIB: usize = 1 << 20;

/// Which side to run.
#[derive(Subcommand, Debug)]
pub enum Side {
    /// Accept COUNT connections (then exit); answer each one's first byte with the time it
    /// arrived, and take the bulk a client pushes after it (`--mib`), answering with the
    /// byte count. Prints {"listening": ADDR, "key": KEY} first: the client needs the key.
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
    /// delivered (milliseconds from the connect call); with --mib, then push that much on a
    /// second stream and print bytes, seconds and MB/s (until the server confirmed it all)
    /// with the connection's QUIC statistics.
    Client {
        /// The server's ADDR:PORT.
        #[arg(long)]
        server: SocketAddr,
        /// The server's key (its `key` line).
        #[arg(long)]
        key: PublicKey,
        /// MiB to push after the first byte (0: none).
        #[arg(long, default_value_t = 0)]
        mib: usize,
        /// Give up after this many seconds (the whole run, bulk included).
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
                mib,
                timeout,
            } => {
                let t = seconds("timeout", timeout)?;
                crate::within("--mib", mib, 0..=MAX_MIB)?;
                tokio::time::timeout(t, client(server, key, mib as u64 * 1024 * 1024))
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
    let endpoint = endpoint(listen, Some(cfg))?;
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
            // A client without --mib closes once it has the answer: no second stream.
            if let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let total = drain(&mut recv).await?;
                send.write_all(&total.to_be_bytes()).await?;
                send.finish()?;
            }
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

/// A quinn endpoint on `addr` (a server one with `server`) whose socket asks for the
/// receive and send buffers punch's client socket asks for; failing that is not fatal, as
/// there.
fn endpoint(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr).with_context(|| format!("bind {addr}"))?;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(punch::socket::SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(punch::socket::SOCKET_BUFFER);
    let runtime = quinn::default_runtime().context("no async runtime for quinn")?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
        .with_context(|| format!("QUIC endpoint on {addr}"))
}

/// Read the stream to its end; how many bytes arrived.
async fn drain(recv: &mut quinn::RecvStream) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while let Some(n) = recv.read(&mut buf).await? {
        total += n as u64;
    }
    Ok(total)
}

/// Push `bytes` on a new stream; the seconds until the server confirmed it had them all.
async fn bulk(conn: &quinn::Connection, bytes: u64) -> Result<f64> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        send.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    send.finish()?;
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack)
        .await
        .context("the server's count of the bulk")?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(ack);
    ensure!(got == bytes, "the server received {got} of {bytes} bytes");
    Ok(secs)
}

async fn client(server: SocketAddr, key: PublicKey, bytes: u64) -> Result<()> {
    let identity = Identity::generate();
    let cfg = tls::client_config(&identity, key).context("TLS setup")?;
    let endpoint = endpoint(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), None)?;
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
    let mut line = json!({
        "handshake_ms": handshake.as_secs_f64() * 1e3,
        "first_byte_ms": first_byte_ns as f64 / 1e6,
        "echo_ms": echo.as_secs_f64() * 1e3,
        "rtt_ms": conn.rtt().as_secs_f64() * 1e3,
    });
    if bytes > 0 {
        let secs = bulk(&conn, bytes).await?;
        line["bytes"] = json!(bytes);
        line["secs"] = json!(secs);
        line["mb_s"] = json!(bytes as f64 / secs / 1e6);
        // The same statistics `punch bench` prints for its connection.
        line["quic"] = punch::telemetry::quic_stats(&conn);
    }
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    println!("{line}");
    Ok(())
}
