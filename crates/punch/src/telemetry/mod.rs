//! Prometheus metrics: the process's recorder, the scrape endpoint, and the metric
//! families of the server and of the client.
//!
//! Owns building and installing the recorder (the `metrics` facade with
//! `metrics-exporter-prometheus` rendering the text format), the HTTP endpoint that
//! serves it ([`MetricsServer`], our own small task: the exporter's listener is not used),
//! and the names, labels and help texts of every metric ([`server`], [`client`]). It does
//! not count anything itself: the server's loops and the sans-IO registries count, and
//! publish here; the client's events are turned into metrics by [`client::ClientMetrics`].
//!
//! Without an installed recorder every metric handle is a no-op, so the server and the
//! client cost nothing extra when metrics are off.
//!
//! Also here: [`quic_stats`], one QUIC connection's statistics as the JSON the benchmark
//! tools print (`punch bench` and `punch-loadgen quic-plain`), so both say the same.

pub mod client;
mod http;
pub mod server;

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

pub use http::{
    MetricsServer, CONTENT_TYPE, MAX_REQUEST_HEAD, MAX_SCRAPERS, REQUEST_TIMEOUT, UPKEEP_INTERVAL,
};
pub use metrics_exporter_prometheus::PrometheusHandle;

/// Bucket bounds (seconds) of every histogram whose name ends in `_seconds`: from a few
/// milliseconds (loopback, a LAN) to the punching deadline and beyond (10 s by default).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Another recorder is already installed in this process (there is one per process).
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    /// The scrape address could not be bound (in use, not ours, no permission).
    #[error("cannot listen for metrics scrapes on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// What `conn`'s QUIC statistics say so far, as JSON: round trip (µs), congestion window,
/// path MTU, packets lost, congestion events, how often this side found itself blocked by
/// the peer's flow control (STREAM_DATA_BLOCKED and DATA_BLOCKED frames sent: a sender
/// waiting for window, not for CPU or the network), and UDP datagrams and system calls
/// each way (datagrams per call show GSO and GRO at work).
pub fn quic_stats(conn: &quinn::Connection) -> serde_json::Value {
    let s = conn.stats();
    serde_json::json!({"rtt_us": s.path.rtt.as_micros() as u64, "cwnd": s.path.cwnd,
           "mtu": s.path.current_mtu, "lost_packets": s.path.lost_packets,
           "congestion_events": s.path.congestion_events,
           "stream_blocked": s.frame_tx.stream_data_blocked,
           "data_blocked": s.frame_tx.data_blocked,
           "tx_datagrams": s.udp_tx.datagrams, "tx_ios": s.udp_tx.ios,
           "rx_datagrams": s.udp_rx.datagrams, "rx_ios": s.udp_rx.ios})
}

/// A recorder with our histogram buckets, not installed: for [`install`], and for tests
/// that use it through `metrics::with_local_recorder`.
pub fn recorder() -> PrometheusRecorder {
    let builder = PrometheusBuilder::new();
    // Only an empty bucket list is refused, and SECONDS_BUCKETS is a non-empty constant.
    let builder = builder
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .expect("the bucket list is a non-empty constant");
    builder.build_recorder()
}

/// Install [`recorder`] as the process's recorder and return the handle that renders it.
/// Call before the server or client starts, so their metric handles register with it.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let recorder = recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    Ok(handle)
}

/// Install the recorder and serve it on `addr`: what `--metrics ADDR` does. The endpoint
/// stops when the returned server is dropped.
pub async fn serve(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
    // Bind first: a bad address leaves no recorder behind that nobody can scrape.
    let listener = http::bind(addr).await?;
    let handle = install()?;
    Ok(MetricsServer::start(listener, handle))
}
