//! Lab: `punch server --metrics` and `punch chat --metrics` serve Prometheus text, and the
//! counts move with what happens. Each endpoint listens on its namespace's loopback and is
//! scraped from inside that namespace (`ip netns exec NS python3`, a lab tool already),
//! before and after a chat: registrations, introductions, requests, the
//! introduction-to-ready histogram, the path series of each peer, time to direct and
//! punching outcomes on a punched pair; relay sessions, datagrams and bytes on a relayed
//! one, and an error by its code.
mod lab;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::relay::{chat_args, Pair};
use lab::require_lab;
use lab::{record_to, tempdir, Lab, Proc, EVENT_TIMEOUT};

/// Where each process serves its metrics, on its own namespace's loopback.
const SERVER_METRICS: &str = "127.0.0.1:9478";
const CHAT_METRICS: &str = "127.0.0.1:9479";
/// How long a count may take to show (the server publishes every second).
const SHOW: Duration = Duration::from_secs(5);

/// Fetch `http://ADDR/metrics` from inside `ns` (bounded by the fetcher's own timeout):
/// the series and their values, or why not.
fn scrape(ns: &str, addr: &str) -> Result<HashMap<String, f64>, String> {
    let script = "import sys, urllib.request\n\
                  r = urllib.request.urlopen(sys.argv[1], timeout=3)\n\
                  assert r.headers['Content-Type'].startswith('text/plain; version=0.0.4')\n\
                  sys.stdout.write(r.read().decode())";
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .map_err(|e| format!("run python3 in {ns}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut series = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value: {line:?}"))?;
        let value = value.parse::<f64>().map_err(|e| format!("{line:?}: {e}"))?;
        series.insert(name.to_string(), value);
    }
    Ok(series)
}

