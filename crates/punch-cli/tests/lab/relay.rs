//! Relay scenarios: chats that start on the relay, move to direct paths, survive lost NAT
//! mappings and a server restart, with a count of messages that must all arrive in order.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{record_to, start_server_with, tempdir, Lab, Proc, EVENT_TIMEOUT};

/// Messages bob sends in a stream scenario, and the gap between them.
pub const STREAM_MESSAGES: usize = 60;
pub const STREAM_GAP: Duration = Duration::from_millis(50);

/// A chat pair in a lab: alice listening, bob connecting, both with `--relay MODE`.
pub struct Pair {
    pub alice: Proc,
    pub bob: Proc,
    /// The server, while it runs (a restart test stops it by taking it).
    pub server: Option<Proc>,
    pub addr: String,
    pub started: Instant,
}

pub fn chat_args(addr: &str, name: &str, home: &str, relay: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "chat", "--json", "--server", addr, "--name", name, "--home", home, "--relay", relay,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Frequent refreshes keep these scenarios short, unless the test sets its own.
    if !extra.contains(&"--server-keepalive") {
        v.extend(["--server-keepalive".to_string(), "2".to_string()]);
    }
    // A short punching deadline keeps failing attempts short, unless the test sets one.
    if !extra.contains(&"--punch-timeout") {
        v.extend(["--punch-timeout".to_string(), "3".to_string()]);
    }
    // These scenarios are about UDP and its relay, unless the test picks a transport.
    if !extra.contains(&"--transport") {
        v.extend(["--transport".to_string(), "udp".to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn spawn(name: &str, ns: &str, args: &[String]) -> Proc {
    Proc::spawn(
        name,
        ns,
        &args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    )
}

impl Pair {
    pub fn start(lab: &Lab, ns_a: &str, ns_b: &str, relay: &str) -> Pair {
        Pair::start_with(lab, ns_a, ns_b, relay, &[])
    }

    /// As [`Pair::start`], with `extra` chat arguments for both sides.
    pub fn start_with(lab: &Lab, ns_a: &str, ns_b: &str, relay: &str, extra: &[&str]) -> Pair {
        Pair::start_full(lab, ns_a, ns_b, relay, extra, &[])
    }

    /// As [`Pair::start_with`], the server started with `server_extra` options.
    pub fn start_full(
        lab: &Lab,
        ns_a: &str,
        ns_b: &str,
        relay: &str,
        extra: &[&str],
        server_extra: &[&str],
    ) -> Pair {
        let (server, addr) = start_server_with(lab, server_extra);
        Pair::with_server(lab, ns_a, ns_b, relay, extra, server, addr)
    }

    /// As [`Pair::start_with`], with a server already started, reached at `addr` (an
    /// address, or a name the lab's hosts resolve).
    pub fn with_server(
        lab: &Lab,
        ns_a: &str,
        ns_b: &str,
        relay: &str,
        extra: &[&str],
        server: Proc,
        addr: String,
    ) -> Pair {
        // A TCP client does not retransmit its way past a server still starting up.
        super::tcp::wait_tcp_listening(lab, 3478);
        let home = tempdir(&lab.prefix);
        let mut alice = spawn(
            "alice",
            ns_a,
            &chat_args(&addr, "alice", &format!("{home}/a"), relay, extra),
        );
        assert!(
            alice.wait_event("registered", EVENT_TIMEOUT).is_some(),
            "alice did not register: {}",
            alice.events_text()
        );
        let started = Instant::now();
        let mut extra_b = extra.to_vec();
        extra_b.extend(["--peer", "alice"]);
        let bob = spawn(
            "bob",
            ns_b,
            &chat_args(&addr, "bob", &format!("{home}/b"), relay, &extra_b),
        );
        Pair {
            alice,
            bob,
            server: Some(server),
            addr,
            started,
        }
    }

    /// Bob's `connected` event (or a panic with both sides' events).
    pub fn connected(&mut self) -> serde_json::Value {
        match self.bob.wait_for(EVENT_TIMEOUT, |v| {
            v["event"] == "connected" || v["event"] == "error"
        }) {
            Some((_, v)) if v["event"] == "connected" => v,
            other => panic!(
                "bob did not connect: {other:?}\n bob: {}\n alice: {}",
                self.bob.events_text(),
                self.alice.events_text()
            ),
        }
    }

    /// Bob sends `n` numbered messages, `gap` apart, calling `during(i)` before each.
    pub fn stream(&mut self, n: usize, gap: Duration, mut during: impl FnMut(usize, &mut Pair)) {
        for i in 0..n {
            during(i, self);
            self.bob.say(&format!("m{i:04}"));
            std::thread::sleep(gap);
        }
    }

    /// Wait until alice has `n` numbered messages from bob; return them in arrival order.
    pub fn received(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        let last = format!("m{:04}", n - 1);
        let _ = self.alice.wait_for(timeout, |v| {
            v["event"] == "message" && v["text"] == last.as_str()
        });
        self.alice
            .seen
            .iter()
            .filter(|(_, v)| v["event"] == "message" && v["from"] == "bob")
            .filter_map(|(_, v)| v["text"].as_str().map(str::to_string))
            .filter(|t| t.starts_with('m'))
            .collect()
    }

    /// Bob sends `n` numbered messages; all must reach alice once and in order, and then
    /// a line from alice must reach bob.
    pub fn talk_both_ways(&mut self, test: &str, n: usize) {
        self.stream(n, Duration::from_millis(20), |_, _| {});
        let got = self.received(n, Duration::from_secs(10));
        assert_complete(test, &got, n, self);
        self.answer_back(test);
    }

    /// A line from alice must reach bob.
    pub fn answer_back(&mut self, test: &str) {
        self.alice.say("back from alice");
        let back = self.bob.wait_for(Duration::from_secs(10), |v| {
            v["event"] == "message" && v["text"] == "back from alice"
        });
        assert!(
            back.is_some(),
            "{test}: alice's line did not arrive: {}",
            self.bob.events_text()
        );
    }

    /// Path kinds bob reported, in order (from `connected` and `path` events).
    pub fn bob_paths(&mut self) -> Vec<String> {
        self.bob.drain();
        self.bob
            .seen
            .iter()
            .filter(|(_, v)| v["event"] == "connected" || v["event"] == "path")
            .filter_map(|(_, v)| v["path"].as_str().map(str::to_string))
            .collect()
    }
}

/// Assert that all `n` numbered messages arrived exactly once, in order.
pub fn assert_complete(test: &str, got: &[String], n: usize, pair: &Pair) {
    let want: Vec<String> = (0..n).map(|i| format!("m{i:04}")).collect();
    assert_eq!(
        got,
        &want[..],
        "{test}: messages lost, duplicated or out of order\n bob: {}\n alice: {}",
        pair.bob.events_text(),
        pair.alice.events_text()
    );
}

/// Flush the connection tracking (every NAT mapping and filter state) of a router.
pub fn conntrack_flush(lab: &Lab, router: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(router), "conntrack", "-F"])
        .output()
        .expect("run conntrack");
    assert!(
        out.status.success(),
        "conntrack -F failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Short code of a router type, for prefixes.
pub fn code(kind: &str) -> &'static str {
    super::code(kind)
}

/// Record a line of the relay matrix.
pub fn record(line: &str) {
    record_to("relay-matrix.txt", line);
}
