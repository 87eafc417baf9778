//! The rendezvous server's metrics, all named `punch_server_*`.
//!
//! Owns the names, labels and help texts, and the handles registered once when a server
//! starts ([`UdpMetrics`], [`TcpMetrics`]): nothing is allocated or looked up per packet.
//! The counts themselves are the registries' ([`punch_proto::rendezvous::Stats`],
//! [`punch_proto::tcp::registry::TcpStats`]) and the socket loop's
//! ([`crate::server::IoStats`]); the server loops publish them here every
//! [`PUBLISH_INTERVAL`] as absolute values. Only what no registry sees is counted here
//! directly: requests by kind, datagrams dropped before the loop, TCP relay bytes.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};
use punch_proto::rendezvous::{ErrorCounts, Stats};
use punch_proto::tcp::registry::TcpStats;
use punch_proto::wire::{ErrorCode, Frame};

use crate::server::IoStats;

/// How often the server loops publish their counts (a scrape sees them at most this old).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Requests by kind (label `kind`).
pub const REQUESTS: &str = "punch_server_requests_total";
/// Live registrations (label `transport`).
pub const REGISTRATIONS: &str = "punch_server_registrations";
/// Registrations accepted, new or refreshed (label `transport`).
pub const REGISTRATIONS_ACCEPTED: &str = "punch_server_registrations_accepted_total";
/// Registrations expired without a refresh.
pub const REGISTRATIONS_EXPIRED: &str = "punch_server_registrations_expired_total";
/// Introductions made (label `transport`).
pub const INTRODUCTIONS: &str = "punch_server_introductions_total";
/// Introductions given up unacknowledged.
pub const INTRODUCTION_TIMEOUTS: &str = "punch_server_introduction_timeouts_total";
/// Introduction-to-ready time.
pub const INTRODUCTION_READY: &str = "punch_server_introduction_ready_seconds";
/// Errors answered (labels `transport`, `code`).
pub const ERRORS: &str = "punch_server_errors_total";
/// Registration challenges sent (label `transport`).
pub const CHALLENGES: &str = "punch_server_challenges_total";
/// Old-version registrations told to upgrade (label `transport`).
pub const LEGACY_REFUSED: &str = "punch_server_legacy_refused_total";
/// Live relay sessions (label `transport`).
pub const RELAY_SESSIONS: &str = "punch_server_relay_sessions";
/// Relay sessions opened (label `transport`).
pub const RELAY_SESSIONS_OPENED: &str = "punch_server_relay_sessions_opened_total";
/// Bytes relayed (label `transport`).
pub const RELAYED_BYTES: &str = "punch_server_relayed_bytes_total";
/// UDP datagrams relayed.
pub const RELAYED_DATAGRAMS: &str = "punch_server_relayed_datagrams_total";
/// UDP datagrams dropped (label `reason`).
pub const DROPPED_DATAGRAMS: &str = "punch_server_dropped_datagrams_total";
/// Malformed or unexpected UDP datagrams.
pub const MALFORMED: &str = "punch_server_malformed_datagrams_total";
/// UDP registrations taken without a second signature check (the same bytes again).
pub const SIGNATURES_KNOWN: &str = "punch_server_signatures_known_total";
/// Requests dropped or refused over a per-source rate limit (label `limit`).
pub const RATE_LIMITED: &str = "punch_server_rate_limited_total";
/// Open TCP connections.
pub const TCP_CONNECTIONS: &str = "punch_server_tcp_connections";
/// TCP connections closed for breaking the protocol or a bound.
pub const TCP_REJECTED: &str = "punch_server_tcp_rejected_total";

/// A UDP request's kind, as the `kind` label of [`REQUESTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpRequest {
    /// A STUN binding request (or anything that looks like STUN).
    Stun,
    /// A `<Hi!>` liveness check.
    Hi,
    /// A registration (or its refresh).
    Register,
    /// A request for an introduction.
    Connect,
    /// An introduction's acknowledgement.
    IntroduceAck,
    /// A punch frame of another wire version.
    OtherVersion,
    /// A frame a server does not take.
    OtherFrame,
    /// A relayed datagram (forwarded, refused or a keepalive).
    Relay,
}

