//! What the CLI tells the user: one event per line, as text or as JSON.
//!
//! Owns the wording and the JSON schema of every event `punch chat` and `punch demo`
//! print on stdout. Logs go to stderr through tracing and are not part of this.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

/// Prints events in the chosen form. Every line is flushed at once (tests and pipes read it).
#[derive(Debug, Clone)]
pub struct Reporter {
    json: bool,
}

/// "ipv4" or "ipv6".
pub fn family(a: SocketAddr) -> &'static str {
    if a.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

impl Reporter {
    /// A reporter printing JSON lines if `json`, text otherwise.
    pub fn new(json: bool) -> Reporter {
        Reporter { json }
    }

    fn emit(&self, value: Value, text: String) {
        let mut out = std::io::stdout().lock();
        let line = if self.json { value.to_string() } else { text };
        // A closed stdout (the reader went away) is not worth dying for mid-chat.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Registered with the server at `server` (the address Happy Eyeballs chose: its
    /// family is the one we registered over).
    pub fn registered(
        &self,
        name: &str,
        key: &str,
        public: SocketAddr,
        local: SocketAddr,
        server: SocketAddr,
    ) {
        let family = family(server);
        self.emit(
            json!({"event":"registered","name":name,"key":key,"public":public.to_string(),
                   "local":local.to_string(),"server":server.to_string(),"family":family}),
            format!("registered as {name} with {server} over {family} (public address {public}, local {local}); key {key}"),
        );
    }

    /// Connected to a peer (`key`: its key, proven in the handshake, and the one we know
    /// for its name).
    #[allow(clippy::too_many_arguments)]
    pub fn connected(
        &self,
        peer: &str,
        key: &str,
        path: &str,
        candidate: &str,
        remote: SocketAddr,
        rtt: Option<Duration>,
        transport: &str,
    ) {
        let rtt_text = rtt
            .map(|r| format!(", rtt {:.1} ms", ms(r)))
            .unwrap_or_default();
        let family = family(remote);
        self.emit(
            json!({"event":"connected","peer":peer,"key":key,"path":path,"candidate":candidate,
                   "remote":remote.to_string(),"family":family,"rtt_ms":rtt.map(ms),
                   "transport":transport}),
            format!("connected to {peer} over {transport}: {path} path ({candidate}, {family} {remote}){rtt_text}; key {key}"),
        );
    }

    /// A peer name met for the first time (or with an accepted new key): its key is now
    /// the one we know, kept in `file` (if any).
    pub fn peer_key(&self, peer: &str, key: &str, replaced: Option<&str>, file: Option<&str>) {
        let kept = file
            .map(|f| format!("recorded in {f}"))
            .unwrap_or_else(|| "not recorded".into());
        let text = match replaced {
            None => format!("first contact with {peer}: key {key} ({kept})"),
            Some(old) => format!("{peer}'s new key {key} replaces {old}, as asked ({kept})"),
        };
        self.emit(
            json!({"event":"peer_key","peer":peer,"key":key,"replaced":replaced,
                   "first_contact":replaced.is_none(),"file":file}),
            text,
        );
    }

    /// The path to a peer changed.
    pub fn path(
        &self,
        peer: &str,
        path: &str,
        candidate: &str,
        remote: SocketAddr,
        transport: &str,
        reason: &str,
    ) {
        let family = family(remote);
        self.emit(
            json!({"event":"path","peer":peer,"path":path,"candidate":candidate,
                   "remote":remote.to_string(),"family":family,"transport":transport,
                   "reason":reason}),
            format!("path to {peer} is now {path} over {transport} ({family} {remote}): {reason}"),
        );
    }

    /// A message arrived.
    pub fn message(&self, from: &str, text: &str) {
        self.emit(
            json!({"event":"message","from":from,"text":text}),
            format!("[{from}] {text}"),
        );
    }

    /// A peer went away.
    pub fn disconnected(&self, peer: &str, reason: &str) {
        self.emit(
            json!({"event":"disconnected","peer":peer,"reason":reason}),
            format!("{peer} disconnected: {reason}"),
        );
    }

    /// Something failed; `peer` when it concerns one.
    pub fn error(&self, peer: Option<&str>, reason: &str) {
        let text = match peer {
            Some(p) => format!("error with {p}: {reason}"),
            None => format!("error: {reason}"),
        };
        self.emit(json!({"event":"error","peer":peer,"reason":reason}), text);
    }

    /// What our NAT does (from discovery or the cache).
    pub fn nat(&self, r: &punch::punch_proto::nat::NatReport, cached: bool) {
        let s = |v: Option<&'static str>| v.map(Value::from).unwrap_or(Value::Null);
        self.emit(
            json!({"event":"nat","classic":s(r.classic.map(|c| c.as_str())),
                   "mapping":s(r.mapping.map(|b| b.as_str())),
                   "filtering":s(r.filtering.map(|b| b.as_str())),
                   "public":r.public.map(|p| p.to_string()),
                   "hairpin":r.hairpin,
                   "port_allocation":s(r.port_allocation.map(|p| p.as_str())),
                   "cached":cached,"explanation":r.explanation}),
            format!(
                "your NAT: {} ({}): {}",
                r.classic.map(|c| c.as_str()).unwrap_or("unknown type"),
                if cached { "cached" } else { "measured" },
                r.explanation
            ),
        );
    }

    /// One of our addresses changed (`which`: `"public"` or `"local"`).
    pub fn address(&self, which: &str, addr: &str, reason: &str) {
        self.emit(
            json!({"event":"address","which":which,"address":addr,"reason":reason}),
            format!("{which} address now {addr}: {reason}"),
        );
    }

    /// Something worth knowing that is not an error.
    pub fn notice(&self, text: &str) {
        self.emit(json!({"event":"notice","text":text}), text.to_string());
    }
}

fn or_unknown(v: Option<&str>) -> &str {
    v.unwrap_or("unknown")
}

/// Print a NAT discovery report: one JSON object, or a short table for people.
pub fn nat_report(r: &punch::punch_proto::nat::NatReport, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::to_value(r).unwrap_or(Value::Null);
        let _ = writeln!(out, "{v}");
        return;
    }
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let public = r.public.map(|p| p.to_string());
    let lines = [
        ("NAT type", or_unknown(r.classic.map(|c| c.as_str()))),
        ("mapping", or_unknown(r.mapping.map(|b| b.as_str()))),
        ("filtering", or_unknown(r.filtering.map(|b| b.as_str()))),
        ("public address", or_unknown(public.as_deref())),
        (
            "port allocation",
            or_unknown(r.port_allocation.map(|p| p.as_str())),
        ),
        ("hairpinning", yes_no(r.hairpin)),
    ];
    for (k, v) in lines {
        let _ = writeln!(out, "{:<16} {v}", format!("{k}:"));
    }
    let _ = writeln!(out, "\n{}", r.explanation);
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "({} tests against {} in {} ms; --json shows each observation)",
        r.tests.len(),
        r.server,
        r.elapsed_ms
    );
}
