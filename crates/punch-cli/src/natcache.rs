//! The chat's view of its own NAT: discovery at start, cached in the home directory.
//!
//! Owns when discovery runs and where its result is kept. A result is reused while it is
//! younger than [`CACHE_MAX_AGE`] and was measured against the same server from the same
//! local address (a laptop that moved networks measures again). The tests themselves are
//! [`punch::nat`]'s.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use punch::punch_proto::nat::NatReport;
use serde::{Deserialize, Serialize};

/// How long a measured NAT behaviour is trusted. NAT behaviour changes with the network,
/// not with time, so this is long; the key (server, local address) catches moves.
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(3600);
const CACHE_FILE: &str = "nat-cache.json";

#[derive(Serialize, Deserialize)]
struct Entry {
    server: SocketAddr,
    local_ip: IpAddr,
    measured_unix: u64,
    report: NatReport,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn path(home: &Path) -> PathBuf {
    home.join(CACHE_FILE)
}

/// A fresh cached report for this server and local address, if any. A missing or
/// unreadable cache is simply a miss.
pub fn load(home: &Path, server: SocketAddr, local_ip: IpAddr) -> Option<NatReport> {
    let bytes = std::fs::read(path(home)).ok()?;
    let e: Entry = serde_json::from_slice(&bytes).ok()?;
    let age = now_unix().saturating_sub(e.measured_unix);
    (e.server == server && e.local_ip == local_ip && age < CACHE_MAX_AGE.as_secs())
        .then_some(e.report)
}

/// Keep `report` for later runs; failing to write only costs a new measurement next time.
pub fn store(home: &Path, server: SocketAddr, local_ip: IpAddr, report: &NatReport) {
    let e = Entry {
        server,
        local_ip,
        measured_unix: now_unix(),
        report: report.clone(),
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&e) {
        let tmp = home.join(format!("{CACHE_FILE}.tmp"));
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, path(home));
        }
    }
}

/// The cached report, or a new measurement (stored for next time).
pub async fn get(
    home: &Path,
    server: SocketAddr,
    bind: IpAddr,
) -> std::io::Result<(NatReport, bool)> {
    let local_ip = punch::nat::local_ip_toward(server, bind);
    if let Some(r) = load(home, server, local_ip) {
        return Ok((r, true));
    }
    let r = punch::nat::discover(server, bind).await?;
    store(home, server, local_ip, &r);
    Ok((r, false))
}
