//! `--metrics ADDR` on loopback: a server serves its counts there (a `<Hi!>` check shows
//! up in `punch_server_requests_total{kind="hi"}`), a port in use or a bad address stops
//! the server and the chat with a clear error before they start (the chat sends nothing),
//! and both `--help` texts teach the flag with a scrape example.

#[path = "chat_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use support::{run, Proc, Server, TempDir, EVENT_TIMEOUT};

const TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics` from `addr`; the body, if the answer was a 200.
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200 ").then(|| body.to_string())
}

/// The value of `series` in a scrape body.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_server_serves_its_counts() {
    let server = Server::start_with(&["--metrics", "127.0.0.1:0"]);
    // Printed before the server listens, so it is in the log by now.
    let log = server.proc.stderr();
    let addr: SocketAddr = log
        .lines()
        .find_map(|l| l.strip_prefix("metrics: http://")?.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in:\n{log}"))
        .parse()
        .expect("a socket address");
    let hi = "punch_server_requests_total{kind=\"hi\"}";
    // The endpoint answers as soon as it is bound; the server's counters appear once it
    // runs: wait for them, then they must start at zero.
    let end = Instant::now() + EVENT_TIMEOUT;
    let before = loop {
        let body = scrape(addr).expect("a scrape");
        if value(&body, hi).is_some() {
            break body;
        }
        assert!(Instant::now() < end, "the counters never appeared:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(value(&before, hi), Some(0.0), "{before}");
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe.send_to(b"<Hi!>", server.addr).expect("send");
    let end = Instant::now() + EVENT_TIMEOUT;
    loop {
        let body = scrape(addr).expect("a scrape");
        if value(&body, hi) == Some(1.0) {
            assert!(
                body.contains("# HELP punch_server_requests_total "),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < end, "the check never showed:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_port_in_use_stops_server_and_chat_before_they_start() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = TempDir::new("data");
    let (status, _, err) = run(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            &addr,
            "--data-dir",
            data.as_str(),
        ],
        TIMEOUT,
    );
    assert!(!status.success(), "{err}");
    assert!(err.contains(&format!("--metrics {addr}")), "{err}");
    assert!(err.contains("cannot listen for metrics scrapes"), "{err}");
    assert!(err.contains("in use"), "the reason is given: {err}");
    assert!(!err.contains("listening on"), "the server started: {err}");

    // The chat's server is a silent socket: anything the chat sent would sit there.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent.set_nonblocking(true).expect("nonblocking");
    let home = TempDir::new("metrics-chat");
    let server = silent.local_addr().expect("addr");
    let mut chat = Proc::chat_with(server, "alice", &home, &[], &["--json", "--metrics", &addr]);
    let status = chat.wait_exit(TIMEOUT);
    assert!(!status.success());
    assert!(
        chat.stderr().contains("cannot listen for metrics scrapes"),
        "{}",
        chat.stderr()
    );
    let mut buf = [0u8; 2048];
    assert!(
        silent.recv_from(&mut buf).is_err(),
        "the chat sent something first"
    );
}

#[test]
fn a_bad_address_is_refused_and_help_teaches_the_flag() {
    let (status, _, err) = run(&["server", "--metrics", "localhost"], TIMEOUT);
    assert!(!status.success());
    assert!(err.contains("--metrics"), "{err}");
    for cmd in ["server", "chat"] {
        let (status, out, err) = run(&[cmd, "--help"], TIMEOUT);
        assert!(status.success(), "{err}");
        assert!(out.contains("--metrics <ADDR>"), "{cmd} --help:\n{out}");
        assert!(
            out.contains("curl http://127.0.0.1:"),
            "{cmd} --help:\n{out}"
        );
    }
}
