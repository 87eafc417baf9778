//! `punch bench`: measure connect time and throughput to a peer over the path punch chose
//! (or forced with `--relay only|never`, `--transport udp|tcp`), as a user would see them
//! in a file transfer.
//!
//! One side waits (`punch bench --name alice`), the other pushes
//! (`punch bench --name bob --peer alice --mib 200`). The pusher prints one JSON line:
//! - connect time, from the connect request: `connect_ms` (the connection is usable),
//!   `first_byte_ms` (the first application byte reached the peer: the peer answers it
//!   with its wall-clock time of arrival, so this holds for two processes on one machine,
//!   e.g. in the NAT lab, where both read the same clock), and `direct_ms` (the path is
//!   direct: at once with `--relay never`, when the move from the relay happens with
//!   `--relay auto`, `null` if it never did within the punch deadline);
//! - throughput (skipped with `--mib 0`): bytes, seconds, Mbit/s, QUIC datagrams sent and
//!   datagrams per second (QUIC only), the path and the transport;
//! - `quic` (`null` over TCP): what QUIC saw of the whole connection, to read a throughput
//!   figure by: round trip, congestion window, path MTU, packets lost, congestion events,
//!   and datagrams and system calls each way (`tx_datagrams / tx_ios` is the GSO batch).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use punch::client::{Client, ClientConfig, ClientEvent, PathKind, RelayMode, Transport};
use punch::identity::Identity;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// Size of each write on the stream.
const CHUNK: usize = 64 * 1024;
/// How long past the punch deadline the pusher waits to see the path turn direct.
const DIRECT_GRACE: Duration = Duration::from_secs(2);

/// Nanoseconds since the Unix epoch, now (the peer's answer to the first byte).
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Aborts the watcher task when the benchmark ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run one side of a benchmark.
pub async fn run(cfg: ClientConfig, peer: Option<String>, mib: u64) -> Result<()> {
    let deadline = cfg.punch.deadline;
    let relay = cfg.relay;
    let client = Arc::new(
        Client::start(cfg, Identity::generate())
            .await
            .context("registering with the server")?,
    );
    match peer {
        None => wait(&client).await?,
        Some(peer) => push(&client, &peer, mib, relay, deadline).await?,
    }
    client.close().await;
    Ok(())
}

/// The waiting side: answer the first byte with its arrival time, then take the bulk.
async fn wait(client: &Client) -> Result<()> {
    eprintln!("waiting for a peer to push data");
    let Some(pc) = client.next_incoming().await else {
        bail!("client closed");
    };
    let total = match pc.quic_connection().cloned() {
        Some(conn) => {
            let (mut send, mut recv) = conn.accept_bi().await?;
            answer_first_byte(&mut recv, &mut send).await?;
            send.finish()?;
            match conn.accept_bi().await {
                Ok((mut send, mut recv)) => {
                    let total = drain(&mut recv, u64::MAX).await?;
                    send.write_all(&total.to_be_bytes()).await?;
                    send.finish()?;
                    let _ = send.stopped().await;
                    total
                }
                // `--mib 0`: the pusher closes after the first byte.
                Err(_) => 0,
            }
        }
        None => {
            let link = pc.into_tcp().context("neither QUIC nor TCP")?;
            let (mut recv, mut send) = tokio::io::split(link.stream);
            answer_first_byte(&mut recv, &mut send).await?;
            let mut len = [0u8; 8];
            match recv.read_exact(&mut len).await {
                Ok(_) => {
                    let total = drain(&mut recv, u64::from_be_bytes(len)).await?;
                    send.write_all(&total.to_be_bytes()).await?;
                    send.flush().await?;
                    // The pusher closes once it has read the total.
                    let _ = recv.read(&mut [0u8; 1]).await;
                    total
                }
                Err(_) => 0,
            }
        }
    };
    eprintln!("received {total} bytes");
    Ok(())
}

async fn answer_first_byte(
    recv: &mut (impl AsyncRead + Unpin),
    send: &mut (impl AsyncWrite + Unpin),
) -> Result<()> {
    let mut byte = [0u8; 1];
    recv.read_exact(&mut byte).await?;
    send.write_all(&wall_ns().to_be_bytes()).await?;
    send.flush().await?;
    Ok(())
}

/// Read up to `limit` bytes until the end of the stream; how many arrived.
async fn drain(recv: &mut (impl AsyncRead + Unpin), limit: u64) -> Result<u64> {
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while total < limit {
        let want = (limit - total).min(CHUNK as u64) as usize;
        let n = recv.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total)
}

