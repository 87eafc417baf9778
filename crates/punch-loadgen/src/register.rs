//! `punch-loadgen register`: N simulated clients register with a punch server as real
//! clients do (wire v2, [`punch_proto::auth`]): an unsigned `Register`, the server's
//! `Challenge` with a nonce bound to the client's address, then the `Register` signed over
//! that nonce with the client's own Ed25519 key; then one refresh round (a signed
//! `Register` over the nonce each `Registered` handed out).
//!
//! **Distinct sources.** Client `i` sends from port `i % sockets` (one socket bound to
//! 0.0.0.0 each) and from address `--first-addr + i / sockets` in 127.0.0.0/8, chosen per
//! datagram with IP_PKTINFO; answers come back to that address and port, and IP_PKTINFO on
//! receive says which address, hence which client. A million clients thus need sixteen
//! sockets and 62,500 loopback addresses, none of them configured (all of 127.0.0.0/8 is
//! local on Linux), instead of a million sockets.
//!
//! **Cost kept out of the timing.** Key generation happens before the clock starts (on
//! every core). Signing cannot: it covers the server's nonce. A refresh in the same nonce
//! epoch gets the same nonce back, and then reuses the first signature, as a real client
//! may. The window (clients between their first request and their answer) bounds the
//! server's queue, so a slow server shows as a lower rate, not as drops.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use punch_proto::auth::{Nonce, RegisterRequest, Signature, SigningKey, NO_NONCE};
use punch_proto::wire::{ErrorCode, Frame, MAX_NAME_LEN};
use rand::{RngCore, SeedableRng};
use serde_json::json;
use socket2::Socket;

use crate::latency::Histogram;
use crate::mmsg::{self, BatchReceiver};
use crate::within;

/// A client without an answer this long after its last request is counted lost.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Most simulated clients.
pub const MAX_CLIENTS: usize = 4_000_000;
/// Datagrams per recvmmsg.
const RECV_BATCH: usize = 64;
/// Socket buffers asked for.
const SOCKET_BUFFER: usize = 4 << 20;
/// Transaction ids of the refresh round carry this bit (registration: client index + 1).
const REFRESH_TXN: u64 = 1 << 40;

/// Options of `punch-loadgen register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The punch server, IPv4 ADDR:PORT (on loopback: the clients' addresses are there).
    #[arg(long)]
    pub server: SocketAddr,
    /// Simulated clients, each with its own name, key, source address and port.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// First requests per second; 0: as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Most clients between their first request and their answer.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Source ports (one socket each).
    #[arg(long, default_value_t = 16)]
    pub sockets: usize,
    /// First source address; client i sends from this + i / SOCKETS (must stay in
    /// 127.0.0.0/8 and away from the server's address).
    #[arg(long, default_value = "127.1.0.0")]
    pub first_addr: Ipv4Addr,
    /// Names are PREFIX-INDEX.
    #[arg(long, default_value = "lg")]
    pub prefix: String,
    /// Skip the refresh round.
    #[arg(long)]
    pub no_refresh: bool,
    /// Seed of the clients' keys (the same seed gives the same keys).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start no new client after this many seconds of a round (registration or refresh);
    /// the counts then say how many made it.
    #[arg(long, default_value_t = 300.0)]
    pub max_seconds: f64,
    /// The server's process id: each phase then reports the server's CPU time (user and
    /// system, from /proc/PID/stat) over the phase and per client served, next to this
    /// generator's own, so a generator-bound run shows as one.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// CPU time (user + system) of process `pid` ("self": this one) so far, in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100);
    Some((utime + stime) as f64 / hz as f64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Unsigned first request out.
    First,
    /// Signed request out (registration or refresh).
    Signed,
    Registered,
    Refused,
    Lost,
}

struct Client {
    key: SigningKey,
    state: State,
    /// When its current exchange started (µs since the phase began).
    started_us: u32,
    /// When its last request left (ms since the phase began).
    sent_ms: u32,
    /// The nonce of the last `Registered`, and the one `sig` covers.
    nonce: Nonce,
    signed_nonce: Nonce,
    sig: Signature,
}

