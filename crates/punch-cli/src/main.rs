//! The `punch` command: parses arguments and configuration, then hands over.
mod bench;
mod chat;
mod demo;
mod natcache;
mod report;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use punch::client::ClientConfig;
use tracing_subscriber::EnvFilter;

/// Connect programs behind NATs directly, peer to peer.
///
/// A rendezvous server learns each client's public address; when one asks for another,
/// both punch a hole through their NATs at once and talk directly over QUIC,
/// authenticated end to end by their Ed25519 keys.
#[derive(Parser, Debug)]
#[command(
    name = "punch",
    version,
    propagate_version = true,
    after_help = "Examples:\n  \
      punch demo                                         see it work on this machine\n  \
      punch server --listen IP1:3478 --alt-addr IP2      on a public host\n  \
      punch nat-type --server HOST                       what does my NAT do?\n  \
      punch chat --server HOST --name alice              behind one NAT\n  \
      punch chat --server HOST --name bob --peer alice   behind another\n\n\
      On AMD Zen 3 and Zen 4 CPUs punch starts itself again at once with glibc's\n\
      glibc.cpu.x86_rep_movsb_threshold raised in GLIBC_TUNABLES (glibc's rep movsb\n\
      copies are slow there, and TLS over TCP copies every record); a value you set\n\
      for that tunable yourself is kept."
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a rendezvous server (STUN binding, peer registry, introductions, relay).
    ///
    /// Check it from anywhere with: echo '<Hi!>' | nc -u -w1 HOST 3478   (answers <HI!>)
    ///
    /// A name belongs to the key that first registered it; the server keeps that in
    /// DATA_DIR/names.redb. `punch server release NAME` frees one (server stopped).
    #[command(args_conflicts_with_subcommands = true)]
    Server {
        #[command(flatten)]
        args: serve::ServerArgs,
        #[command(subcommand)]
        action: Option<serve::ServerAction>,
    },
    /// Find out what your NAT does: mapping, filtering, hairpinning, classic type.
    ///
    /// Needs a server started with --alt-addr for the full answer; against a server with
    /// one address it reports the public address and marks the rest unknown.
    NatType {
        /// The server, HOST or HOST:PORT (port 3478 if omitted).
        #[arg(long, env = "PUNCH_SERVER")]
        server: String,
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Local address to test from (the default, ::, is any address of the family
        /// being tested). A server name with both IPv4 and IPv6 addresses is tested over
        /// each family in turn: NATs are per family.
        #[arg(long, default_value = "::")]
        bind: std::net::IpAddr,
    },
    /// Chat with peers directly: every line you type goes to every connected peer.
    ///
    /// Start one side with just a name; the other names it with --peer. Incoming
    /// messages print as `[name] text`. Ctrl-D sends what is left and leaves.
    Chat {
        /// Rendezvous server, HOST or HOST:PORT (port 3478 if omitted).
        #[arg(long, env = "PUNCH_SERVER")]
        server: String,
        /// Your name on the server.
        #[arg(long)]
        name: String,
        /// A peer to connect to (repeat for a group chat). Peers that reach you are accepted.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// One JSON object per line on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Directory holding your identity key (created on first run).
        #[arg(long, env = "PUNCH_HOME")]
        home: Option<PathBuf>,
        /// Local UDP address to bind. The default, [::]:0, takes IPv4 and IPv6 on one
        /// socket (0.0.0.0:0 on a host without IPv6); 0.0.0.0:0 keeps to IPv4.
        #[arg(long, default_value = "[::]:0")]
        bind: SocketAddr,
        /// Seconds to try punching before giving up on a direct path.
        #[arg(long, default_value_t = 10.0)]
        punch_timeout: f64,
        /// Seconds between keepalives on a peer path.
        #[arg(long, default_value_t = 15.0)]
        keepalive: f64,
        /// Seconds between registration refreshes (keepalives to the server).
        #[arg(long, default_value_t = 25.0)]
        server_keepalive: f64,
        /// Use of the server's relay: auto (start on the relay, move to a direct path as
        /// soon as punching finds one), never (direct only), only (relay only).
        #[arg(long, default_value = "auto", value_name = "auto|never|only")]
        relay: punch::client::RelayMode,
        /// Transport: udp (QUIC), tcp (TLS over TCP, punched with the server's assist
        /// port, relayed by the server if punching fails), or auto: UDP first; a punched
        /// TCP connection when UDP finds no direct path (the chat starts on the UDP relay
        /// and moves to TCP without losing a message); the relay when neither punches;
        /// TCP alone when the server cannot be reached over UDP.
        #[arg(long, default_value = "auto", value_name = "udp|tcp|auto")]
        transport: punch::client::TransportMode,
        /// The server's TCP assist port (default: the server port + 1).
        #[arg(long, value_name = "PORT")]
        tcp_assist_port: Option<u16>,
        /// Accept a new key for this peer name (repeat for several). The first key seen
        /// for every name is kept in HOME/known_peers, and a peer that later comes with
        /// another key is refused: the server or someone who took the name could be posing
        /// as it. Pass this when the peer really changed its key (check with them first).
        #[arg(long = "accept-new-key", value_name = "NAME")]
        accept_new_key: Vec<String>,
        /// Serve Prometheus metrics over HTTP on ADDR: the path each peer is on, time to a
        /// direct path, punching outcomes by NAT pair, connections and registrations (all
        /// named punch_client_*; the README lists them).
        ///
        /// Example: --metrics 127.0.0.1:9479, then: curl http://127.0.0.1:9479/metrics
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// Show punch working: a server and two peers on loopback, in one process.
    Demo,
    /// Measure connect time and throughput to a peer: one side waits, the other connects,
    /// times the first byte and the direct path, pushes data and prints Mbit/s over the
    /// path in use (`--relay only|never`, `--transport tcp` to force one; `--mib 0`: connect
    /// time only).
    Bench {
        /// Rendezvous server, HOST or HOST:PORT.
        #[arg(long, env = "PUNCH_SERVER")]
        server: String,
        /// Your name on the server (a fresh identity is used).
        #[arg(long)]
        name: String,
        /// Push to this peer; without it, wait for a peer to push.
        #[arg(long)]
        peer: Option<String>,
        /// MiB to push.
        #[arg(long, default_value_t = 100)]
        mib: u64,
        /// Relay use, as for chat.
        #[arg(long, default_value = "auto", value_name = "auto|never|only")]
        relay: punch::client::RelayMode,
        /// Transport, as for chat (tcp: TLS over a punched TCP connection, or the TCP relay).
        #[arg(long, default_value = "udp", value_name = "udp|tcp|auto")]
        transport: punch::client::TransportMode,
    },
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0 && v < 86_400.0,
        "--{name} must be between 0 and 86400 seconds, got {v}"
    );
    Ok(Duration::from_secs_f64(v))
}

