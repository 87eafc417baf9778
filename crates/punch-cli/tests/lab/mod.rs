//! Harness for the namespace lab: builds topologies with `lab/punch-lab`, runs the real
//! `punch` binary inside them, and reads its JSON events.
//!
//! Every lab and every process is torn down by a guard's `Drop`, also when a test fails.
//! Lab tests need root (network namespaces and nftables); without it they print a loud
//! SKIPPED line and return, and the test script says so too.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod abuse;
pub mod ipv6;
pub mod recovery;
pub mod relay;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod nat;
pub mod tcp;

/// Punching deadline given to the peers in lab runs (`--punch-timeout`).
pub const PUNCH_TIMEOUT_SECS: u64 = 4;
/// How long a run waits for any single expected event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(PUNCH_TIMEOUT_SECS + 6);
/// Runs per pair (fresh namespaces each time).
pub const RUNS: usize = 5;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lab_script() -> PathBuf {
    repo_root().join("lab/punch-lab")
}

/// Fails the test unless this process may build labs (root, `ip`, `nft`).
pub fn require_lab(test: &str) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    // The lab tests are #[ignore]d: running one is a request, so a lab that cannot be
    // built is a failure, never a silent pass.
    assert!(
        root && tools,
        "{test}: the namespace lab needs root, ip and nft (./run-tests as root installs them)"
    );
}

/// A lab topology; removed on drop.
pub struct Lab {
    pub prefix: String,
    pub env: HashMap<String, String>,
}

fn wan_input() -> String {
    // `accept` lets an unsolicited probe create a conntrack entry on the router, which is
    // what makes naive simultaneous punching race (see design notes): the hard case.
    std::env::var("PUNCH_LAB_WAN_INPUT").unwrap_or_else(|_| "accept".into())
}

impl Lab {
    fn build(args: &[&str], prefix: &str) -> Lab {
        let out = Command::new(lab_script())
            .args(args)
            .env("PUNCH_LAB_WAN_INPUT", wan_input())
            .output()
            .expect("run lab/punch-lab");
        // Built first so that a failed `up` is still torn down when the assert unwinds.
        let mut lab = Lab {
            prefix: prefix.to_string(),
            env: HashMap::new(),
        };
        assert!(
            out.status.success(),
            "punch-lab {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = Command::new(lab_script())
            .args(["env", prefix])
            .output()
            .expect("punch-lab env");
        lab.env = String::from_utf8_lossy(&env.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        lab
    }

    /// Two sites of the given router types.
    pub fn pair(prefix: &str, a: &str, b: &str) -> Lab {
        Lab::build(&["up", "--replace", prefix, a, b], prefix)
    }

    /// One router of `kind` with two hosts a1, a2 behind it.
    pub fn same_nat(prefix: &str, kind: &str) -> Lab {
        Lab::build(&["up-same", "--replace", prefix, kind], prefix)
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .map(|s| s.as_str())
            .unwrap_or_else(|| panic!("lab env has no {key}"))
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{}", self.prefix, node)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(lab_script())
            .args(["down", &self.prefix])
            .output();
        let _ = std::fs::remove_dir_all(data_dir(&self.ns("srv")));
        // The chat homes made by `tempdir` for this lab (its prefix, or one built on it).
        let (head, tail) = (
            format!("punch-lab-{}", self.prefix),
            format!("-{}", std::process::id()),
        );
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&head) && name.ends_with(&tail) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// The data directory (`punch server --data-dir`, through PUNCH_DATA_DIR) of servers run
/// in namespace `ns` by this test process: the same across a server restart, distinct for
/// every lab; removed with the lab.
pub fn data_dir(ns: &str) -> PathBuf {
    std::env::temp_dir().join(format!("punch-lab-data-{ns}-{}", std::process::id()))
}

/// A `punch` process in a namespace; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<(Instant, Value)>,
    pub seen: Vec<(Instant, Value)>,
    /// The last [`LOG_TAIL`] lines of its debug log, shown when a run fails.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Log lines kept per process for failure reports.
const LOG_TAIL: usize = 80;

pub fn punch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_punch")
}

impl Proc {
    /// Start `punch ARGS` in namespace `ns`; stdout lines are parsed as JSON events.
    pub fn spawn(name: &str, ns: &str, args: &[&str]) -> Proc {
        Proc::spawn_bin(name, ns, std::path::Path::new(punch_bin()), args)
    }

    /// Start `BIN ARGS` in namespace `ns`; stdout lines are parsed as JSON events.
    pub fn spawn_bin(name: &str, ns: &str, bin: &std::path::Path, args: &[&str]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(args)
            .env("RUST_LOG", "punch=debug,punch_proto=debug,warn")
            // As in chat_support.rs: no backtrace for an error punch exits with.
            .env("RUST_LIB_BACKTRACE", "0")
            .env("PUNCH_DATA_DIR", data_dir(ns))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        let log_name = name.to_string();
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let tail = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("PUNCH_LAB_LOGS").is_some() {
                    eprintln!("[{log_name}] {line}");
                }
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            events: rx,
            seen: Vec::new(),
            log,
        }
    }

    /// Wait for the first event (already seen or new) matching `pred`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<(Instant, Value)> {
        if let Some(e) = self.seen.iter().find(|(_, v)| pred(v)) {
            return Some(e.clone());
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let (t, v) = self.events.recv_timeout(left).ok()?;
            self.seen.push((t, v.clone()));
            if pred(&v) {
                return Some((t, v));
            }
        }
    }