impl UdpRequest {
    const ALL: [UdpRequest; 8] = [
        UdpRequest::Stun,
        UdpRequest::Hi,
        UdpRequest::Register,
        UdpRequest::Connect,
        UdpRequest::IntroduceAck,
        UdpRequest::OtherVersion,
        UdpRequest::OtherFrame,
        UdpRequest::Relay,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UdpRequest::Stun => "stun",
            UdpRequest::Hi => "hi",
            UdpRequest::Register => "register",
            UdpRequest::Connect => "connect",
            UdpRequest::IntroduceAck => "introduce_ack",
            UdpRequest::OtherVersion => "other_version",
            UdpRequest::OtherFrame => "other_frame",
            UdpRequest::Relay => "relay",
        }
    }

    /// The kind of a decoded frame.
    pub fn of(frame: &Frame) -> UdpRequest {
        match frame {
            Frame::Register { .. } => UdpRequest::Register,
            Frame::Connect { .. } => UdpRequest::Connect,
            Frame::IntroduceAck { .. } => UdpRequest::IntroduceAck,
            _ => UdpRequest::OtherFrame,
        }
    }
}

/// Describe every server metric to the current recorder (help texts, units).
fn describe() {
    describe_counter!(
        REQUESTS,
        "Requests received, by kind: stun, hi, register, connect, introduce_ack, \
         other_version, other_frame, relay (UDP); tcp_register, tcp_connect, tcp_ready, \
         tcp_relay, tcp_relay_join, tcp_assist, tcp_other (frames on TCP connections)."
    );
    describe_gauge!(
        REGISTRATIONS,
        "Live registrations (peers reachable by name)."
    );
    describe_counter!(
        REGISTRATIONS_ACCEPTED,
        "Registrations accepted, new or refreshed (clients refresh every 25 s)."
    );
    describe_counter!(
        REGISTRATIONS_EXPIRED,
        "UDP registrations expired without a refresh."
    );
    describe_counter!(
        INTRODUCTIONS,
        "Introductions made (UDP: both sides sent their introduction; TCP: both sides told)."
    );
    describe_counter!(
        INTRODUCTION_TIMEOUTS,
        "UDP introductions given up: the introduced side never acknowledged."
    );
    describe_histogram!(
        INTRODUCTION_READY,
        Unit::Seconds,
        "UDP introduction-to-ready time: from sending a pair its introductions to the moment \
         both sides have acknowledged them (each has opened its NAT toward the other; the \
         server then tells both the peer is ready). Pairs that never get there are not \
         counted (see punch_server_introduction_timeouts_total)."
    );
    describe_counter!(
        ERRORS,
        "Requests answered with an error, by wire error code: unknown_peer, name_taken, \
         self_connect, not_registered, busy, bad_request, bad_signature."
    );
    describe_counter!(
        CHALLENGES,
        "Registrations answered with a challenge (every client's first, and replays)."
    );
    describe_counter!(LEGACY_REFUSED, "Old-version registrations told to upgrade.");
    describe_gauge!(
        RELAY_SESSIONS,
        "Relay sessions under way (UDP: relayed a datagram and not expired; TCP: spliced)."
    );
    describe_counter!(RELAY_SESSIONS_OPENED, "Relay sessions opened.");
    describe_counter!(
        RELAYED_BYTES,
        Unit::Bytes,
        "Bytes relayed between peers (UDP: datagrams with their relay header; TCP: stream bytes)."
    );
    describe_counter!(RELAYED_DATAGRAMS, "UDP datagrams relayed.");
    describe_counter!(
        DROPPED_DATAGRAMS,
        "UDP datagrams dropped, by reason: relay (relay off, unknown or closed session, over \
         the rate or volume limit)."
    );
    describe_counter!(
        SIGNATURES_KNOWN,
        "Registrations taken without checking their signature again: byte for byte the \
         last signed registration the record took (over that family on UDP; a refresh over \
         the nonce already signed)."
    );
    describe_counter!(
        MALFORMED,
        "UDP datagrams dropped as malformed or unexpected."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests over a per-source rate limit, by limit: stun (STUN and <Hi!>), register, \
         connect (UDP: dropped unanswered), tcp (registrations and introductions over TCP, \
         answered busy)."
    );
    describe_gauge!(
        TCP_CONNECTIONS,
        "Open TCP connections (control, assist, relay)."
    );
    describe_counter!(
        TCP_REJECTED,
        "TCP connections closed for breaking the protocol or a bound."
    );
}

/// Counters of the errors of one transport, one per code.
#[derive(Debug)]
struct ErrorCounters([Counter; ErrorCode::ALL.len()]);