/// What a phase (registration or refresh) ended with.
#[derive(Default)]
struct Phase {
    done: u64,
    refused: u64,
    lost: u64,
    errors: u64,
    wrong_address: u64,
    refusals: HashMap<String, u64>,
    secs: f64,
    hist: Option<Histogram>,
    /// `--max-seconds` passed before every client had started.
    cut_short: bool,
    /// CPU seconds the server (with `--server-pid`) and this generator spent in the phase.
    server_cpu: Option<f64>,
    own_cpu: f64,
}

impl Phase {
    fn json(&self, name: &str) -> serde_json::Value {
        let h = self.hist.as_ref();
        let q = |p| h.map_or(0, |h| h.quantile(p));
        json!({
            name: self.done, "refused": self.refused, "lost": self.lost,
            "errors": self.errors, "wrong_address": self.wrong_address,
            "refusals": self.refusals, "seconds": self.secs, "cut_short": self.cut_short,
            "per_s": self.done as f64 / self.secs.max(1e-9),
            "server_cpu_s": self.server_cpu, "loadgen_cpu_s": self.own_cpu,
            "server_cpu_us_per": self.server_cpu.map(|s| s * 1e6 / (self.done.max(1) as f64)),
            "p50_us": q(0.5), "p99_us": q(0.99), "max_us": h.map_or(0, |h| h.max()),
        })
    }
}

struct Gen<'a> {
    args: &'a RegisterArgs,
    server: SocketAddrV4,
    sockets: Vec<Socket>,
    /// Each socket's port.
    ports: Vec<u16>,
    clients: Vec<Client>,
    first: u32,
}

fn check(args: &RegisterArgs) -> Result<SocketAddrV4> {
    let SocketAddr::V4(server) = args.server else {
        bail!("--server must be an IPv4 address, got {}", args.server);
    };
    within("--clients", args.clients, 1..=MAX_CLIENTS)?;
    within("--sockets", args.sockets, 1..=1024)?;
    within("--window", args.window, 1..=65536)?;
    ensure!(
        args.rate.is_finite() && args.rate >= 0.0,
        "--rate must be a number of requests per second (0: no limit), got {}",
        args.rate
    );
    ensure!(
        args.max_seconds.is_finite() && args.max_seconds > 0.0,
        "--max-seconds must be a positive number of seconds, got {}",
        args.max_seconds
    );
    let longest = format!("{}-{}", args.prefix, args.clients);
    ensure!(
        !args.prefix.is_empty() && longest.len() <= MAX_NAME_LEN,
        "--prefix must make names of 1 to {MAX_NAME_LEN} bytes ({longest:?})"
    );
    let first = u32::from(args.first_addr);
    let last = first as u64 + (args.clients as u64 - 1) / args.sockets as u64;
    ensure!(
        args.first_addr.octets()[0] == 127
            && last <= u32::from(Ipv4Addr::new(127, 255, 255, 254)) as u64,
        "--first-addr {} and {} clients over {} sockets leave 127.0.0.0/8",
        args.first_addr,
        args.clients,
        args.sockets
    );
    let server_ip = u32::from(*server.ip()) as u64;
    ensure!(
        !(first as u64..=last).contains(&server_ip),
        "the clients' addresses {}..={} include the server's {}",
        args.first_addr,
        Ipv4Addr::from(last as u32),
        server.ip()
    );
    Ok(server)
}

/// `n` key pairs from `seed`, made on every core.
pub fn keys(n: usize, seed: u64) -> Vec<SigningKey> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let seeds: Vec<[u8; 32]> = (0..n)
        .map(|_| {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            s
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = seeds
            .chunks(chunk)
            .map(|c| scope.spawn(move || c.iter().map(SigningKey::from_seed).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            // A thread that only computes keys does not panic; if it did, say so.
            .flat_map(|p| p.join().expect("key generation thread"))
            .collect()
    })
}

/// Run both phases and print the JSON line.
pub fn run(args: RegisterArgs) -> Result<()> {
    let server = check(&args)?;
    let t = Instant::now();
    let keys = keys(args.clients, args.seed);
    let keygen = t.elapsed().as_secs_f64();
    eprintln!("{} keys made in {keygen:.1} s", args.clients);
    let mut sockets = Vec::with_capacity(args.sockets);
    let mut ports = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let s = mmsg::udp_socket(unspecified, None, SOCKET_BUFFER, true)?;
        let port = s.local_addr()?.as_socket().map(|a| a.port());
        ports.push(port.context("the socket has no port")?);
        sockets.push(s);
    }
    let clients = keys
        .into_iter()
        .map(|key| Client {
            key,
            state: State::Idle,
            started_us: 0,
            sent_ms: 0,
            nonce: NO_NONCE,
            signed_nonce: NO_NONCE,
            sig: Signature::empty(),
        })
        .collect();
    let mut gen = Gen {
        args: &args,
        server,
        sockets,
        ports,
        clients,
        first: u32::from(args.first_addr),
    };
    let reg = gen.phase(false)?;
    eprintln!(
        "registered {} of {} in {:.2} s",
        reg.done, args.clients, reg.secs
    );
    let refresh = if args.no_refresh {
        None
    } else {
        let r = gen.phase(true)?;
        eprintln!("refreshed {} in {:.2} s", r.done, r.secs);
        Some(r)
    };
    println!(
        "{}",
        json!({
            "clients": args.clients, "sockets": args.sockets, "window": args.window,
            "keygen_seconds": keygen,
            "registrations_s": reg.done as f64 / reg.secs.max(1e-9),
            "register": reg.json("registered"),
            "refresh": refresh.as_ref().map(|r| r.json("refreshed")),
        })
    );
    Ok(())
}

