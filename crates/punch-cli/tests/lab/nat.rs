//! NAT behaviour discovery in the lab: STUN servers (ours, coturn's `turnserver`, the classic
//! `stund`) in the lab's server namespace on both of its addresses, and discovery clients
//! (`punch nat-type`, coturn's `turnutils_natdiscovery`, the classic `stun`) in a host
//! namespace, each bounded in time and with its output parsed into verdicts.
//!
//! Owns the server/client plumbing and the parsers of the third-party tools' output; which
//! verdicts each router type must give is [`expected`]. Every server is a [`Daemon`], killed
//! (and its scratch directory removed) on drop; every client runs under a timeout and is
//! killed when it passes it, so a hanging tool fails the test instead of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{punch_bin, repo_root, Lab};

/// The server's primary port (RFC 8489 §18.6 default).
pub const PORT: u16 = 3478;
/// The server's alternate port: our default (listen port + 1), and coturn's and stund's.
pub const ALT_PORT: u16 = 3479;
/// Upper bound for one discovery client run. Ours takes about 1.5 s; natdiscovery waits
/// out two or three silent tests (about 6 s); the classic client about as long.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to bind all of its sockets.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for `punch nat-type` to reach any verdict, "blocked" included.
pub const OUR_VERDICT_BOUND: Duration = Duration::from_secs(15);

/// The third-party programs the interop tests run, and the Debian packages that have them.
pub const THIRD_PARTY: &[(&str, &str)] = &[
    ("turnserver", "coturn"),
    ("turnutils_natdiscovery", "coturn"),
    ("stun", "stun-client"),
    ("stund", "stun-server"),
];

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

pub const EI: &str = "endpoint-independent";
pub const AD: &str = "address-dependent";
pub const APD: &str = "address-and-port-dependent";

/// The verdicts a router type of the lab must produce (lab/README.md, "Router types"; the
/// lab selftest proves the kernel behaves so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub classic: &'static str,
    pub mapping: &'static str,
    pub filtering: &'static str,
    /// A NAT translates the host's address (all but `open` and `firewall`).
    pub nat: bool,
}

pub fn expected(kind: &str) -> Expected {
    let (classic, mapping, filtering, nat) = match kind {
        "open" => ("open", EI, EI, false),
        // `ct state established,related accept`: only the exact address and port the host
        // sent to get back in (the selftest's F_KNOWN y / F_KNOWN_P n).
        "firewall" => ("firewall", EI, APD, false),
        "full-cone" => ("full-cone", EI, EI, true),
        "restricted-cone" => ("restricted-cone", EI, AD, true),
        "port-restricted-cone" => ("port-restricted-cone", EI, APD, true),
        // `masquerade fully-random`: a new random port per destination address and port.
        "symmetric" => ("symmetric", APD, APD, true),
        other => panic!("unknown router type {other}"),
    };
    Expected {
        classic,
        mapping,
        filtering,
        nat,
    }
}

/// Short form of a behaviour for tables: EI, AD, APD, or `?` when unknown.
pub fn short(behaviour: Option<&str>) -> &'static str {
    match behaviour {
        Some(EI) => "EI",
        Some(AD) => "AD",
        Some(APD) => "APD",
        Some(_) => "??",
        None => "?",
    }
}

/// True if `prog` is on the PATH.
fn have(prog: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Panics, naming the packages, if a third-party tool is missing: the test command
/// (`./run-tests`) installs them, so a lab run without them would prove nothing.
pub fn require_third_party() {
    let missing: Vec<String> = THIRD_PARTY
        .iter()
        .filter(|(prog, _)| !have(prog))
        .map(|(prog, pkg)| format!("{prog} (package {pkg})"))
        .collect();
    assert!(
        missing.is_empty(),
        "interop tools missing: {} -- install them (./run-tests does: apt-get install coturn stun-client stun-server)",
        missing.join(", ")
    );
}

/// A scratch directory for one test, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> ScratchDir {
        let dir =
            std::env::temp_dir().join(format!("punch-natlab-{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        ScratchDir(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Collects a pipe's output in a thread; readable at any time.
fn collect(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap_or_else(|e| e.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    })
}

/// A long-running program in a namespace (a server); killed on drop.
pub struct Daemon {
    pub name: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Start `prog ARGS` in namespace `ns` (`ip netns exec` execs it: the child is the program).
    pub fn spawn(name: &str, ns: &str, prog: &str, args: &[&str]) -> Daemon {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, prog])
            .args(args)
            .env("PUNCH_DATA_DIR", super::data_dir(ns))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog} in {ns}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("piped stdout"), log.clone());
        collect(child.stderr.take().expect("piped stderr"), log.clone());
        Daemon {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Everything it printed so far (stdout and stderr, interleaved by line).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished (or killed) client run.
#[derive(Debug, Clone)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    /// `None` if it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub elapsed: Duration,
}

