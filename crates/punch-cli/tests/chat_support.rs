//! Harness of the `chat_*` tests: runs the real `punch` binary on loopback (a server and
//! chat processes with piped stdin and stdout) and reads their output line by line.
//!
//! Every process is killed and every temporary directory removed by a guard's `Drop`, also
//! when a test fails. Each `chat_*.rs` test includes this file with `#[path]`; cargo also
//! builds it as a test target of its own, which holds no tests.
#![allow(dead_code)] // each test uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single expected event may take on loopback (registration, punching and a
/// QUIC handshake take milliseconds; this leaves room for a loaded machine).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(8);

pub fn punch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_punch")
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "punch-chat-test-{}-{label}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("temp dir path is UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One line of a process's stdout: JSON when it parses, the raw text otherwise.
enum Out {
    Line(Value),
    Eof,
}

/// A running `punch` process; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<Out>,
    stderr_lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Every stdout line read so far, in order.
    pub seen: Vec<Value>,
    stdout_closed: bool,
    /// Its own data directory (a server's name database), removed after it ends.
    _data: TempDir,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        Proc::spawn_env(name, args, &[])
    }

    /// [`Proc::spawn`] with environment variables set (`Some`) or removed (`None`).
    pub fn spawn_env(name: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> Proc {
        let data = TempDir::new("data");
        let mut cmd = Command::new(punch_bin());
        cmd.args(args)
            .env("PUNCH_DATA_DIR", data.path())
            .env("RUST_LOG", "warn,punch=debug,punch_proto=debug")
            // No backtrace for an error punch exits with (RUST_BACKTRACE=1 asks for one):
            // symbolizing the debug binary took 0.8 s on a busy machine and held its exit.
            .env("RUST_LIB_BACKTRACE", "0");
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn punch");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(Out::Line(v)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Out::Eof);
        });
        let (err_tx, stderr_lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let log_w = log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                log_w.lock().unwrap().push_str(&line);
                let _ = err_tx.send(line.trim_end().to_string());
                line.clear();
            }
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
        });
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            out,
            stderr_lines,
            stderr: log,
            seen: Vec::new(),
            stdout_closed: false,
            _data: data,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start `punch chat --json` on loopback.
    pub fn chat(server: SocketAddr, name: &str, home: &TempDir, peers: &[&str]) -> Proc {
        Proc::chat_with(server, name, home, peers, &["--json"])
    }

    /// Start `punch chat` on loopback with extra arguments.
    pub fn chat_with(
        server: SocketAddr,
        name: &str,
        home: &TempDir,
        peers: &[&str],
        extra: &[&str],
    ) -> Proc {
        let server = server.to_string();
        let mut args = vec![
            "chat",
            "--server",
            &server,
            "--name",
            name,
            "--home",
            home.as_str(),
            "--bind",
            "127.0.0.1:0",
        ];
        for p in peers {
            args.extend(["--peer", p]);
        }
        args.extend(extra);
        Proc::spawn(name, &args)
    }

    /// What the process wrote on stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn describe(&self) -> String {
        let seen: Vec<String> = self.seen.iter().map(|v| v.to_string()).collect();
        format!(
            "{}: stdout so far:\n  {}\nstderr:\n{}",
            self.name,
            seen.join("\n  "),
            self.stderr()
        )
    }

    /// Wait for the first stdout line (already seen or new) matching `pred`; panics with
    /// everything the process said if none comes within `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(Out::Line(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(Out::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    self.stdout_closed = true;
                    panic!("{what}: the process ended first. {}", self.describe());
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{what}: not seen within {timeout:?}. {}", self.describe())
                }
            }
        }
    }

    /// Wait for a JSON event of kind `kind` whose fields include `fields`.
    pub fn wait_event(&mut self, kind: &str, fields: &[(&str, &str)]) -> Value {
        let what = format!("{} waiting for {kind} {fields:?}", self.name);
        self.wait_for(&what, EVENT_TIMEOUT, |v| {
            v["event"] == kind && fields.iter().all(|(k, want)| v[*k] == *want)
        })
    }

    /// Type a line.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Close stdin (Ctrl-D).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait until the process exits by itself (its stdout closes), reading what it still
    /// prints, and return its status; panics if it does not exit within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        while !self.stdout_closed {
            let left = end.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(Out::Line(v)) => self.seen.push(v),
                Ok(Out::Eof) | Err(RecvTimeoutError::Disconnected) => self.stdout_closed = true,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} did not exit within {timeout:?}. {}",
                        self.name,
                        self.describe()
                    )
                }
            }
        }
        // stdout closes when the process exits; reap it (bounded, it is already ending).
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= end {
                panic!(
                    "{} closed stdout but did not exit. {}",
                    self.name,
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True if the process has not exited yet.
    /// Ask it to stop as a service manager would (SIGTERM) and wait for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(timeout)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free UDP port on 127.0.0.1, as the kernel picks one (free when this returns; the
/// caller retries if someone else takes it first).
pub fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    sock.local_addr().expect("local addr").port()
}

/// A `punch server` on a free loopback port, ready (listening) when returned.
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with `extra` options (e.g. `--data-dir DIR`).
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_env(extra, &[])
    }

    /// A server with `extra` options and environment variables set or removed (`None`).
    pub fn start_env(extra: &[&str], env: &[(&str, Option<&str>)]) -> Server {
        for _ in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
            let listen = addr.to_string();
            let mut args = vec!["server", "--listen", &listen];
            args.extend_from_slice(extra);
            let proc = Proc::spawn_env("server", &args, env);
            // The server prints its address on stderr once the socket is bound; if the port
            // was taken meanwhile it exits with an error instead, and we try another.
            let end = Instant::now() + EVENT_TIMEOUT;
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match proc.stderr_lines.recv_timeout(left) {
                    Ok(line) if line.contains("listening on") => return Server { proc, addr },
                    Ok(_) => continue,
                    Err(RecvTimeoutError::Disconnected) => break, // exited: port taken
                    Err(RecvTimeoutError::Timeout) => {
                        panic!("punch server did not start. {}", proc.describe())
                    }
                }
            }
        }
        panic!("no free port for punch server after 5 tries");
    }
}

