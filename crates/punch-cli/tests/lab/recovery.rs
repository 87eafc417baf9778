//! Recovery scenarios: bob streams numbered messages to alice while a real fault hits the
//! lab (a router that reboots and hands out a new port, the server going away, bob moving
//! to another network), and the run measures when messages flow again and when a direct
//! path is back. Every message must arrive once and in order.
//!
//! Each scenario runs [`RUNS`] times in parallel, each on its own lab; a line per scenario
//! with the median and worst figures goes to `target/lab-results/recovery.txt`.

use std::process::Command;
use std::time::{Duration, Instant};

use super::relay::{assert_complete, Pair};
use super::{record_to, require_lab, start_server, Lab, EVENT_TIMEOUT};

/// Runs per scenario (fresh labs, in parallel).
pub const RUNS: usize = 5;
/// Gap between bob's messages.
pub const GAP: Duration = Duration::from_millis(50);
/// The fault strikes before this message (3 s into the stream).
pub const FAULT_AT: usize = 60;
/// Messages sent after the fault (and after an outage, for [`Fault::ServerDown`]).
pub const AFTER: usize = 400;
/// Messages must flow again this soon after the fault (the goal).
pub const FLOW_BOUND: Duration = Duration::from_secs(5);
/// A pause of deliveries shorter than this (a path check's interval) is no stall.
const STALL: Duration = Duration::from_secs(1);
/// A direct path must be back this soon after the fault, where one can exist.
pub const DIRECT_BOUND: Duration = Duration::from_secs(15);

/// What happens to the lab mid-chat.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Router `ra` (alice's) reboots: it forgets every mapping (as do both routers'
    /// connection tracking) and forwards nothing from its LAN for `outage`, while bob's
    /// packets keep arriving and take alice's old public port. Alice's traffic then
    /// leaves on a new port, which the run checks in the router's table.
    RouterRebootNewPort {
        /// How long the router forwards nothing outward.
        outage: Duration,
    },
    /// The server is killed and started again (empty) after `down`.
    ServerDown {
        /// How long it is away.
        down: Duration,
    },
    /// Bob moves to the lab's spare site (another router, another public address).
    BobMoves,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From the fault (or the server's return) to the end of the longest stall of
    /// deliveries after it: when messages flow again.
    pub flow_again: Duration,
    /// From the fault to bob's first report of a direct path after it (`None`: the path
    /// never changed, or no direct path came back).
    pub direct_again: Option<Duration>,
    /// Longest time between two deliveries after the fault.
    pub max_gap: Duration,
    /// Bob's paths, in order.
    pub paths: Vec<String>,
    /// What the fault did (e.g. the port change seen on the router).
    pub note: String,
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `conntrack -L -p udp FILTER...` in `router`'s namespace.
fn conntrack_udp(lab: &Lab, router: &str, filter: &[&str]) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(router),
            "conntrack",
            "-L",
            "-p",
            "udp",
        ])
        .args(filter)
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Alice's public port toward `peer` in router `router`'s connection tracking: the reply
/// tuple's destination port of her UDP conntrack entry toward `peer`.
pub fn mapped_port(lab: &Lab, router: &str, host: &str, peer: &str) -> Option<u16> {
    let text = conntrack_udp(lab, router, &["-s", host, "-d", peer]);
    text.lines().find_map(|line| {
        // orig: src= dst= sport= dport= ... reply: src= dst= sport= dport=
        let dports: Vec<u16> = line
            .split_whitespace()
            .filter_map(|f| f.strip_prefix("dport="))
            .filter_map(|p| p.parse().ok())
            .collect();
        dports.get(1).copied()
    })
}

/// True once `router` tracks a packet from `from` to its WAN address on `port` (a peer's
/// packet that arrived before the host behind it sent anything: it holds the port).
fn inbound_holds(lab: &Lab, router: &str, from: &str, port: u16) -> bool {
    !conntrack_udp(
        lab,
        router,
        &["-s", from, "--orig-port-dst", &port.to_string()],
    )
    .is_empty()
}

fn nft(lab: &Lab, router: &str, args: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(router), "sh", "-c"])
        .arg(format!("nft {args}"))
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flush(lab: &Lab, router: &str) {
    super::relay::conntrack_flush(lab, router);
}

