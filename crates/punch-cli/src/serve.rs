//! `punch server`: the rendezvous server's options, start-up and shutdown, and the
//! operator's `punch server release NAME`.
//!
//! Owns turning options into the library's server configuration, opening the name
//! database (`--data-dir`) shared by the UDP and TCP registries, and writing it one last
//! time on SIGINT or SIGTERM. The server itself is `punch::server` and `punch::tcp::server`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use punch::names::{self, NameStore};
use punch::punch_proto::owners::OwnersConfig;
use punch::punch_proto::ratelimit::{self, RateLimit};
use punch::punch_proto::relay::RelayConfig;
use punch::punch_proto::rendezvous::RendezvousConfig;
use punch::server::ServerConfig;

use crate::secs;

/// Options of `punch server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// UDP address to listen on. The default, [::]:3478, is one dual-stack socket that
    /// serves IPv4 and IPv6 alike (0.0.0.0:3478 on a host without IPv6). Repeat it with
    /// one specific address per family to give each family its own --alt-addr, e.g.
    /// --listen 203.0.113.10:3478 --listen [2001:db8::10]:3478 (same port).
    #[arg(long, default_value = "[::]:3478", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// A second IP address of this host: enables full NAT behaviour discovery
    /// (RFC 5780: the server answers from the other address and port on request).
    /// The --listen address of its family must then be a specific one. Repeat it for
    /// the other family.
    #[arg(long, value_name = "IP")]
    pub alt_addr: Vec<std::net::IpAddr>,
    /// The alternate port (default: the listen port + 1).
    #[arg(long, value_name = "PORT", requires = "alt_addr")]
    pub alt_port: Option<u16>,
    /// Do not relay traffic between peers (they must punch a direct path).
    #[arg(long)]
    pub no_relay: bool,
    /// Relay rate limit per session, in Mbit/s (over it, UDP datagrams are dropped and
    /// a TCP relay reads more slowly). The relay limits apply to UDP and TCP alike.
    #[arg(long, default_value_t = 100.0, value_name = "MBIT")]
    pub relay_rate: f64,
    /// Relay volume limit per session, in MiB (reaching it ends the session).
    #[arg(long, default_value_t = 10240, value_name = "MIB")]
    pub relay_max_mib: u64,
    /// Seconds after which an idle relay session is forgotten (a TCP one is closed, and
    /// both peers are told why).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub relay_idle_timeout: f64,
    /// TCP assist port (TCP hole punching; the TCP main port is the --listen port).
    /// Default: the listen port + 1 (3479), or any free port when listening on port 0.
    #[arg(long, value_name = "PORT")]
    pub tcp_assist_port: Option<u16>,
    /// Do not serve TCP (no TCP punching, no TCP relay).
    #[arg(long)]
    pub no_tcp: bool,
    /// Directory of the server's state: the name database (names.redb). Default:
    /// $STATE_DIRECTORY (systemd's StateDirectory=), else the user's data directory
    /// (~/.local/share/punch). One server per directory: the database is locked.
    #[arg(long, env = "PUNCH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Days a name stays owned by its key without a registration; then another key may
    /// take it.
    #[arg(long, default_value_t = punch::punch_proto::owners::DEFAULT_EXPIRY_DAYS, value_name = "DAYS")]
    pub name_expiry_days: u32,
    /// Most names the server keeps owners for (about 100 bytes of memory each); when full,
    /// a new name is refused as busy until one expires.
    #[arg(long, default_value_t = punch::punch_proto::owners::DEFAULT_MAX_NAMES, value_name = "N")]
    pub max_names: usize,
    /// Most peers registered over UDP at once (each holds its addresses and key in memory, a few
    /// hundred bytes); when full, a new registration is refused as busy.
    #[arg(long, default_value_t = punch::punch_proto::rendezvous::DEFAULT_MAX_PEERS, value_name = "N")]
    pub max_peers: usize,
    /// Seconds a registration lives without a refresh (clients refresh every 25 s by
    /// default; keep it a few refreshes longer). 30 to 3600.
    #[arg(long, default_value_t = punch::punch_proto::rendezvous::DEFAULT_REGISTRATION_TTL.as_secs(), value_name = "SECS")]
    pub registration_ttl: u64,
    /// Registrations per second allowed from one IP address (bursts of twice that); more
    /// are dropped unanswered. 0: no limit.
    #[arg(long, default_value_t = ratelimit::DEFAULT_REGISTER.per_second, value_name = "PER_SEC")]
    pub register_rate: f64,
    /// Introduction requests per second allowed from one IP address (bursts of twice
    /// that). 0: no limit.
    #[arg(long, default_value_t = ratelimit::DEFAULT_CONNECT.per_second, value_name = "PER_SEC")]
    pub connect_rate: f64,
    /// STUN requests and <Hi!> checks per second allowed from one IP address (bursts of
    /// twice that). 0: no limit.
    #[arg(long, default_value_t = ratelimit::DEFAULT_STUN.per_second, value_name = "PER_SEC")]
    pub stun_rate: f64,
    /// UDP sockets on each listen address, each with its own receive task, so a busy
    /// server uses more than one core for STUN, relaying and registrations (each task
    /// checks the signatures of the registrations it received, outside the registry's
    /// lock). They share the address (SO_REUSEPORT); a small program in the kernel
    /// gives each client to one of them by a hash of its address and port, and each
    /// answers from a send-only twin of its socket.
    /// 0: one per CPU the server may run on (taskset and cgroup limits count).
    ///
    /// A dual-stack client's two registrations may then reach the registry in either
    /// order; either address reaches the client (it takes the server's frames over both).
    ///
    /// Example: --workers 0 on a busy server (one signed registration, its challenge
    /// included, cost 40-70 µs of CPU in the benchmarks on two hosts: some 15,000 to
    /// 25,000 per second per worker's core).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub workers: u16,
    /// Serve Prometheus metrics over HTTP on ADDR: requests by kind, live registrations,
    /// introductions and their time to ready, errors by code, relay sessions, bytes and
    /// drops, rate-limit rejections (all named punch_server_*; the README lists them).
    ///
    /// Example: --metrics 127.0.0.1:9478, then: curl http://127.0.0.1:9478/metrics
    ///
    /// Anyone who reaches ADDR sees the server's traffic figures: keep it on loopback or a
    /// private address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// The socket groups for `--listen` and `--alt-addr` (see `punch::server`), checked
