//! Lab: a garbage flood at the server while two peers register and chat. `lab/flood.py`
//! in the core namespace sends, for 15 s at up to 20,000 datagrams/s, every kind of
//! nonsense an internet-facing server sees (random bytes, truncated, oversized and
//! wrongly-sized STUN, STUN with hostile attributes, junk in punch's frame range and in
//! QUIC's, `<Hi!>`), and opens TCP connections to the main and assist ports that send junk
//! and hang up. Meanwhile alice and bob (port-restricted cones) register, connect and
//! stream numbered messages: every one must arrive, once and in order; the server must
//! still run afterwards; its peak RSS is printed and must stay under a bound.
mod lab;

use std::time::Duration;

use lab::abuse::{record, status_kib, Script};
use lab::relay::{assert_complete, Pair, STREAM_GAP};
use lab::{require_lab, Lab};

const FLOOD_SECS: &str = "15";
const FLOOD_RATE: &str = "20000";
const MESSAGES: usize = 60;
/// Peak resident memory the server may reach under the flood.
const MAX_PEAK_RSS_KIB: u64 = 256 * 1024;

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn chat_survives_a_garbage_flood_at_the_server() {
    let test = "garbage flood at the server";
    require_lab(test);
    let pr = "port-restricted-cone";
    let lab = Lab::pair("gflood", pr, pr);
    let srv = lab.get("SRV_IP").to_string();
    let mut flood = Script::start(
        &lab,
        "core",
        "flood.py",
        &[srv.as_str(), "3478", FLOOD_SECS, FLOOD_RATE, "3479"],
    );

    let mut pair = Pair::start(&lab, &lab.ns("a"), &lab.ns("b"), "auto");
    let server_pid = pair.server.as_ref().expect("server").pid();
    let connected = pair.connected();
    pair.stream(MESSAGES, STREAM_GAP, |_, _| {});
    let got = pair.received(MESSAGES, Duration::from_secs(30));
    assert_complete(test, &got, MESSAGES, &pair);
    assert!(
        flood.running(),
        "the flood ended before the chat did: the chat was not tested under it"
    );
    let report = flood.report();
    let sent: u64 = report["udp_sent"]
        .as_object()
        .expect("per kind")
        .values()
        .filter_map(|v| v.as_u64())
        .sum();

    let server = pair.server.as_mut().expect("server");
    assert!(server.running(), "the server died under the flood");
    let peak = status_kib(server_pid, "VmHWM:").expect("server's peak RSS");
    let now = status_kib(server_pid, "VmRSS:").expect("server's RSS");
    record(&format!(
        "{test}: chat {}/{MESSAGES} in order over {} path; server alive, peak RSS {:.1} MiB \
         (now {:.1} MiB); flood {sent} datagrams in {}s ({:.0}/s), {} TCP junk connections",
        got.len(),
        connected["path"].as_str().unwrap_or("?"),
        peak as f64 / 1024.0,
        now as f64 / 1024.0,
        report["seconds"],
        sent as f64 / report["seconds"].as_f64().unwrap_or(1.0),
        report["tcp_junk_connections"],
    ));
    println!("flood report: {report}");
    assert!(
        sent > 10_000,
        "the flood sent too little to mean anything: {report}"
    );
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "server peak RSS {peak} KiB over {MAX_PEAK_RSS_KIB} KiB"
    );
}
