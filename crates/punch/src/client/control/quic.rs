//! The QUIC side of the control task: opening connections to a peer's virtual address,
//! accepting introduced peers, and noticing when a connection closes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;

use super::super::{lock, Introduced};
use super::Internal;
use crate::identity::{Identity, PublicKey};
use crate::tls;

pub(super) fn watch_close(key: PublicKey, conn: &quinn::Connection, tx: mpsc::Sender<Internal>) {
    let conn = conn.clone();
    tokio::spawn(async move {
        conn.closed().await;
        let _ = tx
            .send(Internal::Closed(key, conn.stable_id() as u64))
            .await;
    });
}

pub(super) async fn quic_connect(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    key: PublicKey,
    keepalive: Duration,
    virt: SocketAddr,
) -> Result<quinn::Connection, String> {
    let mut cfg = tls::client_config(identity, key).map_err(|e| e.to_string())?;
    cfg.transport_config(tls::transport_config(keepalive).map_err(|e| e.to_string())?);
    let connecting = endpoint
        .connect_with(cfg, virt, tls::SERVER_NAME)
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// Accept incoming connections from peers we were introduced to and hand them to the
/// control task (which reports them with their path).
pub(crate) async fn accept_loop(
    endpoint: quinn::Endpoint,
    introduced: Introduced,
    internal: mpsc::Sender<Internal>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let introduced = introduced.clone();
        let internal = internal.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, error = %e, "incoming handshake failed");
                    return;
                }
            };
            let Some(key) = tls::peer_public_key(&connection) else {
                return;
            };
            if !lock(&introduced).contains(&key) {
                connection.close(1u32.into(), b"not introduced");
                return;
            }
            let _ = internal.send(Internal::Accepted(key, connection)).await;
        });
    }
}