/// [`Fault::RouterRebootNewPort`]: returns (alice's port toward bob before, after).
fn reboot_with_new_port(lab: &Lab, outage: Duration, before: u16) -> (u16, u16) {
    let (a_ip, b_pub) = (lab.get("A_IP").to_string(), lab.get("B_PUB").to_string());
    nft(
        lab,
        "ra",
        "insert rule ip punchlab forward iifname \"lan\" drop",
    );
    flush(lab, "ra");
    flush(lab, "rb");
    let start = Instant::now();
    // Bob's packets reach the rebooting router first and take alice's old port.
    while !inbound_holds(lab, "ra", &b_pub, before) && start.elapsed() < outage * 3 {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(outage.saturating_sub(start.elapsed()));
    let listing = nft(lab, "ra", "-a list chain ip punchlab forward");
    let handle = listing
        .lines()
        .find(|l| l.contains("iifname \"lan\" drop"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("the outage rule")
        .to_string();
    nft(
        lab,
        "ra",
        &format!("delete rule ip punchlab forward handle {handle}"),
    );
    // Alice's next packet toward bob creates her new mapping.
    let until = Instant::now() + Duration::from_secs(3);
    let mut after = None;
    while after.is_none() && Instant::now() < until {
        after = mapped_port(lab, "ra", &a_ip, &b_pub);
        std::thread::sleep(Duration::from_millis(50));
    }
    (before, after.unwrap_or(0))
}

/// The port in `addr` ("IP:PORT").
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// One run on a fresh lab `prefix` of routers `a` x `b`; `Err` with both sides' events if
/// it breaks the scenario's promises.
pub fn run(prefix: &str, a: &str, b: &str, fault: Fault) -> Result<Measured, String> {
    let lab = match fault {
        Fault::BobMoves => Lab::build(&["up", "--replace", "--spare", a, prefix, a, b], prefix),
        _ => Lab::pair(prefix, a, b),
    };
    // Default refresh (25 s): recovery must not depend on frequent registrations.
    let extra = ["--server-keepalive", "25"];
    let mut pair = Pair::start_with(&lab, &lab.ns("a"), &lab.ns("b"), "auto", &extra);
    pair.connected();
    let expect_direct_before = !matches!(fault, Fault::ServerDown { .. }) || a != "symmetric";
    // Wait for the direct path the pair starts on, so the fault breaks a direct path.
    let direct_addr = pair
        .bob
        .wait_for(EVENT_TIMEOUT, |v| {
            (v["event"] == "path" || v["event"] == "connected") && v["path"] == "direct"
        })
        .map(|(_, v)| v["remote"].as_str().unwrap_or("").to_string());
    if expect_direct_before && direct_addr.is_none() {
        return Err(format!(
            "no direct path before the fault\n bob: {}",
            pair.bob.events_text()
        ));
    }
    let down_msgs = match fault {
        Fault::ServerDown { down } => (down.as_millis() / GAP.as_millis()) as usize,
        _ => 0,
    };
    let n = FAULT_AT + down_msgs + AFTER;
    let mut sent_at = Vec::with_capacity(n);
    let mut fault_at = None;
    let mut back_at = None;
    let old_port = direct_addr.as_deref().map(port_of).unwrap_or(0);
    let reboot = std::thread::scope(|scope| {
        let mut rebooting = None;
        pair.stream(n, GAP, |i, p| {
            if i == FAULT_AT {
                fault_at = Some(Instant::now());
                match fault {
                    Fault::RouterRebootNewPort { outage } => {
                        let lab = &lab;
                        rebooting =
                            Some(scope.spawn(move || reboot_with_new_port(lab, outage, old_port)));
                    }
                    Fault::ServerDown { .. } => p.server = None,
                    Fault::BobMoves => {
                        let out = Command::new(super::lab_script())
                            .args(["move", &lab.prefix, "b", "c"])
                            .output()
                            .expect("punch-lab move");
                        assert!(
                            out.status.success(),
                            "punch-lab move: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            }
            if down_msgs > 0 && i == FAULT_AT + down_msgs {
                let (server, _) = start_server(&lab);
                p.server = Some(server);
                back_at = Some(Instant::now());
            }
            sent_at.push(Instant::now());
        });
        rebooting.map(|h| h.join())
    });
    let fault_at = fault_at.expect("the fault ran");
    let got = pair.received(n, Duration::from_secs(40));
    let complete = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_complete("recovery", &got, n, &pair)
    }));
    if complete.is_err() {
        return Err(format!(
            "messages lost, doubled or reordered ({} of {n})\n bob: {}\n alice: {}",
            got.len(),
            pair.bob.events_text(),
            pair.alice.events_text()
        ));
    }
    let delivered: Vec<(Instant, usize)> = pair
        .alice
        .seen
        .iter()
        .filter(|(_, v)| v["event"] == "message" && v["from"] == "bob")
        .filter_map(|(t, v)| {
            let text = v["text"].as_str()?;
            Some((*t, text.strip_prefix('m')?.parse().ok()?))
        })
        .collect();
    // Flow again: the fault (or the server's return) to the end of the longest stall
    // after it, the stall being measured from the fault (a message sent before the
    // fault's effect may still slip through at once).
    let since = back_at.unwrap_or(fault_at);
    let mut after_fault: Vec<Instant> = vec![fault_at];
    after_fault.extend(delivered.iter().map(|(t, _)| *t).filter(|t| *t > fault_at));
    let stall = after_fault
        .windows(2)
        .max_by_key(|w| w[1].duration_since(w[0]))
        .map(|w| (w[1].duration_since(w[0]), w[1]));
    let (max_gap, resumed) = stall.unwrap_or((Duration::ZERO, fault_at));
    // Deliveries that never paused for as long as a path check (1 s) did not stop.
    let first_after = if max_gap < STALL {
        Duration::ZERO
    } else {
        resumed.saturating_duration_since(since)
    };
    pair.bob.drain();
    let direct_again = pair
        .bob
        .seen
        .iter()
        .filter(|(t, v)| *t > fault_at && v["event"] == "path" && v["path"] == "direct")
        .map(|(t, _)| t.duration_since(fault_at))
        .next();
    let mut note = String::new();
    if let Some(r) = reboot {
        let (before, after) = r.map_err(|_| "the reboot thread panicked")?;
        if after == 0 || after == before {
            return Err(format!(
                "the router kept alice's port toward bob ({before} -> {after}): the fault did not happen as intended"
            ));
        }
        note = format!("alice's port toward bob {before} -> {after}");
    }
    if let Some(back) = back_at {
        note = format!(
            "server away {}; flow measured from its return",
            secs(back.duration_since(fault_at))
        );
    }
    let m = Measured {
        flow_again: first_after,
        direct_again,
        max_gap,
        paths: pair.bob_paths(),
        note,
    };
    if m.flow_again > FLOW_BOUND {
        return Err(format!(
            "messages flowed again only after {} ({m:?})\n bob: {}\n alice: {}\n server: {}",
            secs(m.flow_again),
            pair.bob.events_text(),
            pair.alice.events_text(),
            pair.server
                .as_ref()
                .map(|s| s.events_text())
                .unwrap_or_default()
        ));
    }
    Ok(m)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Run a scenario [`RUNS`] times in parallel and record its line. `direct`: a direct path
/// must be back within [`DIRECT_BOUND`] in every run (else the path must not matter).
pub fn scenario(name: &str, code: &str, a: &str, b: &str, fault: Fault, direct: bool) {
    let test = format!("{name}: {a} x {b}");
    require_lab(&test);
    let results: Vec<Result<Measured, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RUNS)
            .map(|run| {
                let prefix = format!("{code}{run}");
                scope.spawn(move || run_one(&prefix, a, b, fault))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("the run panicked".into())))
            .collect()
    });
    let mut failures = Vec::new();
    let mut ok = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(m) => {
                if direct && m.direct_again.is_none_or(|d| d > DIRECT_BOUND) {
                    failures.push(format!("run {i}: no direct path within 15 s: {m:?}"));
                }
                println!("{test} run {i}: {m:?}");
                ok.push(m);
            }
            Err(e) => failures.push(format!("run {i}: {e}")),
        }
    }
    let flow: Vec<Duration> = ok.iter().map(|m| m.flow_again).collect();
    let direct_times: Vec<Duration> = ok.iter().filter_map(|m| m.direct_again).collect();
    let gaps: Vec<Duration> = ok.iter().map(|m| m.max_gap).collect();
    let line = format!(
        "{test:<56} {}/{RUNS} runs complete; flow again median {} (max {}); direct again {}; longest gap median {}; {}",
        ok.len(),
        secs(median(flow.clone())),
        secs(flow.iter().max().copied().unwrap_or_default()),
        if direct_times.is_empty() {
            "n/a (path unchanged)".to_string()
        } else {
            format!(
                "median {} (max {}, {}/{} runs)",
                secs(median(direct_times.clone())),
                secs(direct_times.iter().max().copied().unwrap_or_default()),
                direct_times.len(),
                ok.len()
            )
        },
        secs(median(gaps)),
        ok.first().map(|m| m.note.as_str()).unwrap_or("")
    );
    record_to("recovery.txt", &line);
    assert!(failures.is_empty(), "{test}:\n{}", failures.join("\n"));
}

fn run_one(prefix: &str, a: &str, b: &str, fault: Fault) -> Result<Measured, String> {
    run(prefix, a, b, fault)
}