impl ErrorCounters {
    fn new(transport: &'static str) -> ErrorCounters {
        ErrorCounters(
            ErrorCode::ALL
                .map(|c| counter!(ERRORS, "transport" => transport, "code" => c.as_str())),
        )
    }

    fn publish(&self, counts: &ErrorCounts) {
        for (code, n) in counts.iter() {
            self.0[code.index()].absolute(n);
        }
    }
}

/// What both registries ([`Stats`], [`TcpStats`]) count, under one set of names.
struct RegistryCounts<'a> {
    /// Registrations accepted, new or refreshed.
    accepted: u64,
    introductions: u64,
    errors: &'a ErrorCounts,
    challenged: u64,
    legacy_refused: u64,
    relays_opened: u64,
    signatures_known: u64,
}

/// The handles both servers have, labelled with their transport.
#[derive(Debug)]
struct TransportMetrics {
    registrations: Gauge,
    accepted: Counter,
    introductions: Counter,
    errors: ErrorCounters,
    challenges: Counter,
    legacy: Counter,
    relay_sessions: Gauge,
    relay_opened: Counter,
    relayed_bytes: Counter,
    signatures_known: Counter,
}

impl TransportMetrics {
    /// Describe every server metric, and register `transport`'s handles.
    fn new(transport: &'static str) -> TransportMetrics {
        describe();
        let t = transport;
        TransportMetrics {
            registrations: gauge!(REGISTRATIONS, "transport" => t),
            accepted: counter!(REGISTRATIONS_ACCEPTED, "transport" => t),
            introductions: counter!(INTRODUCTIONS, "transport" => t),
            errors: ErrorCounters::new(t),
            challenges: counter!(CHALLENGES, "transport" => t),
            legacy: counter!(LEGACY_REFUSED, "transport" => t),
            relay_sessions: gauge!(RELAY_SESSIONS, "transport" => t),
            relay_opened: counter!(RELAY_SESSIONS_OPENED, "transport" => t),
            relayed_bytes: counter!(RELAYED_BYTES, "transport" => t),
            signatures_known: counter!(SIGNATURES_KNOWN, "transport" => t),
        }
    }

    /// Publish the registry's counts and its live registrations.
    fn publish(&self, reg: RegistryCounts<'_>, registrations: usize) {
        self.registrations.set(registrations as f64);
        self.accepted.absolute(reg.accepted);
        self.introductions.absolute(reg.introductions);
        self.errors.publish(reg.errors);
        self.challenges.absolute(reg.challenged);
        self.legacy.absolute(reg.legacy_refused);
        self.relay_opened.absolute(reg.relays_opened);
        self.signatures_known.absolute(reg.signatures_known);
    }
}

/// The UDP server's metric handles.
#[derive(Debug)]
pub struct UdpMetrics {
    common: TransportMetrics,
    requests: [Counter; UdpRequest::ALL.len()],
    expired: Counter,
    intro_timeouts: Counter,
    ready: Histogram,
    relayed_datagrams: Counter,
    relay_dropped: Counter,
    malformed: Counter,
    limited_stun: Counter,
    limited_register: Counter,
    limited_connect: Counter,
}

impl Default for UdpMetrics {
    fn default() -> Self {
        UdpMetrics::new()
    }
}

impl UdpMetrics {
    /// Register the handles with the current recorder (no-ops without one).
    pub fn new() -> UdpMetrics {
        let limited = |limit: &'static str| counter!(RATE_LIMITED, "limit" => limit);
        UdpMetrics {
            common: TransportMetrics::new("udp"),
            requests: UdpRequest::ALL.map(|k| counter!(REQUESTS, "kind" => k.as_str())),
            expired: counter!(REGISTRATIONS_EXPIRED),
            intro_timeouts: counter!(INTRODUCTION_TIMEOUTS),
            ready: histogram!(INTRODUCTION_READY),
            relayed_datagrams: counter!(RELAYED_DATAGRAMS),
            relay_dropped: counter!(DROPPED_DATAGRAMS, "reason" => "relay"),
            malformed: counter!(MALFORMED),
            limited_stun: limited("stun"),
            limited_register: limited("register"),
            limited_connect: limited("connect"),
        }
    }

    /// Count `n` requests of `kind`.
    pub fn requests(&self, kind: UdpRequest, n: u64) {
        self.requests[kind as usize].increment(n);
    }

    /// The counter of relayed datagrams received (for the receive task, which relays).
    pub fn relay_requests(&self) -> Counter {
        self.request_counter(UdpRequest::Relay)
    }