impl Run {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// Both streams, for failure messages.
    pub fn text(&self) -> String {
        format!(
            "exit {:?} after {:.1} s\n--- stdout\n{}--- stderr\n{}",
            self.status.map(|s| s.code()),
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// Kills the child when dropped unless it was reaped: no client outlives its test.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run `prog ARGS` in namespace `ns`, killing it after `timeout`.
pub fn run_in(ns: &str, prog: &str, args: &[&str], timeout: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, prog])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {prog} in {ns}: {e}"));
    let (out, err) = (
        Arc::new(Mutex::new(String::new())),
        Arc::new(Mutex::new(String::new())),
    );
    let readers = [
        collect(child.stdout.take().expect("piped stdout"), out.clone()),
        collect(child.stderr.take().expect("piped stderr"), err.clone()),
    ];
    let mut child = Reaper(child);
    let mut status = None;
    while started.elapsed() < timeout {
        if let Ok(Some(s)) = child.0.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    drop(child); // kills it if it is still running, which closes its pipes
    for r in readers {
        let _ = r.join();
    }
    let take = |s: &Arc<Mutex<String>>| s.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Run {
        stdout: take(&out),
        stderr: take(&err),
        status,
        elapsed,
    }
}

/// Wait until every `IP:PORT` in `addrs` has a bound UDP socket in namespace `ns`.
/// Until a STUN binding request from namespace `ns` to `addr` is answered (a few per
/// second), at most `timeout`; true if one was.
fn wait_answering(ns: &str, addr: &str, timeout: Duration) -> bool {
    const PROBE: &str = "import os, socket, sys, time
ip, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
end = time.monotonic() + secs
while time.monotonic() < end:
    s.sendto(bytes.fromhex('000100002112a442') + os.urandom(12), (ip, port))
    try:
        s.recv(2048)
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)";
    let Some((ip, port)) = addr.rsplit_once(':') else {
        return false;
    };
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", PROBE, ip, port])
        .arg(timeout.as_secs_f64().to_string())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn wait_listening(ns: &str, addrs: &[String], timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hlun"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let bound: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        if addrs.iter().all(|a| bound.contains(&a.as_str())) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Which STUN server to run in the lab's server namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `punch server --listen SRV_IP:3478 --alt-addr SRV_IP2`: both addresses × both ports.
    Ours,
    /// `punch server --listen SRV_IP:3478`: one address, one port.
    OursSingle,
    /// coturn's `turnserver --stun-only` listening on both addresses (RFC 5780 needs two).
    Coturn,
    /// The classic RFC 3489 `stund -h SRV_IP -a SRV_IP2` (ports 3478 and 3479).
    Stund,
}

/// A server of `kind` in the lab's `srv` namespace, with every socket bound when returned.
pub fn start_server(lab: &Lab, kind: Server, scratch: &ScratchDir) -> Daemon {
    let (ip, ip2) = (lab.get("SRV_IP"), lab.get("SRV_IP2"));
    let primary = format!("{ip}:{PORT}");
    let ns = lab.ns("srv");
    let daemon = match kind {
        Server::Ours => Daemon::spawn(
            "punch server",
            &ns,
            punch_bin(),
            &["server", "--listen", &primary, "--alt-addr", ip2],
        ),
        Server::OursSingle => Daemon::spawn(
            "punch server (one address)",
            &ns,
            punch_bin(),
            &["server", "--listen", &primary],
        ),
        Server::Coturn => {
            let (pid, db) = (scratch.path("turnserver.pid"), scratch.path("turndb"));
            Daemon::spawn(
                "coturn",
                &ns,
                "turnserver",
                &[
                    "-n", // no configuration file: everything is on this line
                    "-L",
                    ip,
                    "-L",
                    ip2,
                    "--listening-port",
                    &PORT.to_string(),
                    "--alt-listening-port",
                    &ALT_PORT.to_string(),
                    "--stun-only",
                    "--no-cli",
                    "--no-tls",
                    "--no-dtls",
                    "--no-tcp",
                    "--log-file",
                    "stdout",
                    "--simple-log",
                    // Per test, so parallel labs do not share them (defaults are in /var).
                    "--pidfile",
                    &pid,
                    "--db",
                    &db,
                ],
            )
        }
        Server::Stund => Daemon::spawn(
            "stund",
            &ns,
            "stund",
            &[
                "-h",
                ip,
                "-a",
                ip2,
                "-p",
                &PORT.to_string(),
                "-o",
                &ALT_PORT.to_string(),
            ],
        ),
    };
    let mut want = vec![primary];
    if kind != Server::OursSingle {
        want.extend([
            format!("{ip}:{ALT_PORT}"),
            format!("{ip2}:{PORT}"),
            format!("{ip2}:{ALT_PORT}"),
        ]);
    }
    let mut daemon = daemon;
    // Bound sockets, then an answer to a binding request (a daemon may bind before its
    // workers serve, and a loaded machine stretches that).
    let ready = wait_listening(&ns, &want, SERVER_READY_TIMEOUT)
        && wait_answering(&ns, &want[0], SERVER_READY_TIMEOUT);
    assert!(
        ready && daemon.alive(),
        "{} did not bind {want:?} within {SERVER_READY_TIMEOUT:?}:\n{}",
        daemon.name,
        daemon.log()
    );
    daemon
}

/// What `punch nat-type --json` said.
#[derive(Debug, Clone)]
pub struct OurVerdict {
    pub json: Value,
    pub run: Run,
}

impl OurVerdict {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json[key].as_str()
    }
    pub fn classic(&self) -> Option<&str> {
        self.str("classic")
    }
    pub fn mapping(&self) -> Option<&str> {
        self.str("mapping")
    }
    pub fn filtering(&self) -> Option<&str> {
        self.str("filtering")
    }
    /// `classic EI/APD`, `?` for unknown parts.
    pub fn cell(&self) -> String {
        format!(
            "{} {}/{}",
            self.classic().unwrap_or("?"),
            short(self.mapping()),
            short(self.filtering())
        )
    }
    /// The raw observations, one per line, for failure messages.
    pub fn tests_text(&self) -> String {
        match self.json["tests"].as_array() {
            Some(tests) => tests
                .iter()
                .map(|t| format!("  {t}"))
                .collect::<Vec<_>>()
                .join("\n"),
            None => "  (no tests)".into(),
        }
    }
    /// Verdicts, explanation and raw observations, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "classic={:?} mapping={:?} filtering={:?} public={:?} nat={} hairpin={} port_allocation={} \
             elapsed {:.2} s\nexplanation: {}\nnotes: {}\ntests:\n{}",
            self.classic(),
            self.mapping(),
            self.filtering(),
            self.str("public"),
            self.json["nat"],
            self.json["hairpin"],
            self.json["port_allocation"],
            self.run.elapsed.as_secs_f64(),
            self.json["explanation"],
            self.json["notes"],
            self.tests_text()
        )
    }
}