/// Scrape until `done` holds (the endpoint may still be starting, a count may take a
/// publishing interval to show); panics with the last scrape after `within`.
fn scrape_until(
    ns: &str,
    addr: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let end = Instant::now() + within;
    loop {
        let got = scrape(ns, addr);
        if let Ok(m) = &got {
            if done(m) {
                return m.clone();
            }
        }
        assert!(
            Instant::now() < end,
            "{what}: not seen at {addr} in {ns} within {within:?}; last scrape: {got:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A series' value (0 when absent: a counter nobody has touched).
fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// The sum of every series of family `name` whose labels include each of `labels`.
fn sum(m: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(s, _)| {
            s.strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|l| s.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The family's series whose labels include `labels`, for reports.
fn series_of(m: &HashMap<String, f64>, name: &str, labels: &str) -> Vec<String> {
    let mut v: Vec<String> = m
        .iter()
        .filter(|(s, x)| s.starts_with(name) && s.contains(labels) && **x > 0.0)
        .map(|(s, x)| format!("{s} {x}"))
        .collect();
    v.sort();
    v
}

/// Scrape the chat endpoint in `ns` until its path series of `peer` says `path`, and
/// check it is that peer's only path series at 1; the scrape.
fn scrape_path(ns: &str, peer: &str, path: &str) -> HashMap<String, f64> {
    let series = format!("punch_client_path{{peer=\"{peer}\",path=\"{path}\"}}");
    let what = format!("the path to {peer} in {ns}");
    let m = scrape_until(ns, CHAT_METRICS, SHOW, &what, |m| get(m, &series) == 1.0);
    let of_peer = format!("peer=\"{peer}\"");
    assert_eq!(sum(&m, "punch_client_path", &[&of_peer]), 1.0, "{m:?}");
    m
}

fn spawn(name: &str, ns: &str, args: &[String]) -> Proc {
    Proc::spawn(
        name,
        ns,
        &args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    )
}

/// Wait for a chat's notice that its metrics endpoint is up.
fn wait_metrics_notice(p: &mut Proc) {
    let seen = p.wait_for(EVENT_TIMEOUT, |v| {
        v["event"] == "notice"
            && v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("metrics:"))
    });
    assert!(
        seen.is_some(),
        "{}: no metrics endpoint: {}",
        p.name,
        p.events_text()
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn punched_pair_moves_server_and_chat_metrics() {
    let (a, b) = ("port-restricted-cone", "full-cone");
    let test = format!("metrics, punched pair {a} x {b}");
    require_lab(&test);
    let lab = Lab::pair("mtd", a, b);
    let (srv, ns_a, ns_b) = (lab.ns("srv"), lab.ns("a"), lab.ns("b"));
    let addr = format!("{}:3478", lab.get("SRV_IP"));
    let server_args = [
        "server",
        "--listen",
        &addr,
        "--alt-addr",
        lab.get("SRV_IP2"),
        "--metrics",
        SERVER_METRICS,
    ];
    let _server = Proc::spawn("server", &srv, &server_args);
    let before = scrape_until(&srv, SERVER_METRICS, SHOW, "server endpoint", |_| true);
    let registered = "punch_server_registrations{transport=\"udp\"}";
    assert_eq!(get(&before, registered), 0.0, "{before:?}");

    let home = tempdir(&lab.prefix);
    let extra = ["--transport", "udp", "--metrics", CHAT_METRICS];
    let mut alice = spawn(
        "alice",
        &ns_a,
        &chat_args(&addr, "alice", &format!("{home}/a"), "auto", &extra),
    );
    wait_metrics_notice(&mut alice);
    // alice knows her NAT type before bob asks for her: her outcomes name it.
    assert!(
        alice.wait_event("nat", EVENT_TIMEOUT).is_some(),
        "{test}: alice found no NAT type: {}",
        alice.events_text()
    );
    let alice_before = scrape(&ns_a, CHAT_METRICS).expect("alice's endpoint");
    let mut extra_b = extra.to_vec();
    extra_b.extend(["--peer", "alice"]);
    let mut bob = spawn(
        "bob",
        &ns_b,
        &chat_args(&addr, "bob", &format!("{home}/b"), "auto", &extra_b),
    );
    wait_metrics_notice(&mut bob);
    bob.say("hello from bob");
    let direct = bob.wait_for(EVENT_TIMEOUT, |v| {
        (v["event"] == "connected" || v["event"] == "path") && v["path"] == "direct"
    });
    assert!(
        direct.is_some(),
        "{test}: bob never went direct: {}",
        bob.events_text()
    );
    let got = alice.wait_for(EVENT_TIMEOUT, |v| {
        v["event"] == "message" && v["text"] == "hello from bob"
    });
    assert!(got.is_some(), "{test}: no message: {}", alice.events_text());

    // The server: two registrations live, one introduction, and its ready time.
    let after = scrape_until(&srv, SERVER_METRICS, SHOW, "server counts", |m| {
        get(m, registered) == 2.0
            && get(m, "punch_server_introductions_total{transport=\"udp\"}") >= 1.0
            && get(m, "punch_server_introduction_ready_seconds_count") >= 1.0
    });
    for kind in ["register", "connect", "introduce_ack", "stun"] {
        let s = format!("punch_server_requests_total{{kind=\"{kind}\"}}");
        assert!(
            get(&after, &s) > get(&before, &s),
            "{test}: {s} did not move"
        );
    }
    let accepted = "punch_server_registrations_accepted_total{transport=\"udp\"}";
    assert!(get(&after, accepted) >= 2.0, "{test}: {after:?}");
    let ready = get(&after, "punch_server_introduction_ready_seconds_sum");

    // bob: alice's path series says direct (and only that), one time to direct, and a
    // direct punching outcome.
    let bob_m = scrape_path(&ns_b, "alice", "direct");
    assert_eq!(
        get(&bob_m, "punch_client_time_to_direct_seconds_count"),
        1.0
    );
    assert_eq!(
        get(&bob_m, "punch_client_connects_total{result=\"ok\"}"),
        1.0
    );
    let outcomes = "punch_client_punch_outcomes_total";
    assert!(
        sum(&bob_m, outcomes, &["outcome=\"direct\""]) >= 1.0,
        "{bob_m:?}"
    );
    let to_direct = get(&bob_m, "punch_client_time_to_direct_seconds_sum");

    // alice: bob's series appeared (absent before) and says direct; her outcome names
    // her own NAT type.
    assert_eq!(
        sum(&alice_before, "punch_client_path", &["peer=\"bob\""]),
        0.0
    );
    let alice_m = scrape_path(&ns_a, "bob", "direct");
    assert_eq!(
        get(&alice_m, "punch_client_incoming_total{result=\"ok\"}"),
        1.0
    );
    let own = sum(&alice_m, outcomes, &["outcome=\"direct\"", a]);
    assert!(
        own >= 1.0,
        "{test}: {:?}",
        series_of(&alice_m, outcomes, "")
    );

    record_to(
        "metrics.txt",
        &format!(
            "{test:<48} server: 2 registrations, {} introduction(s), ready in {:.0} ms; \
             bob direct in {:.0} ms; alice's outcomes {:?}",
            get(
                &after,
                "punch_server_introductions_total{transport=\"udp\"}"
            ),
            ready * 1000.0,
            to_direct * 1000.0,
            series_of(&alice_m, outcomes, "outcome"),
        ),
    );
    bob.finish(Duration::from_secs(6));
    alice.finish(Duration::from_secs(6));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn relayed_pair_moves_relay_metrics() {
    let test = "metrics, relayed pair full-cone x full-cone";
    require_lab(test);
    let lab = Lab::pair("mtr", "full-cone", "full-cone");
    let srv = lab.ns("srv");
    let extra = ["--metrics", CHAT_METRICS];
    let mut pair = Pair::start_full(
        &lab,
        &lab.ns("a"),
        &lab.ns("b"),
        "only",
        &extra,
        &["--metrics", SERVER_METRICS],
    );
    let connected = pair.connected();
    assert_eq!(connected["path"], "relay", "{test}: {connected}");
    let bytes = "punch_server_relayed_bytes_total{transport=\"udp\"}";
    let datagrams = "punch_server_relayed_datagrams_total";
    // Connected: the QUIC handshake went through the relay already. The server is this
    // test's own, so every relayed byte is this pair's (no scrape can come before the
    // handshake: bob connects as soon as he starts). Then messages.
    let mid = scrape_until(&srv, SERVER_METRICS, SHOW, "relayed handshake", |m| {
        get(m, bytes) > 0.0
    });
    let n = 20;
    pair.talk_both_ways(test, n);
    let after = scrape_until(&srv, SERVER_METRICS, SHOW, "relayed messages", |m| {
        get(m, bytes) > get(&mid, bytes)
    });
    assert!(get(&after, datagrams) > get(&mid, datagrams), "{after:?}");
    let relay_kind = "punch_server_requests_total{kind=\"relay\"}";
    assert!(
        get(&after, relay_kind) >= get(&after, datagrams),
        "{after:?}"
    );
    let opened = "punch_server_relay_sessions_opened_total{transport=\"udp\"}";
    assert!(get(&after, opened) >= 1.0, "{after:?}");
    let live = "punch_server_relay_sessions{transport=\"udp\"}";
    assert!(get(&after, live) >= 1.0, "{after:?}");

    // bob's series of alice: relay, and only that.
    let ns_b = lab.ns("b");
    let bob_m = scrape_path(&ns_b, "alice", "relay");
    assert_eq!(
        get(&bob_m, "punch_client_time_to_direct_seconds_count"),
        0.0
    );

    // An error by its code: asking for a peer nobody registered.
    let unknown = "punch_server_errors_total{transport=\"udp\",code=\"unknown_peer\"}";
    let errors_before = get(&after, unknown);
    let home = tempdir(&format!("{}-carol", lab.prefix));
    let mut carol = spawn(
        "carol",
        &ns_b,
        &chat_args(&pair.addr, "carol", &home, "auto", &["--peer", "nobody"]),
    );
    let refused = carol.wait_event("error", EVENT_TIMEOUT);
    assert!(refused.is_some(), "{test}: {}", carol.events_text());
    let errors = scrape_until(&srv, SERVER_METRICS, SHOW, "unknown_peer error", |m| {
        get(m, unknown) > errors_before
    });

    record_to(
        "metrics.txt",
        &format!(
            "{test:<48} server relayed {} datagrams, {} bytes, {} session(s); \
             unknown_peer errors {} -> {}",
            get(&after, datagrams),
            get(&after, bytes),
            get(&after, opened),
            errors_before,
            get(&errors, unknown),
        ),
    );
}