    /// The counter of requests of `kind` (for the receive tasks, which count per batch).
    pub fn request_counter(&self, kind: UdpRequest) -> Counter {
        self.requests[kind as usize].clone()
    }

    /// One pair's introduction-to-ready time
    /// ([`punch_proto::rendezvous::Rendezvous::poll_ready_time`]).
    pub fn ready(&self, after: Duration) {
        self.ready.record(after.as_secs_f64());
    }

    /// Publish the counts so far: the loop's, the registry's, its live registrations and
    /// live relay sessions.
    pub fn publish(&self, io: &IoStats, reg: &Stats, registrations: usize, relays: usize) {
        let counts = RegistryCounts {
            accepted: reg.registrations,
            introductions: reg.introductions,
            errors: &reg.errors_by_code,
            challenged: reg.challenged,
            legacy_refused: reg.legacy_refused,
            relays_opened: reg.relay_sessions,
            signatures_known: reg.signatures_known,
        };
        self.common.publish(counts, registrations);
        self.common.relay_sessions.set(relays as f64);
        self.common.relayed_bytes.absolute(reg.relayed_bytes);
        self.expired.absolute(reg.expired);
        self.intro_timeouts.absolute(reg.intro_timeouts);
        self.relayed_datagrams.absolute(reg.relayed_packets);
        self.relay_dropped.absolute(reg.relay_dropped);
        self.malformed.absolute(io.malformed);
        self.limited_stun.absolute(io.stun_limited);
        self.limited_register.absolute(reg.register_limited);
        self.limited_connect.absolute(reg.connect_limited);
    }
}

/// A TCP frame's kind, as the `kind` label of [`REQUESTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpRequest {
    /// A registration over a control connection.
    Register,
    /// A request for an introduction.
    Connect,
    /// The target's "ready" (its punching socket is mapped).
    Ready,
    /// A request to relay a session.
    Relay,
    /// A relay connection joining its session.
    RelayJoin,
    /// A punching socket's frame on the assist port.
    Assist,
    /// Any other frame.
    Other,
}

impl TcpRequest {
    const ALL: [TcpRequest; 7] = [
        TcpRequest::Register,
        TcpRequest::Connect,
        TcpRequest::Ready,
        TcpRequest::Relay,
        TcpRequest::RelayJoin,
        TcpRequest::Assist,
        TcpRequest::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpRequest::Register => "tcp_register",
            TcpRequest::Connect => "tcp_connect",
            TcpRequest::Ready => "tcp_ready",
            TcpRequest::Relay => "tcp_relay",
            TcpRequest::RelayJoin => "tcp_relay_join",
            TcpRequest::Assist => "tcp_assist",
            TcpRequest::Other => "tcp_other",
        }
    }

    /// The kind of a decoded frame.
    pub fn of(frame: &Frame) -> TcpRequest {
        match frame {
            Frame::Register { .. } => TcpRequest::Register,
            Frame::TcpConnect { .. } => TcpRequest::Connect,
            Frame::TcpReady { .. } => TcpRequest::Ready,
            Frame::TcpRelay { .. } => TcpRequest::Relay,
            Frame::TcpRelayJoin { .. } => TcpRequest::RelayJoin,
            Frame::TcpAssist { .. } => TcpRequest::Assist,
            _ => TcpRequest::Other,
        }
    }
}

/// The TCP server's metric handles.
#[derive(Debug)]
pub struct TcpMetrics {
    common: TransportMetrics,
    requests: [Counter; TcpRequest::ALL.len()],
    limited: Counter,
    connections: Gauge,
    rejected: Counter,
}

impl Default for TcpMetrics {
    fn default() -> Self {
        TcpMetrics::new()
    }
}

impl TcpMetrics {
    /// Register the handles with the current recorder (no-ops without one).
    pub fn new() -> TcpMetrics {
        TcpMetrics {
            common: TransportMetrics::new("tcp"),
            requests: TcpRequest::ALL.map(|k| counter!(REQUESTS, "kind" => k.as_str())),
            limited: counter!(RATE_LIMITED, "limit" => "tcp"),
            connections: gauge!(TCP_CONNECTIONS),
            rejected: counter!(TCP_REJECTED),
        }
    }

    /// Count one frame received.
    pub fn request(&self, frame: &Frame) {
        self.requests[TcpRequest::of(frame) as usize].increment(1);
    }