/// Send the first byte; the peer's wall-clock time of its arrival.
async fn first_byte(
    recv: &mut (impl AsyncRead + Unpin),
    send: &mut (impl AsyncWrite + Unpin),
) -> Result<u64> {
    send.write_all(&[1]).await?;
    send.flush().await?;
    let mut stamp = [0u8; 8];
    recv.read_exact(&mut stamp)
        .await
        .context("the peer's answer to the first byte")?;
    Ok(u64::from_be_bytes(stamp))
}

/// Write `bytes` bytes.
async fn bulk(send: &mut (impl AsyncWrite + Unpin), bytes: u64) -> Result<()> {
    let chunk = vec![0x5au8; CHUNK];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        send.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    send.flush().await?;
    Ok(())
}

/// The pushing side: connect, time the first byte and the direct path, push the bulk.
async fn push(
    client: &Arc<Client>,
    peer: &str,
    mib: u64,
    relay: RelayMode,
    deadline: Duration,
) -> Result<()> {
    // Path events are watched from before the connect request, so the move to a direct
    // path is timed when it happens, not when this side gets round to asking.
    let (direct_tx, direct_rx) = oneshot::channel::<Instant>();
    let watcher = {
        let client = client.clone();
        AbortOnDrop(tokio::spawn(async move {
            while let Some(ev) = client.next_event().await {
                if let ClientEvent::Path { path: Some(p), .. } = ev {
                    if p.kind == PathKind::Direct {
                        let _ = direct_tx.send(Instant::now());
                        return;
                    }
                }
            }
        }))
    };
    let start_wall = wall_ns();
    let start = Instant::now();
    let pc = client.connect(peer).await?;
    let connect = start.elapsed();
    let key = pc.key;
    let at_connect = client.current_path(&key).or(pc.path);
    let transport = pc.transport();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let bytes = mib * 1024 * 1024;
    let (stamp, secs, datagrams, quic) = match pc.quic_connection().cloned() {
        Some(conn) => {
            let (mut send, mut recv) = conn.open_bi().await?;
            let stamp = first_byte(&mut recv, &mut send).await?;
            send.finish()?;
            let mut secs = 0.0;
            let mut datagrams = 0;
            if bytes > 0 {
                let (mut send, mut recv) = conn.open_bi().await?;
                let before = conn.stats().udp_tx.datagrams;
                let t = Instant::now();
                bulk(&mut send, bytes).await?;
                send.finish()?;
                let mut ack = [0u8; 8];
                recv.read_exact(&mut ack).await?;
                secs = t.elapsed().as_secs_f64();
                let got = u64::from_be_bytes(ack);
                anyhow::ensure!(got == bytes, "peer received {got} of {bytes} bytes");
                datagrams = conn.stats().udp_tx.datagrams - before;
            }
            (
                stamp,
                secs,
                Some(datagrams),
                Some(punch::telemetry::quic_stats(&conn)),
            )
        }
        None => {
            let link = pc.into_tcp().context("neither QUIC nor TCP")?;
            let (mut recv, mut send) = tokio::io::split(link.stream);
            let stamp = first_byte(&mut recv, &mut send).await?;
            let mut secs = 0.0;
            if bytes > 0 {
                let t = Instant::now();
                send.write_all(&bytes.to_be_bytes()).await?;
                bulk(&mut send, bytes).await?;
                let mut ack = [0u8; 8];
                recv.read_exact(&mut ack).await?;
                secs = t.elapsed().as_secs_f64();
                let got = u64::from_be_bytes(ack);
                anyhow::ensure!(got == bytes, "peer received {got} of {bytes} bytes");
            }
            (stamp, secs, None, None)
        }
    };
    let first_byte_ms = stamp.saturating_sub(start_wall) as f64 / 1e6;
    let direct = if at_connect.is_some_and(|p| p.kind == PathKind::Direct) {
        Some(connect)
    } else if relay == RelayMode::Only || transport == Transport::Tcp {
        // No move to a direct path is coming: a TCP connection stays what it was.
        None
    } else {
        let wait = (start + deadline + DIRECT_GRACE).saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, direct_rx).await {
            Ok(Ok(at)) => Some(at.duration_since(start)),
            _ => None,
        }
    };
    drop(watcher);
    let path = client.current_path(&key).or(at_connect);
    let mbit = if secs > 0.0 {
        Some(bytes as f64 * 8.0 / secs / 1e6)
    } else {
        None
    };
    println!(
        "{}",
        json!({"connect_ms": ms(connect), "first_byte_ms": first_byte_ms,
               "direct_ms": direct.map(ms), "transport": transport.as_str(),
               "bytes": bytes, "secs": secs, "mbit_s": mbit,
               "datagrams": datagrams, "datagrams_s": datagrams.map(|d| d as f64 / secs.max(1e-9)),
               "path": path.map(|p| p.kind.as_str()), "quic": quic,
               "remote": path.map(|p| p.remote.to_string())})
    );
    Ok(())
}
