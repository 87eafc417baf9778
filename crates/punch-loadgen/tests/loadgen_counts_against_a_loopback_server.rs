//! The load generator against a real punch server on loopback: a short STUN flood and a
//! few hundred registrations, with counts that must add up (every request answered or
//! counted unanswered, every client registered and refreshed from its own address).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use punch::punch_proto::ratelimit::RateLimit;
use punch::punch_proto::rendezvous::RendezvousConfig;
use punch::server::{ServerConfig, ServerSockets};

/// A punch server on 127.0.0.1 with its rate limits off, served by a runtime on its own
/// thread until the returned sender is dropped.
fn server() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let off = RateLimit::new(0.0, 1.0);
            let cfg = ServerConfig {
                rendezvous: RendezvousConfig {
                    register_limit: off,
                    connect_limit: off,
                    ..RendezvousConfig::default()
                },
                stun_limit: off,
                ..ServerConfig::default()
            };
            let sockets = ServerSockets::bind("127.0.0.1:0".parse().unwrap(), &cfg)
                .await
                .expect("bind");
            addr_tx.send(sockets.local_addr()).unwrap();
            let stop = async {
                let _ = stop_rx.await;
            };
            punch::server::run(sockets, cfg, stop).await.expect("serve");
        });
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server address");
    (addr, stop_tx, thread)
}

fn loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_punch-loadgen"))
        .args(args)
        .output()
        .expect("run punch-loadgen");
    assert!(
        out.status.success(),
        "punch-loadgen {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(text.lines().last().expect("a JSON line")).expect("JSON")
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn stun_and_register_counts_add_up() {
    let (addr, stop, thread) = server();
    let server = addr.to_string();

    let stun = loadgen(&[
        "stun",
        "--server",
        &server,
        "--sockets",
        "4",
        "--window",
        "2",
        "--duration",
        "0.3",
    ]);
    assert!(n(&stun, "answered") >= 100, "few answers: {stun}");
    assert_eq!(n(&stun, "errors"), 0, "{stun}");
    assert_eq!(
        n(&stun, "answered") + n(&stun, "unanswered"),
        n(&stun, "sent"),
        "{stun}"
    );
    assert!(n(&stun, "p99_us") >= n(&stun, "p50_us"), "{stun}");

    let reg = loadgen(&[
        "register",
        "--server",
        &server,
        "--clients",
        "300",
        "--sockets",
        "4",
        "--window",
        "64",
        "--prefix",
        "smoke",
        "--max-seconds",
        "20",
    ]);
    let r = &reg["register"];
    assert_eq!(n(r, "registered"), 300, "{reg}");
    assert_eq!(n(r, "lost") + n(r, "refused") + n(r, "errors"), 0, "{reg}");
    assert_eq!(n(r, "wrong_address"), 0, "{reg}");
    assert_eq!(n(&reg["refresh"], "refreshed"), 300, "{reg}");

    // The same names from other keys are refused: the server checked the signatures'
    // keys against the owners the first run recorded.
    let again = loadgen(&[
        "register",
        "--server",
        &server,
        "--clients",
        "50",
        "--sockets",
        "4",
        "--prefix",
        "smoke",
        "--seed",
        "2",
        "--no-refresh",
        "--max-seconds",
        "20",
    ]);
    assert_eq!(n(&again["register"], "registered"), 0, "{again}");
    assert_eq!(n(&again["register"], "refused"), 50, "{again}");

    drop(stop);
    thread.join().expect("server thread");
}

#[test]
fn quic_plain_delivers_the_bulk_it_reports() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut server = Command::new(env!("CARGO_BIN_EXE_punch-loadgen"))
        .args([
            "quic-plain",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--count",
            "2",
            "--timeout",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the quic-plain server");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the server's first line");
    let hello: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    let (addr, key) = (
        hello["listening"].as_str().expect("listening").to_string(),
        hello["key"].as_str().expect("key").to_string(),
    );

    // Checked before anything is sent: the server still waits for two connections.
    let out = Command::new(env!("CARGO_BIN_EXE_punch-loadgen"))
        .args(["quic-plain", "client", "--server", &addr, "--key", &key])
        .args(["--mib", "2000000"])
        .output()
        .expect("run punch-loadgen");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mib must be 0 to 1048576"), "{err}");

    // Without --mib: the first byte only.
    let plain = loadgen(&["quic-plain", "client", "--server", &addr, "--key", &key]);
    assert!(plain["first_byte_ms"].as_f64().expect("first byte") > 0.0);
    assert!(plain.get("bytes").is_none(), "{plain}");

    let bulk = loadgen(&[
        "quic-plain",
        "client",
        "--server",
        &addr,
        "--key",
        &key,
        "--mib",
        "3",
    ]);
    // The client checks the server's count against what it pushed before it prints.
    assert_eq!(n(&bulk, "bytes"), 3 * 1024 * 1024, "{bulk}");
    let (secs, mb_s) = (bulk["secs"].as_f64(), bulk["mb_s"].as_f64());
    assert!(secs.is_some_and(|s| s > 0.0), "{bulk}");
    assert!(mb_s.is_some_and(|r| r > 0.0), "{bulk}");
    // At least the bulk's bytes left in datagrams of at most 1500 bytes.
    assert!(
        n(&bulk["quic"], "tx_datagrams") >= 3 * 1024 * 1024 / 1500,
        "{bulk}"
    );

    let status = server.wait().expect("server exit");
    assert!(
        status.success(),
        "the server served both connections and exited"
    );
}