    /// Take every event printed so far into `seen`, without waiting.
    pub fn drain(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
    }

    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> Option<(Instant, Value)> {
        self.wait_for(timeout, |v| v["event"] == kind)
    }

    pub fn say(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// Its process id (`ip netns exec` execs the program: the same process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not exited, not killed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Close stdin and wait (bounded) for a clean exit; true if it exited by itself.
    pub fn finish(&mut self, timeout: Duration) -> bool {
        self.stdin = None;
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Ask it to stop as a service manager would (SIGTERM) and wait (bounded) for it to
    /// exit; true if it did.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.finish(timeout)
    }

    /// Its events, then the tail of its log (what a failure report shows).
    pub fn events_text(&self) -> String {
        let events = self
            .seen
            .iter()
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
            .join("\n  ");
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let log = log.iter().cloned().collect::<Vec<_>>().join("\n    ");
        format!("{events}\n  last log lines of {}:\n    {log}", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rendezvous server in the lab's server namespace, ready when returned.
pub fn start_server(lab: &Lab) -> (Proc, String) {
    start_server_with(lab, &[])
}

/// [`start_server`] with `extra` options.
pub fn start_server_with(lab: &Lab, extra: &[&str]) -> (Proc, String) {
    let addr = format!("{}:3478", lab.get("SRV_IP"));
    let mut args = vec!["server", "--listen", &addr];
    args.extend_from_slice(extra);
    let mut server = Proc::spawn("server", &lab.ns("srv"), &args);
    // The server says it is listening on stderr, which the harness does not parse;
    // readiness is instead proven by the clients' registration (they retransmit).
    let _ = &mut server;
    (server, addr)
}

/// What one run of a pair produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Both sides reported `connected` over a direct path and messages went both ways.
    pub direct: bool,
    /// The candidate kind bob connected to ("private", "public", "peer-reflexive").
    pub candidate: String,
    /// Its address family ("ipv4", "ipv6").
    pub family: String,
    pub remote: String,
    /// From bob's start to bob's `connected` event.
    pub connect_ms: f64,
    /// From bob's start to alice printing bob's first message (typed at start).
    pub first_message_ms: f64,
    /// Error events (reason) seen, if the run failed.
    pub error: Option<String>,
}

/// One chat run: alice listens in `ns_a`, bob (in `ns_b`) connects to her and both talk.
/// Both run with `--relay never --transport udp`: this proves UDP hole punching alone.
pub fn chat_run(lab: &Lab, ns_a: &str, ns_b: &str, expect_direct: bool) -> Outcome {
    let (_server, addr) = start_server(lab);
    let home = tempdir(&lab.prefix);
    let (home_a, home_b) = (format!("{home}/alice"), format!("{home}/bob"));
    let timeout = PUNCH_TIMEOUT_SECS.to_string();
    let common = |name: &'static str, home: &str| -> Vec<String> {
        [
            "chat",
            "--json",
            "--server",
            &addr,
            "--name",
            name,
            "--home",
            home,
            "--punch-timeout",
            &timeout,
            "--relay",
            "never",
            "--transport",
            "udp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args_a = common("alice", &home_a);
    let mut alice = Proc::spawn(
        "alice",
        ns_a,
        &args_a.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    let registered = alice.wait_event("registered", EVENT_TIMEOUT);
    assert!(
        registered.is_some(),
        "alice did not register: {}",
        alice.events_text()
    );

    let mut args_b = common("bob", &home_b);
    args_b.extend(["--peer".to_string(), "alice".to_string()]);
    let started = Instant::now();
    let mut bob = Proc::spawn(
        "bob",
        ns_b,
        &args_b.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    // Typed at once, before any connection: it must still arrive (kept until connected).
    bob.say("hello from bob");

    let ms = |t: Instant| t.duration_since(started).as_secs_f64() * 1000.0;
    // Its start first (a new identity is written and synced to disk, which once took 7 s
    // on a machine busy with other tests), then the connect, each with its own timeout:
    // a slow disk must not count against the punch timeout.
    bob.wait_for(EVENT_TIMEOUT, |v| {
        v["event"] == "registered" || v["event"] == "error"
    });
    let got = bob.wait_for(EVENT_TIMEOUT, |v| {
        v["event"] == "connected" || v["event"] == "error"
    });
    let mut outcome = Outcome {
        direct: false,
        candidate: String::new(),
        family: String::new(),
        remote: String::new(),
        connect_ms: f64::NAN,
        first_message_ms: f64::NAN,
        error: None,
    };
    let Some((t, ev)) = got else {
        outcome.error = Some(format!("bob reported nothing: {}", bob.events_text()));
        return outcome;
    };
    if ev["event"] == "error" {
        outcome.error = Some(ev["reason"].as_str().unwrap_or("?").to_string());
        outcome.connect_ms = ms(t);
        if expect_direct {
            eprintln!(
                "bob events:\n  {}\nalice events:\n  {}",
                bob.events_text(),
                alice.events_text()
            );
        }
        return outcome;
    }
    outcome.connect_ms = ms(t);
    outcome.candidate = ev["candidate"].as_str().unwrap_or("").to_string();
    outcome.family = ev["family"].as_str().unwrap_or("").to_string();
    outcome.remote = ev["remote"].as_str().unwrap_or("").to_string();
    let path_ok = ev["path"] == "direct";

    let (alice_conn, first, back) = exchange_hello(&mut alice, &mut bob, EVENT_TIMEOUT);
    if let Some((t, _)) = first {
        outcome.first_message_ms = ms(t);
    }
    outcome.direct = path_ok && alice_conn.is_some() && first.is_some() && back.is_some();
    if !outcome.direct {
        outcome.error = Some(format!(
            "incomplete run: alice connected={} bob->alice={} alice->bob={}\n bob: {}\n alice: {}",
            alice_conn.is_some(),
            first.is_some(),
            back.is_some(),
            bob.events_text(),
            alice.events_text()
        ));
    }
    // Both leave cleanly once stdin closes.
    bob.finish(Duration::from_secs(6));
    alice.finish(Duration::from_secs(6));
    outcome
}

/// An event a process printed, with when it arrived, if it did.
pub type Seen = Option<(Instant, Value)>;

/// After bob typed "hello from bob": alice's `connected` event, alice receiving bob's
/// line, then alice's "hello from alice" reaching bob.
pub fn exchange_hello(alice: &mut Proc, bob: &mut Proc, timeout: Duration) -> (Seen, Seen, Seen) {
    let alice_conn = alice.wait_event("connected", timeout);
    let first = alice.wait_for(timeout, |v| {
        v["event"] == "message" && v["from"] == "bob" && v["text"] == "hello from bob"
    });
    alice.say("hello from alice");
    let back = bob.wait_for(timeout, |v| {
        v["event"] == "message" && v["from"] == "alice" && v["text"] == "hello from alice"
    });
    (alice_conn, first, back)
}

pub fn tempdir(prefix: &str) -> String {
    let dir = std::env::temp_dir().join(format!("punch-lab-{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.to_string_lossy().into_owned()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Short code of a router type for namespace prefixes.
pub fn code(kind: &str) -> &'static str {
    match kind {
        "open" => "op",
        "firewall" => "fw",
        "full-cone" => "fc",
        "restricted-cone" => "rc",
        "port-restricted-cone" => "pr",
        "symmetric" => "sy",
        other => panic!("unknown router type {other}"),
    }
}

/// Append one line to a matrix report the test script prints at the end.
pub fn record_to(file: &str, line: &str) {
    let dir = repo_root().join("target/lab-results");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))
    {
        let _ = writeln!(f, "{line}");
    }
    println!("{line}");
}

fn record(line: &str) {
    record_to("udp-matrix.txt", line);
}

/// Run a pair [`RUNS`] times on fresh labs and assert the expected result every time.
pub fn pair_matrix(a: &str, b: &str, expect_direct: bool) {
    let test = format!("{a} x {b}");
    require_lab(&test);
    let mut outcomes = Vec::new();
    for run in 0..RUNS {
        let prefix = format!("u{}{}{run}", code(a), code(b));
        let lab = Lab::pair(&prefix, a, b);
        let o = chat_run(&lab, &lab.ns("a"), &lab.ns("b"), expect_direct);
        drop(lab);
        outcomes.push(o);
    }
    summarize(&test, &outcomes, expect_direct);
}

/// Two hosts behind one router of `kind`: they must use the private path.
pub fn same_nat_matrix(kind: &str) {
    let test = format!("same {kind} NAT");
    require_lab(&test);
    let mut outcomes = Vec::new();
    for run in 0..RUNS {
        let prefix = format!("s{}{run}", code(kind));
        let lab = Lab::same_nat(&prefix, kind);
        let o = chat_run(&lab, &lab.ns("a1"), &lab.ns("a2"), true);
        drop(lab);
        outcomes.push(o);
    }
    summarize(&test, &outcomes, true);
    for o in &outcomes {
        assert_eq!(
            o.candidate, "private",
            "same NAT must use the private path: {o:?}"
        );
    }
}

fn summarize(test: &str, outcomes: &[Outcome], expect_direct: bool) {
    let ok = outcomes.iter().filter(|o| o.direct).count();
    let candidates: Vec<String> = outcomes
        .iter()
        .map(|o| match o.direct {
            true => format!("{}/{}", o.candidate, o.family),
            false => "-".into(),
        })
        .collect();
    let line = if expect_direct {
        format!(
            "{test:<48} direct {ok}/{} via {:<56} median connect {:>7.1} ms, first message {:>7.1} ms",
            outcomes.len(),
            candidates.join(","),
            median(outcomes.iter().map(|o| o.connect_ms).collect()),
            median(outcomes.iter().map(|o| o.first_message_ms).collect()),
        )
    } else {
        let errors = outcomes
            .iter()
            .filter(|o| o.error.is_some() && !o.direct)
            .count();
        format!(
            "{test:<48} no direct path (expected): clear error {errors}/{} after median {:>7.1} ms",
            outcomes.len(),
            median(outcomes.iter().map(|o| o.connect_ms).collect()),
        )
    };
    record(&line);
    for (i, o) in outcomes.iter().enumerate() {
        if expect_direct {
            assert!(o.direct, "{test}: run {i} failed: {:?}", o.error);
        } else {
            assert!(
                !o.direct,
                "{test}: run {i} connected directly where no path should exist: {o:?}"
            );
            let reason = o.error.as_deref().unwrap_or("");
            assert!(
                reason.contains("no direct path"),
                "{test}: run {i} gave no clear error: {reason}"
            );
        }
    }
}