/// before anything is bound: one listen address per family (`[::]` is both, so alone),
/// one port, and each alternate address beside a specific listen address of its family.
fn listen_groups(
    listen: &[SocketAddr],
    alt: &[IpAddr],
) -> Result<Vec<(SocketAddr, Option<IpAddr>)>> {
    anyhow::ensure!(!listen.is_empty(), "--listen needs an address");
    let dual = listen
        .iter()
        .any(|a| punch::socket::family::is_dual_stack_any(*a));
    anyhow::ensure!(
        !dual || listen.len() == 1,
        "--listen [::]:PORT already serves both families; give it alone, or one specific \
         address per family"
    );
    for (i, a) in listen.iter().enumerate() {
        anyhow::ensure!(
            !listen[..i].iter().any(|b| b.is_ipv4() == a.is_ipv4()),
            "--listen: one address per family (two {} given)",
            if a.is_ipv4() { "IPv4" } else { "IPv6" }
        );
        anyhow::ensure!(
            a.port() == listen[0].port(),
            "--listen addresses must share one port (the TCP main port is that port)"
        );
    }
    let mut groups: Vec<(SocketAddr, Option<IpAddr>)> = listen.iter().map(|a| (*a, None)).collect();
    for ip in alt {
        let Some(g) = groups.iter_mut().find(|(l, _)| l.is_ipv4() == ip.is_ipv4()) else {
            anyhow::bail!("--alt-addr {ip}: no --listen address of its family");
        };
        anyhow::ensure!(
            g.1.is_none(),
            "--alt-addr: one per family ({ip} and {} given)",
            g.1.map(|x| x.to_string()).unwrap_or_default()
        );
        anyhow::ensure!(
            !g.0.ip().is_unspecified(),
            "--alt-addr {ip} needs a specific --listen address of its family (not {}): \
             RFC 5780 answers name the address they come from",
            g.0
        );
        anyhow::ensure!(
            *ip != g.0.ip(),
            "--alt-addr {ip} is the --listen address itself"
        );
        g.1 = Some(*ip);
    }
    Ok(groups)
}