/// Run `punch nat-type --server SERVER --json` on lab node `node`.
pub fn punch_nat_type(lab: &Lab, node: &str, server: &str) -> OurVerdict {
    let run = run_in(
        &lab.ns(node),
        punch_bin(),
        &["nat-type", "--server", server, "--json"],
        CLIENT_TIMEOUT,
    );
    assert!(
        !run.timed_out(),
        "punch nat-type --server {server} did not finish: {}",
        run.text()
    );
    let json: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "punch nat-type --json printed no JSON object ({e}): {}",
            run.text()
        )
    });
    assert!(
        json.is_object(),
        "punch nat-type --json: not an object: {}",
        run.text()
    );
    OurVerdict { json, run }
}

/// Map a behaviour as the third-party tools write it to our spelling.
fn behaviour_from_words(words: &str) -> Option<&'static str> {
    if words.contains("Endpoint Independent") {
        Some(EI)
    } else if words.contains("Address and Port Dependent") {
        Some(APD)
    } else if words.contains("Address Dependent") {
        Some(AD)
    } else {
        None
    }
}

/// What `turnutils_natdiscovery -m -f` concluded.
#[derive(Debug, Clone)]
pub struct NatDiscovery {
    pub mapping: Option<&'static str>,
    pub filtering: Option<&'static str>,
    pub run: Run,
}

impl NatDiscovery {
    pub fn cell(&self) -> String {
        format!("{}/{}", short(self.mapping), short(self.filtering))
    }
}

/// Parse natdiscovery's verdict lines: `NAT with Endpoint Independent Mapping!`,
/// `No NAT! (Endpoint Independent Mapping)`, `NAT with Address Dependent Filtering!` ...
pub fn parse_natdiscovery(stdout: &str) -> (Option<&'static str>, Option<&'static str>) {
    let mut mapping = None;
    let mut filtering = None;
    for line in stdout.lines().map(str::trim) {
        let is_verdict = line.starts_with("NAT with") || line.starts_with("No NAT");
        if !is_verdict {
            continue;
        }
        if line.contains("Mapping") {
            mapping = behaviour_from_words(line);
        } else if line.contains("Filtering") {
            filtering = behaviour_from_words(line);
        }
    }
    (mapping, filtering)
}

