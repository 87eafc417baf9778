//! TCP runs in the lab: the real `punch server` and `punch chat --transport tcp`
//! as peers inside the namespaces, one TCP punching attempt per run, a matrix line per pair in
//! `target/lab-results/tcp-matrix.txt`, and the routers' conntrack tables when a run fails.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{code, exchange_hello, median, repo_root, require_lab, tempdir, Lab, Proc};

/// Runs per pair (fresh namespaces each time); kept at 3 for CI time.
pub const TCP_RUNS: usize = 3;
/// Punching deadline given to the peers (`--punch-timeout`).
pub const TCP_PUNCH_TIMEOUT_SECS: u64 = 4;
/// How long a run waits for one expected event (punching plus a relay fallback).
pub const TCP_EVENT_TIMEOUT: Duration = Duration::from_secs(2 * TCP_PUNCH_TIMEOUT_SECS + 12);

/// Wait until something listens on TCP `port` in the lab's server namespace.
pub fn wait_tcp_listening(lab: &Lab, port: u16) {
    wait_bound(&lab.ns("srv"), "-Htln", &format!("sport = :{port}"));
}

/// Wait until `ss OPTIONS FILTER` in namespace `ns` lists a socket (e.g. `-Huln`,
/// `src IP:PORT` for a bound UDP socket).
pub fn wait_bound(ns: &str, options: &str, filter: &str) {
    let end = Instant::now() + TCP_EVENT_TIMEOUT;
    while Instant::now() < end {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", options, filter])
            .output()
            .expect("ss");
        if !out.stdout.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing matching `ss {options} {filter}` in {ns}");
}

/// How a lab for a TCP run is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpLabOpts {
    /// Routers forward no UDP (`punch-lab up --block-udp`).
    pub block_udp: bool,
    /// Routers forward UDP only to and from the server (`punch-lab up --block-udp-peers`).
    pub udp_to_server_only: bool,
    /// What routers do with unsolicited packets (`--wan-input`); `None`: `drop`, or
    /// PUNCH_LAB_TCP_WAN_INPUT.
    pub wan_input: Option<&'static str>,
    /// One-way latency on each core <-> router link in ms (`--delay`); 0: none.
    pub delay_ms: u32,
}

/// Two sites of the given router types for a TCP run.
pub fn tcp_lab(prefix: &str, a: &str, b: &str, opts: TcpLabOpts) -> Lab {
    // Routers drop unsolicited packets silently (the lab's default, like most home routers):
    // with `accept` the router's own kernel answers a SYN that arrives before the host's
    // with a RST and keeps the conntrack entry, which makes the host's own SYN leave on
    // another port (see lab/README.md, --wan-input). PUNCH_LAB_TCP_WAN_INPUT overrides.
    let wan_input = match opts.wan_input {
        Some(mode) => mode.to_string(),
        None => std::env::var("PUNCH_LAB_TCP_WAN_INPUT").unwrap_or_else(|_| "drop".into()),
    };
    let delay = opts.delay_ms.to_string();
    let mut args = vec![
        "up",
        "--replace",
        "--wan-input",
        &wan_input,
        "--delay",
        &delay,
    ];
    if opts.block_udp {
        args.push("--block-udp");
    }
    if opts.udp_to_server_only {
        args.push("--block-udp-peers");
    }
    args.extend([prefix, a, b]);
    Lab::build(&args, prefix)
}

/// What one TCP run produced.
#[derive(Debug, Clone)]
pub struct TcpOutcome {
    /// Both sides connected over TCP and messages went both ways.
    pub ok: bool,
    /// `"direct"` or `"relay"` as bob reported it.
    pub path: String,
    /// How bob's connection came about (`public`, `private`, `accepted`, `relay`).
    pub candidate: String,
    /// From bob's start to bob's `connected`.
    pub connect_ms: f64,
    /// Why the run failed, with the routers' conntrack tables.
    pub error: Option<String>,
}

fn conntrack(lab: &Lab) -> String {
    let mut out = String::new();
    for r in ["ra", "rb"] {
        let o = Command::new("ip")
            .args(["netns", "exec", &lab.ns(r), "conntrack", "-L", "-p", "tcp"])
            .output();
        let text = match o {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => format!("(conntrack unavailable: {e})"),
        };
        out.push_str(&format!(
            "\n  conntrack {r}:\n    {}",
            text.trim().replace('\n', "\n    ")
        ));
    }
    out
}