/// A per-source limit of `per_second`, bursts of twice that (0: none).
fn limit(option: &str, per_second: f64) -> Result<RateLimit> {
    anyhow::ensure!(
        per_second.is_finite() && (0.0..=1e9).contains(&per_second),
        "--{option} must be a number of requests per second, 0 for no limit; got {per_second}"
    );
    Ok(RateLimit::new(per_second, (2.0 * per_second).max(1.0)))
}

/// What `punch server` can do besides serving.
#[derive(Subcommand, Debug)]
pub enum ServerAction {
    /// Free a name: the key that owns it loses it, and the next key to register it owns it.
    /// The server must be stopped (it holds the database).
    Release {
        /// The name to free.
        name: String,
        /// The server's data directory (as for `punch server`).
        #[arg(long, env = "PUNCH_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// The data directory: the option, $STATE_DIRECTORY, or the user's data directory.
fn data_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d);
    }
    if let Some(first) = std::env::var_os("STATE_DIRECTORY")
        .as_deref()
        .and_then(|v| v.to_str())
        .and_then(|v| v.split(':').next().map(PathBuf::from))
    {
        return Ok(first);
    }
    dirs::data_dir()
        .map(|d| d.join("punch"))
        .context("no data directory known for this user; pass --data-dir DIR")
}

/// `punch server [release NAME]`.
pub async fn run(args: ServerArgs, action: Option<ServerAction>) -> Result<()> {
    match action {
        Some(ServerAction::Release {
            name,
            data_dir: dir,
        }) => release(&name, dir),
        None => serve(args).await,
    }
}

