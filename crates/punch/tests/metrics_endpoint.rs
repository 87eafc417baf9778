//! The metrics endpoint on loopback: `GET /metrics` answers the recorder's Prometheus text
//! (which parses, and shows counts as they move), other paths 404, garbage and oversized
//! requests are answered with a status or closed, scrapes beyond the limit are closed
//! without starving later ones, a port in use is a clear error, and dropping the server
//! closes the port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use punch::telemetry::{self, MetricsError, MetricsServer, MAX_REQUEST_HEAD, MAX_SCRAPERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every network step of these tests.
const STEP: Duration = Duration::from_secs(5);

/// Send `request` and read until the server closes; the answer as text.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    tokio::time::timeout(STEP, async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // The server may answer (and close) before taking all of an oversized request.
        let _ = s.write_all(request).await;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("the endpoint answers or closes in time")
}

/// `name{labels} value` lines of a Prometheus text body; panics on a malformed line.
fn parse(body: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: value: {e}"));
        out.insert(series.to_string(), value);
    }
    out
}

/// Scrape and return the parsed body, after checking the status and content type.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(body)
}

#[tokio::test]
async fn scrapes_show_the_counts_as_they_move_and_other_requests_are_refused() {
    let recorder = telemetry::recorder();
    let handle = recorder.handle();
    let counter = metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!("test_scrapes_total", "a test counter");
        metrics::counter!("test_scrapes_total", "kind" => "a")
    });
    let histogram =
        metrics::with_local_recorder(&recorder, || metrics::histogram!("test_wait_seconds"));
    let server = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), handle)
        .await
        .expect("bind on loopback");
    let addr = server.local_addr();

    counter.increment(3);
    histogram.record(0.02);
    let first = scrape(addr).await;
    assert_eq!(
        first.get("test_scrapes_total{kind=\"a\"}"),
        Some(&3.0),
        "{first:?}"
    );
    // Histograms are real ones, with our buckets: 0.02 s is under 0.025 and over 0.01.
    assert_eq!(
        first.get("test_wait_seconds_bucket{le=\"0.025\"}"),
        Some(&1.0)
    );
    assert_eq!(
        first.get("test_wait_seconds_bucket{le=\"0.01\"}"),
        Some(&0.0)
    );
    assert_eq!(first.get("test_wait_seconds_count"), Some(&1.0));
    counter.increment(2);
    let second = scrape(addr).await;
    assert_eq!(second.get("test_scrapes_total{kind=\"a\"}"), Some(&5.0));

    let not_found = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let garbage = exchange(
        addr,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    )
    .await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let oversized = vec![b'x'; 4 * MAX_REQUEST_HEAD];
    let big = exchange(addr, &oversized).await;
    assert!(
        big.is_empty() || big.starts_with("HTTP/1.1 431 "),
        "answered or closed: {big}"
    );
    // Still serving after all that.
    assert_eq!(
        scrape(addr).await.get("test_scrapes_total{kind=\"a\"}"),
        Some(&5.0)
    );
}

#[tokio::test]
async fn scrapers_beyond_the_limit_are_closed_until_places_free_up() {
    let handle = telemetry::recorder().handle();
    let server = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), handle)
        .await
        .expect("bind on loopback");
    let addr = server.local_addr();
    // Connections that say nothing hold every place...
    let mut silent = Vec::new();
    for _ in 0..MAX_SCRAPERS {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // ...give the server time to take them in, so the next one is the one too many.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let extra = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        extra.is_empty(),
        "one too many is closed unanswered: {extra}"
    );
    // Once they hang up, scrapes are served again.
    drop(silent);
    let end = tokio::time::Instant::now() + STEP;
    loop {
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        if answer.starts_with("HTTP/1.1 200 OK") {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_port_in_use_is_an_error_and_a_dropped_server_closes_its_port() {
    let handle = telemetry::recorder().handle();
    let server = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), handle.clone())
        .await
        .expect("bind on loopback");
    let addr = server.local_addr();
    match MetricsServer::bind(addr, handle).await {
        Err(MetricsError::Bind { addr: a, source }) => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    drop(server);
    let end = tokio::time::Instant::now() + STEP;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < end,
            "still accepting after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