fn default_home() -> Result<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("punch"))
        .context("no config directory known for this user; pass --home DIR or set PUNCH_HOME")
}

/// The async runtime for `command`. The server (and the demo, which runs one) spreads its
/// receive tasks over worker threads (`--workers`). A peer's work is a path's datagrams
/// going through the socket, QUIC and the application in turn: on one thread every
/// hand-off is a function call, where worker threads wake each other at each one. On two
/// cores `punch bench` pushed about 1.4x as much over a direct path on one thread
/// (`bench/throughput`), with less CPU idle between the hand-offs.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Server { .. } | Command::Demo => tokio::runtime::Runtime::new(),
        Command::NatType { .. } | Command::Chat { .. } | Command::Bench { .. } => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
    }
}

fn main() -> Result<()> {
    // First, before any thread: may run this program again with a glibc tunable.
    punch::memcpy::reexec_with_copy_tunable();
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(t) = punch::memcpy::tunables_in_effect() {
        tracing::debug!("glibc copies: GLIBC_TUNABLES={t} (see punch::memcpy)");
    }
    let rt = runtime(&cli.command).context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Server { args, action } => serve::run(args, action).await,
            Command::NatType { server, json, bind } => {
                let addrs = chat::resolve_server(&server, 3478)?;
                // One test per family the server has (and the bind address allows).
                let mut tested = Vec::new();
                for a in punch::client::eyeballs::order(&addrs) {
                    let fits = bind.is_unspecified() || bind.is_ipv4() == a.is_ipv4();
                    if fits
                        && !tested
                            .iter()
                            .any(|t: &SocketAddr| t.is_ipv4() == a.is_ipv4())
                    {
                        tested.push(a);
                    }
                }
                anyhow::ensure!(
                    !tested.is_empty(),
                    "the server has no address of --bind {bind}'s family ({addrs:?})"
                );
                for a in tested {
                    let report = punch::nat::discover(a, bind)
                        .await
                        .with_context(|| format!("running NAT discovery against {a}"))?;
                    report::nat_report(&report, json);
                }
                Ok(())
            }
            Command::Chat {
                server,
                name,
                peers,
                json,
                home,
                bind,
                punch_timeout,
                keepalive,
                server_keepalive,
                relay,
                transport,
                tcp_assist_port,
                accept_new_key,
                metrics,
            } => {
                for n in &accept_new_key {
                    anyhow::ensure!(
                        !n.is_empty() && n.len() <= punch::punch_proto::wire::MAX_NAME_LEN,
                        "--accept-new-key {n:?}: a peer name is 1 to 64 bytes"
                    );
                }
                let servers = chat::resolve_server(&server, 3478)?;
                let mut client = ClientConfig::new(servers[0], name);
                client.server_addrs = servers;
                client.bind = bind;
                client.punch.deadline = secs("punch-timeout", punch_timeout)?;
                client.peer_keepalive = secs("keepalive", keepalive)?;
                client.server_keepalive = secs("server-keepalive", server_keepalive)?;
                client.relay = relay;
                client.transport = transport;
                client.tcp_assist_port = tcp_assist_port;
                let home = match home {
                    Some(h) => h,
                    None => default_home()?,
                };
                client.known_peers = Some(home.join(punch::known_peers::KNOWN_PEERS_FILE));
                client.accept_new_key = accept_new_key;
                let opts = chat::ChatOptions {
                    client,
                    peers,
                    home,
                    metrics,
                };
                chat::run(opts, report::Reporter::new(json)).await
            }
            Command::Demo => demo::run().await,
            Command::Bench {
                server,
                name,
                peer,
                mib,
                relay,
                transport,
            } => {
                let servers = chat::resolve_server(&server, 3478)?;
                let mut cfg = ClientConfig::new(servers[0], name);
                cfg.server_addrs = servers;
                cfg.relay = relay;
                cfg.transport = transport;
                bench::run(cfg, peer, mib).await
            }
        }
    })
}