/// Run coturn's `turnutils_natdiscovery -m -f SERVER_IP` (port 3478; it learns the
/// alternate address from OTHER-ADDRESS) on lab node `node`.
pub fn natdiscovery(lab: &Lab, node: &str, server_ip: &str) -> NatDiscovery {
    let run = run_in(
        &lab.ns(node),
        "turnutils_natdiscovery",
        &["-m", "-f", "-p", &PORT.to_string(), server_ip],
        CLIENT_TIMEOUT,
    );
    assert!(
        !run.timed_out(),
        "turnutils_natdiscovery against {server_ip} did not finish: {}",
        run.text()
    );
    let (mapping, filtering) = parse_natdiscovery(&run.stdout);
    NatDiscovery {
        mapping,
        filtering,
        run,
    }
}

/// What the classic `stun` client (Vovida 0.97, package stun-client) concluded.
#[derive(Debug, Clone)]
pub struct ClassicStun {
    /// Its verdict in our classic names; `None` if it printed none we know.
    pub classic: Option<&'static str>,
    /// The text after `Primary: `, e.g. `Independent Mapping, Port Dependent Filter,
    /// preserves ports, no hairpin`.
    pub text: String,
    /// Complaints it printed while parsing the server's answers.
    pub warnings: Vec<String>,
    pub run: Run,
}

impl ClassicStun {
    pub fn cell(&self) -> String {
        let mut s = self.classic.unwrap_or("?").to_string();
        if !self.warnings.is_empty() {
            s.push('*');
        }
        s
    }
}

/// Parse the classic client's `Primary: ...` line into our classic names.
pub fn parse_classic_stun(stdout: &str) -> (Option<&'static str>, String) {
    let Some(text) = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Primary:"))
        .map(|t| t.trim().to_string())
    else {
        return (None, String::new());
    };
    let classic = if text.starts_with("Open") {
        Some("open")
    } else if text.starts_with("Firewall") {
        Some("firewall")
    } else if text.starts_with("Independent Mapping, Independent Filter") {
        Some("full-cone")
    } else if text.starts_with("Independent Mapping, Address Dependent Filter") {
        Some("restricted-cone")
    } else if text.starts_with("Independent Mapping, Port Dependent Filter") {
        Some("port-restricted-cone")
    } else if text.starts_with("Dependent Mapping") {
        Some("symmetric")
    } else if text.starts_with("Blocked") {
        Some("blocked")
    } else {
        None
    };
    (classic, text)
}

/// Run the classic `stun SERVER_IP` on lab node `node`. It needs CHANGED-ADDRESS and a
/// server on two addresses × two ports.
pub fn classic_stun(lab: &Lab, node: &str, server_ip: &str) -> ClassicStun {
    let run = run_in(&lab.ns(node), "stun", &[server_ip], CLIENT_TIMEOUT);
    assert!(
        !run.timed_out(),
        "stun {server_ip} did not finish: {}",
        run.text()
    );
    let (classic, text) = parse_classic_stun(&run.stdout);
    let warnings = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
        .filter(|l| l.contains("problem parsing") || l.contains("Bad length"))
        .map(str::to_string)
        .collect();
    ClassicStun {
        classic,
        text,
        warnings,
        run,
    }
}

/// The header of target/lab-results/nat-matrix.txt: the columns, then the marks.
pub const MATRIX_HEADER: &str = "\
TYPE                 | ours->ours                    | ours->coturn                  | natdisc->ours | natdisc->coturn | stun->ours            | stun->stund
(client->server; ours: classic mapping/filtering; natdisc = turnutils_natdiscovery -m -f: mapping/filtering; \
stun = classic RFC 3489 client: its type; ! = wrong for the router type; * = the stun client complained while parsing the answers)";

/// Append one row to target/lab-results/nat-matrix.txt (which the test script prints), the
/// header first if the file is new, and print it.
pub fn record(row: &str) {
    let dir = repo_root().join("target/lab-results");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("nat-matrix.txt");
    // Tests run as separate processes: a hard link creates the file with its header
    // atomically, or fails because another test already did.
    if !file.exists() {
        let tmp = dir.join(format!(".nat-matrix-{}", std::process::id()));
        if std::fs::write(&tmp, format!("{MATRIX_HEADER}\n")).is_ok() {
            let _ = std::fs::hard_link(&tmp, &file);
            let _ = std::fs::remove_file(&tmp);
        }
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
    {
        // One write per row, so rows from parallel tests do not interleave.
        let _ = f.write_all(format!("{row}\n").as_bytes());
    }
    println!("{MATRIX_HEADER}\n{row}");
}