/// One run: alice waits in `ns_a`, bob in `ns_b` connects to her over TCP; both talk.
/// `relay`: allow the relay fallback (otherwise a failed punch is an error).
pub fn tcp_run(lab: &Lab, ns_a: &str, ns_b: &str, relay: bool) -> TcpOutcome {
    let srv = lab.get("SRV_IP").to_string();
    let main = format!("{srv}:3478");
    // The real `punch server`: UDP and TCP main on 3478, TCP assist on 3479.
    let _server = Proc::spawn("server", &lab.ns("srv"), &["server", "--listen", &main]);
    wait_tcp_listening(lab, 3479);
    let timeout = TCP_PUNCH_TIMEOUT_SECS.to_string();
    let home = tempdir(&lab.prefix);
    let relay_mode = if relay { "auto" } else { "never" };
    let chat = |name: &str, ns: &str, extra: &[&str]| {
        let home = format!("{home}/{name}");
        let mut args = vec![
            "chat",
            "--json",
            "--server",
            &main,
            "--tcp-assist-port",
            "3479",
            "--transport",
            "tcp",
            "--punch-timeout",
            &timeout,
            "--relay",
            relay_mode,
            "--name",
            name,
            "--home",
            &home,
        ];
        args.extend_from_slice(extra);
        Proc::spawn(name, ns, &args)
    };
    let mut alice = chat("alice", ns_a, &[]);
    assert!(
        alice.wait_event("registered", TCP_EVENT_TIMEOUT).is_some(),
        "alice did not register: {}",
        alice.events_text()
    );
    let started = Instant::now();
    let mut bob = chat("bob", ns_b, &["--peer", "alice"]);
    bob.say("hello from bob");
    let ms = |t: Instant| t.duration_since(started).as_secs_f64() * 1000.0;
    let mut outcome = TcpOutcome {
        ok: false,
        path: String::new(),
        candidate: String::new(),
        connect_ms: f64::NAN,
        error: None,
    };
    let got = bob.wait_for(TCP_EVENT_TIMEOUT, |v| {
        v["event"] == "connected" || v["event"] == "error"
    });
    let Some((t, ev)) = got else {
        outcome.error = Some(format!(
            "bob reported nothing: {}{}",
            bob.events_text(),
            conntrack(lab)
        ));
        return outcome;
    };
    outcome.connect_ms = ms(t);
    if ev["event"] == "error" {
        outcome.error = Some(format!(
            "{}{}",
            ev["reason"].as_str().unwrap_or("?"),
            conntrack(lab)
        ));
        return outcome;
    }
    outcome.path = ev["path"].as_str().unwrap_or("").to_string();
    outcome.candidate = ev["candidate"].as_str().unwrap_or("").to_string();
    let transport_ok = ev["transport"] == "tcp";
    let (alice_conn, first, back) = exchange_hello(&mut alice, &mut bob, TCP_EVENT_TIMEOUT);
    outcome.ok = transport_ok && alice_conn.is_some() && first.is_some() && back.is_some();
    if !outcome.ok {
        outcome.error = Some(format!(
            "incomplete run: alice connected={} bob->alice={} alice->bob={}\n bob: {}\n alice: {}",
            alice_conn.is_some(),
            first.is_some(),
            back.is_some(),
            bob.events_text(),
            alice.events_text()
        ));
    }
    // Both stdins close at once, so neither waits for the other's end of the chat.
    alice.stdin = None;
    bob.finish(Duration::from_secs(4));
    alice.finish(Duration::from_secs(4));
    outcome
}

/// Append one line to `target/lab-results/tcp-matrix.txt` and print it.
pub fn record_tcp(line: &str) {
    let dir = repo_root().join("target/lab-results");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tcp-matrix.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
    println!("{line}");
}

/// What a pair is expected to do over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every run connects directly (asserted).
    Direct,
    /// Tried and reported, not asserted (TCP punching through a symmetric NAT).
    Report,
    /// Every run connects through the relay (no direct path can exist).
    Relay,
}

/// Run a pair [`TCP_RUNS`] times on fresh labs, print and record the result of every run.
pub fn tcp_pair(a: &str, b: &str, expect: Expect, opts: TcpLabOpts) {
    tcp_pair_runs(a, b, expect, opts, TCP_RUNS, TCP_RUNS);
}

/// [`tcp_pair`] over `runs` fresh labs, of which at least `min_ok` must connect as expected.
pub fn tcp_pair_runs(
    a: &str,
    b: &str,
    expect: Expect,
    opts: TcpLabOpts,
    runs: usize,
    min_ok: usize,
) {
    let mut test = format!("tcp {a} x {b}");
    if opts.block_udp {
        test.push_str(" (UDP blocked)");
    }
    if let Some(mode) = opts.wan_input {
        test.push_str(&format!(" (routers {mode} unsolicited)"));
    }
    if opts.delay_ms > 0 {
        test.push_str(&format!(" ({} ms apart)", 2 * opts.delay_ms));
    }
    require_lab(&test);
    let mut outcomes = Vec::new();
    for run in 0..runs {
        let tag = match (opts.block_udp, opts.wan_input, expect) {
            (true, _, _) => "tu",
            (false, Some(mode), _) => &format!("t{}", &mode[..1]),
            (false, None, Expect::Relay) => "tr",
            (false, None, _) => "t",
        };
        let prefix = format!("{tag}{}{}{run}", code(a), code(b));
        let t0 = Instant::now();
        let lab = tcp_lab(&prefix, a, b, opts);
        let t1 = Instant::now();
        let o = tcp_run(&lab, &lab.ns("a"), &lab.ns("b"), expect == Expect::Relay);
        let t2 = Instant::now();
        drop(lab);
        if std::env::var_os("PUNCH_LAB_TIMING").is_some() {
            eprintln!(
                "{test} run {run}: up {:?} run {:?} down {:?}",
                t1 - t0,
                t2 - t1,
                t2.elapsed()
            );
        }
        outcomes.push(o);
    }
    let want = if expect == Expect::Relay {
        "relay"
    } else {
        "direct"
    };
    let good = |o: &TcpOutcome| o.ok && o.path == want;
    let n = outcomes.iter().filter(|o| good(o)).count();
    let via: Vec<String> = outcomes
        .iter()
        .map(|o| {
            if good(o) {
                o.candidate.clone()
            } else {
                "-".into()
            }
        })
        .collect();
    record_tcp(&format!(
        "{test:<56} {want} {n}/{} via {:<28} median connect {:>7.1} ms",
        outcomes.len(),
        via.join(","),
        median(outcomes.iter().map(|o| o.connect_ms).collect()),
    ));
    for (i, o) in outcomes.iter().enumerate() {
        if let Some(e) = &o.error {
            println!("  {test}: run {i} failed: {e}");
        }
    }
    if expect != Expect::Report {
        assert!(
            n >= min_ok,
            "{test}: {n} of {runs} runs connected {want}, fewer than {min_ok}: {outcomes:?}"
        );
    }
}