/// Run `punch ARGS` to completion (bounded) and return (status, stdout, stderr).
pub fn run(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let mut proc = Proc::spawn("punch", args);
    proc.close_stdin();
    let status = proc.wait_exit(timeout);
    let stdout: Vec<String> = proc
        .seen
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    (status, stdout.join("\n"), proc.stderr())
}

/// A `connected` event's checks shared by the tests: a known path kind, a loopback remote
/// address, a numeric rtt.
pub fn assert_connected_event(v: &Value) {
    assert!(v["path"] == "direct" || v["path"] == "relay", "{v}");
    let remote = v["remote"]
        .as_str()
        .unwrap_or_else(|| panic!("remote missing: {v}"));
    let remote: SocketAddr = remote
        .parse()
        .unwrap_or_else(|e| panic!("remote {remote:?}: {e}"));
    assert!(remote.ip().is_loopback(), "{v}");
    let rtt = v["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("rtt_ms is not a number: {v}"));
    assert!((0.0..10_000.0).contains(&rtt), "{v}");
}

/// Wait until `p` is connected to `peer` over a direct path: a `connected` event saying
/// so, or (when the connection started on the server's relay, `--relay auto`) a later
/// `path` event moving it to the direct path. Returns the `connected` event.
pub fn wait_direct(p: &mut Proc, peer: &str) -> Value {
    let connected = p.wait_event("connected", &[("peer", peer)]);
    assert_connected_event(&connected);
    if connected["path"] != "direct" {
        let moved = p.wait_event("path", &[("peer", peer), ("path", "direct")]);
        let remote = moved["remote"].as_str().unwrap_or_default();
        assert!(remote.parse::<SocketAddr>().is_ok(), "{moved}");
    }
    connected
}