fn release(name: &str, dir: Option<PathBuf>) -> Result<()> {
    let dir = data_dir(dir)?;
    let store = NameStore::open(&dir)?;
    match store.release(name)? {
        Some(o) => println!(
            "released {name:?} (was owned by key {}, last registered {} days ago)",
            punch::identity::PublicKey::from_bytes(o.key),
            names::today().saturating_sub(o.last_seen)
        ),
        None => println!("{name:?} is not owned by any key in {}", dir.display()),
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(args: ServerArgs) -> Result<()> {
    let ServerArgs {
        listen,
        alt_addr,
        alt_port,
        no_relay,
        relay_rate,
        relay_max_mib,
        relay_idle_timeout,
        tcp_assist_port,
        no_tcp,
        data_dir: dir,
        name_expiry_days,
        max_names,
        max_peers,
        registration_ttl,
        register_rate,
        connect_rate,
        stun_rate,
        workers,
        metrics,
    } = args;
    let register_limit = limit("register-rate", register_rate)?;
    let connect_limit = limit("connect-rate", connect_rate)?;
    let stun_limit = limit("stun-rate", stun_rate)?;
    anyhow::ensure!(
        name_expiry_days >= 1,
        "--name-expiry-days must be at least 1, got {name_expiry_days}"
    );
    anyhow::ensure!(max_names >= 1, "--max-names must be at least 1");
    anyhow::ensure!(max_peers >= 1, "--max-peers must be at least 1");
    anyhow::ensure!(
        (30..=3600).contains(&registration_ttl),
        "--registration-ttl must be 30 to 3600 seconds, got {registration_ttl}"
    );
    anyhow::ensure!(
        relay_rate.is_finite() && relay_rate > 0.0,
        "--relay-rate must be a positive number of Mbit/s, got {relay_rate}"
    );
    let relay_idle_timeout = secs("relay-idle-timeout", relay_idle_timeout)?;
    // Before anything is served, so the server's metric handles register with it; the
    // endpoint stops when `_metrics` is dropped.
    let _metrics = match metrics {
        Some(addr) => {
            let m = punch::telemetry::serve(addr)
                .await
                .with_context(|| format!("--metrics {addr}"))?;
            eprintln!("metrics: http://{}/metrics", m.local_addr());
            Some(m)
        }
        None => None,
    };
    let dir = data_dir(dir)?;
    let keeper = names::keep(
        NameStore::open(&dir)?,
        OwnersConfig {
            max_names,
            expiry_days: name_expiry_days,
        },
    )?;
    eprintln!(
        "name database: {} (names unused for {name_expiry_days} days are freed)",
        dir.join(names::DB_FILE).display()
    );
    let relay = RelayConfig {
        enabled: !no_relay,
        rate: (relay_rate * 125_000.0) as u64,
        max_bytes: relay_max_mib.saturating_mul(1024 * 1024),
        idle_timeout: relay_idle_timeout,
    };
    let groups = listen_groups(&listen, &alt_addr)?;
    let cfg = ServerConfig {
        alt_ip: None,
        alt_port,
        rendezvous: RendezvousConfig {
            relay: relay.clone(),
            owners: keeper.owners(),
            register_limit,
            connect_limit,
            max_peers,
            registration_ttl: std::time::Duration::from_secs(registration_ttl),
            ..RendezvousConfig::default()
        },
        stun_limit,
        workers: usize::from(workers),
    };
    let sockets = punch::server::ServerSockets::bind_workers(&groups, alt_port, cfg.workers)
        .await
        .with_context(|| format!("cannot listen on {listen:?}"))?;
    let addrs: Vec<String> = sockets.all_addrs().iter().map(|a| a.to_string()).collect();
    eprintln!("punch server listening on {} (UDP)", addrs.join(", "));
    if no_relay {
        eprintln!("relaying is off: peers that cannot punch a direct path get an error");
    }
    if alt_addr.is_empty() {
        eprintln!("note: full NAT behaviour discovery needs a second address (--alt-addr IP)");
    }
    // TCP main (same address and port number as UDP) + assist listeners; their
    // tasks stop when `_tcp` is dropped. A TCP bind failure leaves UDP serving.
    let _tcp = if no_tcp {
        None
    } else {
        // The UDP port actually bound (also when --listen asked for port 0). One TCP
        // registry: with one listen address per family, TCP listens on both at once.
        let ip = match listen.as_slice() {
            [one] => one.ip(),
            _ => punch::socket::family::DUAL_STACK_ANY.ip(),
        };
        let tcp_main = SocketAddr::new(ip, sockets.local_addr().port());
        let assist_port = tcp_assist_port.unwrap_or(match listen[0].port() {
            0 => 0,
            p => p.wrapping_add(1),
        });
        let assist = SocketAddr::new(ip, assist_port);
        let tcp_cfg = punch::tcp::server::TcpServerConfig {
            registry: punch::punch_proto::tcp::registry::TcpRegistryConfig {
                relay: !no_relay,
                owners: keeper.owners(),
                register_limit,
                connect_limit,
                ..Default::default()
            },
            // The same limits as the UDP relay, per relayed TCP session.
            relay_limits: relay,
        };
        match punch::tcp::server::TcpServerHandle::spawn(tcp_main, assist, tcp_cfg).await {
            Ok(h) => {
                eprintln!(
                    "punch server listening on {} (TCP main), {} (TCP assist)",
                    h.main_addr(),
                    h.assist_addr()
                );
                Some(h)
            }
            Err(e) => {
                eprintln!("warning: TCP not served: {e}");
                None
            }
        }
    };
    punch::server::run(sockets, cfg, shutdown_signal()).await?;
    keeper
        .flush()
        .context("writing the name database at shutdown")?;
    Ok(())
}