impl Gen<'_> {
    fn source(&self, i: usize) -> (usize, Ipv4Addr) {
        let s = self.args.sockets;
        (i % s, Ipv4Addr::from(self.first + (i / s) as u32))
    }

    /// The client an answer on socket `sock` to address `to` is for.
    fn client_of(&self, sock: usize, to: Ipv4Addr) -> Option<usize> {
        let off = u32::from(to).checked_sub(self.first)? as usize;
        let i = off.checked_mul(self.args.sockets)?.checked_add(sock)?;
        (i < self.clients.len()).then_some(i)
    }

    fn name(&self, i: usize) -> String {
        format!("{}-{i}", self.args.prefix)
    }

    /// Send client `i`'s request: unsigned first (`signed == false`), else signed over
    /// its nonce (reusing the signature when the nonce is the one already signed).
    fn send(&mut self, i: usize, signed: bool, txn: u64) -> Result<bool> {
        let req = RegisterRequest {
            name: self.name(i),
            private: Vec::new(),
            nat: None,
            nonce: if signed {
                self.clients[i].nonce
            } else {
                NO_NONCE
            },
        };
        let c = &mut self.clients[i];
        let frame = if !signed {
            req.with_signature(txn, c.key.public_key(), Signature::empty())
        } else {
            if c.signed_nonce != c.nonce {
                c.sig = c.key.sign(&req.message(&c.key.public_key()));
                c.signed_nonce = c.nonce;
            }
            req.with_signature(txn, c.key.public_key(), c.sig)
        };
        let bytes = frame.encode().context("encoding a Register")?;
        let (sock, src) = self.source(i);
        mmsg::send_from(mmsg::fd(&self.sockets[sock]), &bytes, src, self.server)
    }

    /// One round: every client registers (`refresh == false`), or every registered client
    /// refreshes.
    fn phase(&mut self, refresh: bool) -> Result<Phase> {
        let n = self.clients.len();
        let todo: Vec<usize> = if refresh {
            (0..n)
                .filter(|&i| self.clients[i].state == State::Registered)
                .collect()
        } else {
            (0..n).collect()
        };
        let mut ph = Phase {
            hist: Some(Histogram::new()),
            ..Phase::default()
        };
        let mut receiver = BatchReceiver::new(RECV_BATCH, true);
        let mut ready = Vec::new();
        // (client, sent_ms) in send order, for timeouts; and sends the kernel refused.
        let mut timers: VecDeque<(usize, u32)> = VecDeque::new();
        let mut retry: VecDeque<(usize, bool)> = VecDeque::new();
        let (mut next, mut inflight) = (0usize, 0usize);
        let mut last_answer = Duration::ZERO;
        let pid = self.args.server_pid.map(|p| p.to_string());
        let server0 = pid.as_deref().and_then(cpu_seconds);
        let own0 = cpu_seconds("self").unwrap_or(0.0);
        let start = Instant::now();
        let txn_of = |i: usize| (i as u64 + 1) | if refresh { REFRESH_TXN } else { 0 };
        loop {
            let el = start.elapsed();
            let (now_ms, now_us) = (el.as_millis() as u32, el.as_micros() as u32);
            while let Some(&(i, signed)) = retry.front() {
                if !self.send(i, signed, txn_of(i))? {
                    break;
                }
                retry.pop_front();
                self.clients[i].sent_ms = now_ms;
                timers.push_back((i, now_ms));
            }
            let allowed = if el.as_secs_f64() >= self.args.max_seconds {
                ph.cut_short = next < todo.len();
                next
            } else if self.args.rate > 0.0 {
                ((el.as_secs_f64() * self.args.rate) as usize + 1).min(todo.len())
            } else {
                todo.len()
            };
            while next < allowed && inflight < self.args.window && retry.is_empty() {
                let i = todo[next];
                if !self.send(i, refresh, txn_of(i))? {
                    break;
                }
                let c = &mut self.clients[i];
                c.state = if refresh { State::Signed } else { State::First };
                c.started_us = now_us;
                c.sent_ms = now_ms;
                timers.push_back((i, now_ms));
                next += 1;
                inflight += 1;
            }
            if (next == todo.len() || ph.cut_short) && inflight == 0 && retry.is_empty() {
                break;
            }
            mmsg::wait_readable(self.sockets.iter(), 2, &mut ready)?;
            for &sock in &ready {
                loop {
                    let got = receiver.recv(mmsg::fd(&self.sockets[sock]))?;
                    let now = start.elapsed();
                    for k in 0..got {
                        let (data, meta) = receiver.get(k);
                        let frame = Frame::decode(data).ok();
                        let i = meta
                            .to
                            .filter(|_| meta.from == Some(self.server))
                            .and_then(|to| self.client_of(sock, to));
                        let (Some(frame), Some(i)) = (frame, i) else {
                            ph.errors += 1;
                            continue;
                        };
                        let (s, src) = self.source(i);
                        let source = SocketAddr::from((src, self.ports[s]));
                        let c = &mut self.clients[i];
                        match (frame, c.state) {
                            // A first request's challenge, or a refresh's whose nonce has
                            // aged out (real clients sign again, so the generator does too).
                            (Frame::Challenge { txn, nonce }, State::First | State::Signed)
                                if txn == txn_of(i) && nonce != c.nonce =>
                            {
                                c.nonce = nonce;
                                c.state = State::Signed;
                                if self.send(i, true, txn)? {
                                    self.clients[i].sent_ms = now.as_millis() as u32;
                                    timers.push_back((i, now.as_millis() as u32));
                                } else {
                                    retry.push_back((i, true));
                                }
                            }
                            (
                                Frame::Registered {
                                    txn,
                                    observed,
                                    nonce,
                                    ..
                                },
                                State::Signed,
                            ) if txn == txn_of(i) => {
                                c.state = State::Registered;
                                c.nonce = nonce;
                                if observed != source {
                                    ph.wrong_address += 1;
                                }
                                let took = (now.as_micros() as u32).saturating_sub(c.started_us);
                                if let Some(h) = ph.hist.as_mut() {
                                    h.record(took as u64);
                                }
                                ph.done += 1;
                                inflight -= 1;
                                last_answer = now;
                            }
                            (Frame::Error { txn, code, .. }, State::First | State::Signed)
                                if txn == txn_of(i) =>
                            {
                                c.state = State::Refused;
                                ph.refused += 1;
                                *ph.refusals.entry(code_name(code)).or_default() += 1;
                                inflight -= 1;
                                last_answer = now;
                            }
                            _ => ph.errors += 1,
                        }
                    }
                    if got < RECV_BATCH {
                        break;
                    }
                }
            }
            let now_ms = start.elapsed().as_millis() as u32;
            while let Some(&(i, sent)) = timers.front() {
                if now_ms.saturating_sub(sent) < TIMEOUT.as_millis() as u32 {
                    break;
                }
                timers.pop_front();
                let c = &mut self.clients[i];
                if c.sent_ms == sent && matches!(c.state, State::First | State::Signed) {
                    c.state = State::Lost;
                    ph.lost += 1;
                    inflight -= 1;
                }
            }
        }
        ph.secs = last_answer.as_secs_f64();
        ph.own_cpu = cpu_seconds("self").unwrap_or(0.0) - own0;
        ph.server_cpu = server0
            .zip(pid.as_deref().and_then(cpu_seconds))
            .map(|(a, b)| b - a);
        Ok(ph)
    }
}

fn code_name(code: ErrorCode) -> String {
    format!("{code:?}")
}
