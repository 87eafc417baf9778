//! The scrape endpoint: `GET /metrics` over plain HTTP/1.x, answered with the recorder's
//! Prometheus text.
//!
//! Owns one listener and its accept task (stopped when [`MetricsServer`] is dropped), and
//! one short task per scrape, at most [`MAX_SCRAPERS`] at once (more are closed at once).
//! A request head is read up to [`MAX_REQUEST_HEAD`] bytes within [`REQUEST_TIMEOUT`];
//! whatever arrives is untrusted: it is answered with a status (400, 404, 405, 431) or
//! the connection is closed, never a panic. Every answer closes the connection.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

use super::MetricsError;

/// Scrapes served at once; a connection beyond them is closed unanswered (Prometheus
/// scrapes one target with one connection at a time).
pub const MAX_SCRAPERS: usize = 4;
/// Longest request head read (request line and headers; a scraper's is a few hundred
/// bytes). Longer: answered 431.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a scrape has to send its request and take the answer; then it is closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the recorder's upkeep runs (it bounds the histograms' memory; the
/// exporter's documentation asks for it every few seconds when its own listener is not used).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Bind the scrape listener.
pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// The scrape endpoint running in the background; stops (with any scrape under way) when
/// dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Bind `addr` and serve `handle`'s metrics there.
    pub async fn bind(addr: SocketAddr, handle: PrometheusHandle) -> Result<Self, MetricsError> {
        Ok(MetricsServer::start(bind(addr).await?, handle))
    }

    pub(super) fn start(listener: TcpListener, handle: PrometheusHandle) -> MetricsServer {
        // A listener bound a moment ago has an address; the fallback is never used.
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let task = tokio::spawn(serve(listener, handle));
        MetricsServer { local, task }
    }

    /// The address scrapes go to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accept scrapes until aborted; the scrape tasks belong to this one (dropping the set
/// aborts them).
async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    let mut scrapes = JoinSet::new();
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) if scrapes.len() < MAX_SCRAPERS => {
                    debug!(%from, "metrics scrape");
                    scrapes.spawn(scrape(stream, handle.clone()));
                }
                Ok((_, from)) => debug!(%from, "too many metrics scrapes at once; closed"),
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    // E.g. EMFILE: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = scrapes.join_next(), if !scrapes.is_empty() => {}
            _ = upkeep.tick() => handle.run_upkeep(),
        }
    }
}

/// Read one request head, answer it, close.
async fn scrape(mut stream: TcpStream, handle: PrometheusHandle) {
    let served = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let head = read_head(&mut stream).await?;
        let answer = respond(head, || handle.render());
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if let Ok(Err(e)) = served {
        debug!(error = %e, "metrics scrape failed");
    }
}

/// What was read of a request head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete head (up to and without the blank line).
    Complete(Vec<u8>),
    /// [`MAX_REQUEST_HEAD`] bytes without the blank line that ends a head.
    TooLarge,
    /// The client stopped sending before the head ended.
    Truncated,
}

/// Read until the blank line that ends a request head, at most [`MAX_REQUEST_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Truncated);
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Head::Complete(head));
        }
        if head.len() >= MAX_REQUEST_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where the head in `buf` ends (CRLF CRLF, or a bare LF LF as some tools send), if it does
/// within [`MAX_REQUEST_HEAD`].
fn head_end(buf: &[u8]) -> Option<usize> {
    let buf = &buf[..buf.len().min(MAX_REQUEST_HEAD)];
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The whole answer to `head`; `render` is called only for a scrape of `/metrics`.
fn respond(head: Head, render: impl FnOnce() -> String) -> Vec<u8> {
    let head = match head {
        Head::Complete(h) => h,
        Head::TooLarge => return status(431, "Request Header Fields Too Large", ""),
        Head::Truncated => return status(400, "Bad Request", "incomplete request\n"),
    };
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return status(400, "Bad Request", "request line is not text\n");
    };
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return status(400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return status(400, "Bad Request", "HTTP/1.x only\n");
    }
    let path = target.split('?').next().unwrap_or_default();
    let headers_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut answer = status(405, "Method Not Allowed", "GET /metrics\n");
            // Insert the Allow header the status requires (RFC 9110 §15.5.6).
            let at = answer.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
            answer.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
            return answer;
        }
    };
    if path != "/metrics" {
        return status(404, "Not Found", "metrics are at /metrics\n");
    }
    let body = render();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !headers_only {
        answer.extend_from_slice(body.as_bytes());
    }
    answer
}

fn status(code: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(request: &[u8]) -> String {
        let head = match head_end(request) {
            Some(end) => Head::Complete(request[..end].to_vec()),
            None if request.len() >= MAX_REQUEST_HEAD => Head::TooLarge,
            None => Head::Truncated,
        };
        String::from_utf8(respond(head, || "m_total 3\n".into())).expect("answers are text")
    }

    #[test]
    fn a_scrape_gets_the_text_format_and_other_paths_404() {
        let ok = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4\r\n"),
            "{ok}"
        );
        assert!(ok.contains("Content-Length: 10\r\n") && ok.ends_with("\r\n\r\nm_total 3\n"));
        let q = answer(b"GET /metrics?name[]=x HTTP/1.0\n\n");
        assert!(q.starts_with("HTTP/1.1 200 OK"), "{q}");
        let head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        for other in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\n\r\n",
        ] {
            assert!(answer(other).starts_with("HTTP/1.1 404 "), "{other:?}");
        }
    }

    #[test]
    fn garbage_is_answered_with_a_status_and_never_rendered() {
        let cases: [(&[u8], &str); 6] = [
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405 "),
            (b"GET /metrics\r\n\r\n", "400 "),
            (b"GET /metrics SPDY/3\r\n\r\n", "400 "),
            (b"\xff\xfe GET /metrics HTTP/1.1\r\n\r\n", "400 "),
            (b"GET /metrics HTTP/1.1\r\nHost: x", "400 "),
            (&[b'a'; MAX_REQUEST_HEAD], "431 "),
        ];
        for (request, code) in cases {
            let head = match head_end(request) {
                Some(end) => Head::Complete(request[..end].to_vec()),
                None if request.len() >= MAX_REQUEST_HEAD => Head::TooLarge,
                None => Head::Truncated,
            };
            let a = respond(head, || panic!("rendered for {request:?}"));
            let a = String::from_utf8_lossy(&a);
            assert!(
                a.starts_with(&format!("HTTP/1.1 {code}")),
                "{request:?}: {a}"
            );
        }
        assert!(answer(b"PUT /metrics HTTP/1.1\r\n\r\n").contains("\r\nAllow: GET, HEAD\r\n"));
    }
}