    /// The counter of relayed bytes (for the splice tasks, which count as they copy).
    pub fn relayed_bytes(&self) -> Counter {
        self.common.relayed_bytes.clone()
    }

    /// The gauge of live relay sessions (a splice task adds itself while it runs).
    pub fn relay_sessions(&self) -> Gauge {
        self.common.relay_sessions.clone()
    }

    /// Publish the registry's counts, its live registrations and the open connections.
    pub fn publish(&self, reg: &TcpStats, registrations: usize, connections: usize) {
        let counts = RegistryCounts {
            accepted: reg.registrations,
            introductions: reg.introductions,
            errors: &reg.errors,
            challenged: reg.challenged,
            legacy_refused: reg.legacy_refused,
            relays_opened: reg.relays,
            signatures_known: reg.signatures_known,
        };
        self.common.publish(counts, registrations);
        self.limited.absolute(reg.rate_limited);
        self.connections.set(connections as f64);
        self.rejected.absolute(reg.rejected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusHandle;

    /// Handles made by `new` under a recorder of their own, and what renders it.
    fn recorded<T>(new: impl FnOnce() -> T) -> (T, PrometheusHandle) {
        let recorder = super::super::recorder();
        let handle = recorder.handle();
        (metrics::with_local_recorder(&recorder, new), handle)
    }

    /// Every one of `lines` is a line of what `handle` renders.
    fn assert_rendered(handle: &PrometheusHandle, lines: &[&str]) {
        let text = handle.render();
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "{line} not in:\n{text}");
        }
    }

    #[test]
    fn request_kinds_index_their_tables() {
        for (i, k) in UdpRequest::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        for (i, k) in TcpRequest::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
    }

    #[test]
    fn published_counts_render_under_their_names() {
        let (m, handle) = recorded(UdpMetrics::new);
        let mut reg = Stats {
            introductions: 4,
            relayed_bytes: 1500,
            signatures_known: 7,
            ..Stats::default()
        };
        reg.errors_by_code.add(ErrorCode::UnknownPeer);
        let io = IoStats {
            stun_limited: 2,
            ..IoStats::default()
        };
        m.requests(UdpRequest::Connect, 5);
        m.publish(&io, &reg, 3, 1);
        m.ready(Duration::from_millis(40));
        let lines = [
            "punch_server_requests_total{kind=\"connect\"} 5",
            "punch_server_introductions_total{transport=\"udp\"} 4",
            "punch_server_relayed_bytes_total{transport=\"udp\"} 1500",
            "punch_server_errors_total{transport=\"udp\",code=\"unknown_peer\"} 1",
            "punch_server_errors_total{transport=\"udp\",code=\"busy\"} 0",
            "punch_server_rate_limited_total{limit=\"stun\"} 2",
            "punch_server_signatures_known_total{transport=\"udp\"} 7",
            "punch_server_registrations{transport=\"udp\"} 3",
            "punch_server_relay_sessions{transport=\"udp\"} 1",
            "punch_server_introduction_ready_seconds_bucket{le=\"0.05\"} 1",
        ];
        assert_rendered(&handle, &lines);
        // Absolute values never move a counter back (a second server's smaller counts).
        m.publish(&io, &Stats::default(), 0, 0);
        assert!(handle
            .render()
            .contains("punch_server_introductions_total{transport=\"udp\"} 4"));
    }

    #[test]
    fn tcp_counts_render_under_the_tcp_label() {
        let (m, handle) = recorded(TcpMetrics::new);
        let mut reg = TcpStats {
            registrations: 6,
            introductions: 2,
            relays: 1,
            challenged: 3,
            signatures_known: 8,
            ..TcpStats::default()
        };
        reg.errors.add(ErrorCode::Busy);
        m.publish(&reg, 5, 7);
        let lines = [
            "punch_server_registrations{transport=\"tcp\"} 5",
            "punch_server_registrations_accepted_total{transport=\"tcp\"} 6",
            "punch_server_introductions_total{transport=\"tcp\"} 2",
            "punch_server_relay_sessions_opened_total{transport=\"tcp\"} 1",
            "punch_server_challenges_total{transport=\"tcp\"} 3",
            "punch_server_signatures_known_total{transport=\"tcp\"} 8",
            "punch_server_errors_total{transport=\"tcp\",code=\"busy\"} 1",
            "punch_server_tcp_connections 7",
        ];
        assert_rendered(&handle, &lines);
    }
}
