//! Test driver for TCP punching (used by the lab tests; not the `punch` CLI).
//!
//! ```text
//! tcp_peer server --main ADDR --assist ADDR
//! tcp_peer peer --main ADDR --assist ADDR --name NAME [--peer NAME]
//!               [--punch-timeout SECS] [--no-punch] [--no-relay]
//! ```
//! A peer prints one JSON object per line, like `punch chat --json`: `registered`,
//! `connected` (with `"transport":"tcp"`, `path`, `candidate`, `remote`), `message`,
//! `disconnected` and `error`. Stdin lines go to the peer (kept until connected).
use std::net::SocketAddr;
use std::time::Duration;

use punch::chat::{read_message, send_message};
use punch::identity::Identity;
use punch::tcp::client::{TcpClient, TcpClientConfig};
use punch::tcp::server::{TcpServerConfig, TcpServerHandle};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn addr(args: &[String], name: &str) -> SocketAddr {
    arg(args, name)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{name} ADDR is required"))
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let main_addr = addr(&args, "--main");
    let assist_addr = addr(&args, "--assist");
    match args.first().map(|s| s.as_str()) {
        Some("server") => {
            let server = TcpServerHandle::spawn(main_addr, assist_addr, TcpServerConfig::default())
                .await
                .expect("bind the TCP listeners");
            emit(
                json!({"event":"listening","main":server.main_addr().to_string(),
                "assist":server.assist_addr().to_string()}),
            );
            std::future::pending::<()>().await;
        }
        Some("peer") => peer(&args, main_addr, assist_addr).await,
        _ => panic!("usage: tcp_peer server|peer --main ADDR --assist ADDR ..."),
    }
}

async fn peer(args: &[String], main_addr: SocketAddr, assist_addr: SocketAddr) {
    let name = arg(args, "--name").expect("--name NAME");
    let target = arg(args, "--peer");
    let mut cfg = TcpClientConfig::default();
    if let Some(s) = arg(args, "--punch-timeout").and_then(|s| s.parse().ok()) {
        cfg.punch_timeout = Duration::from_secs(s);
    }
    cfg.punch = !args.iter().any(|a| a == "--no-punch");
    cfg.relay = !args.iter().any(|a| a == "--no-relay");
    let identity = Identity::generate();
    let client = match TcpClient::start(main_addr, assist_addr, &name, identity, cfg).await {
        Ok(c) => c,
        Err(e) => {
            emit(json!({"event":"error","peer":null,"reason":e.to_string()}));
            std::process::exit(1);
        }
    };
    emit(
        json!({"event":"registered","name":name,"key":client.public_key().to_string(),
        "public":client.public_addr().to_string(),"local":client.local_addr().to_string()}),
    );

    // Stdin is read from the start; lines wait in the channel until a peer is connected.
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(1024);
    tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });

    let conn = match &target {
        Some(t) => match client.connect(t).await {
            Ok(c) => c,
            Err(e) => {
                emit(json!({"event":"error","peer":t,"reason":e.to_string()}));
                std::process::exit(2);
            }
        },
        None => match client.accept().await {
            Some(c) => c,
            None => {
                emit(json!({"event":"error","peer":null,"reason":"server connection closed"}));
                std::process::exit(2);
            }
        },
    };
    emit(
        json!({"event":"connected","peer":conn.name,"key":conn.key.to_string(),
        "transport":"tcp","path":conn.path.kind,"candidate":conn.path.candidate,
        "remote":conn.path.remote.to_string()}),
    );
    let peer_name = conn.name.clone();
    let (mut rd, mut wr) = tokio::io::split(conn.stream);
    let reader = tokio::spawn(async move {
        loop {
            match read_message(&mut rd).await {
                Ok(Some(text)) => emit(json!({"event":"message","from":peer_name,"text":text})),
                Ok(None) => {
                    emit(json!({"event":"disconnected","peer":peer_name,"reason":"peer closed"}));
                    break;
                }
                Err(e) => {
                    emit(json!({"event":"disconnected","peer":peer_name,"reason":e.to_string()}));
                    break;
                }
            }
        }
    });
    while let Some(line) = lines.recv().await {
        if let Err(e) = send_message(&mut wr, &line).await {
            emit(json!({"event":"error","peer":conn.name,"reason":e.to_string()}));
            break;
        }
    }
    // Stdin closed: end our side and give the peer a moment to finish its own.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), reader).await;
    drop(client);
}
