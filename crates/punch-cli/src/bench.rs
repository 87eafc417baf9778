//! `punch bench`: measure throughput to a peer over the path punch chose (or forced with
//! `--relay only|never`), as a user would see it in a file transfer.
//!
//! One side waits (`punch bench --name alice`), the other pushes
//! (`punch bench --name bob --peer alice --mib 200`). The pusher prints one JSON line:
//! bytes, seconds, Mbit/s, QUIC datagrams sent and datagrams per second, and the path.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use punch::client::{Client, ClientConfig};
use punch::identity::Identity;
use serde_json::json;

/// Size of each write on the stream.
const CHUNK: usize = 64 * 1024;

/// Run one side of a benchmark.
pub async fn run(cfg: ClientConfig, peer: Option<String>, mib: u64) -> Result<()> {
    let client = Arc::new(
        Client::start(cfg, Identity::generate())
            .await
            .context("registering with the server")?,
    );
    match peer {
        None => {
            eprintln!("waiting for a peer to push data");
            let Some(pc) = client.next_incoming().await else {
                bail!("client closed");
            };
            let conn = pc
                .quic_connection()
                .context("bench runs over QUIC")?
                .clone();
            let (mut send, mut recv) = conn.accept_bi().await?;
            let mut total = 0u64;
            let mut buf = vec![0u8; CHUNK];
            while let Some(n) = recv.read(&mut buf).await? {
                total += n as u64;
            }
            send.write_all(&total.to_be_bytes()).await?;
            send.finish()?;
            let _ = send.stopped().await;
            eprintln!("received {total} bytes");
        }
        Some(peer) => {
            let pc = client.connect(&peer).await?;
            let path = client.current_path(&pc.key).or(pc.path);
            let bytes = mib * 1024 * 1024;
            let conn = pc
                .quic_connection()
                .context("bench runs over QUIC")?
                .clone();
            let (mut send, mut recv) = conn.open_bi().await?;
            let chunk = vec![0x5au8; CHUNK];
            let before = conn.stats().udp_tx.datagrams;
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < bytes {
                let n = (bytes - sent).min(CHUNK as u64) as usize;
                send.write_all(&chunk[..n]).await?;
                sent += n as u64;
            }
            send.finish()?;
            let mut ack = [0u8; 8];
            recv.read_exact(&mut ack).await?;
            let secs = start.elapsed().as_secs_f64();
            let got = u64::from_be_bytes(ack);
            anyhow::ensure!(got == bytes, "peer received {got} of {bytes} bytes");
            let datagrams = conn.stats().udp_tx.datagrams - before;
            println!(
                "{}",
                json!({"bytes": bytes, "secs": secs, "mbit_s": bytes as f64 * 8.0 / secs / 1e6,
                       "datagrams": datagrams, "datagrams_s": datagrams as f64 / secs,
                       "path": path.map(|p| p.kind.as_str()),
                       "remote": path.map(|p| p.remote.to_string())})
            );
        }
    }
    client.close().await;
    Ok(())
}
