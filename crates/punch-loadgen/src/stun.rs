//! `punch-loadgen stun`: a STUN Binding flood (RFC 8489 §5) from many sockets, with at most
//! a window of requests outstanding per socket, and latency from each request's own send
//! time.
//!
//! The 96-bit transaction id carries the socket's index, a per-socket sequence number and
//! the send time (microseconds since the start), so an answer tells by itself when its
//! request left. Each socket also keeps its outstanding sequence numbers (at most the
//! window), so only an answer to a request this socket sent and has not yet seen answered
//! counts: a Binding success response (class and method checked by punch-proto's decoder)
//! whose mapped address is the socket's own. Anything else counts as an error; requests
//! without an answer after [`TIMEOUT`] count as unanswered and free their window slot.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use punch_proto::stun::{Class, Message, Method, TransactionId};
use serde_json::json;
use socket2::Socket;

use crate::latency::Histogram;
use crate::mmsg::{self, BatchReceiver, BatchSender};
use crate::within;

/// A request unanswered this long is counted lost and its window slot reused.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Datagrams per recvmmsg.
const RECV_BATCH: usize = 64;
/// Socket buffers asked for.
const SOCKET_BUFFER: usize = 1 << 20;

/// Options of `punch-loadgen stun`.
#[derive(Args, Debug)]
pub struct StunArgs {
    /// The STUN server, IPv4 ADDR:PORT.
    #[arg(long)]
    pub server: SocketAddr,
    /// Sockets sending at once (each its own source port).
    #[arg(long, default_value_t = 64)]
    pub sockets: usize,
    /// Seconds of sending (answers are awaited up to one second more).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most requests outstanding per socket.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Local address the sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: Ipv4Addr,
}

/// One socket's state.
struct Flow {
    socket: Socket,
    local: SocketAddrV4,
    next_seq: u32,
    /// (sequence number, send time in µs since the start) of requests not yet answered.
    outstanding: Vec<(u32, u32)>,
}

/// The counts one run ends with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub answered: u64,
    pub errors: u64,
    pub unanswered: u64,
}

fn check(args: &StunArgs) -> Result<SocketAddrV4> {
    let SocketAddr::V4(server) = args.server else {
        bail!("--server must be an IPv4 address, got {}", args.server);
    };
    within("--sockets", args.sockets, 1..=4096)?;
    within("--window", args.window, 1..=1024)?;
    ensure!(
        args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0,
        "--duration must be between 0 and 3600 seconds, got {}",
        args.duration
    );
    Ok(server)
}

/// The transaction id of request `seq` of socket `index`, sent at `sent_us`.
fn txn(index: u32, seq: u32, sent_us: u32) -> [u8; 12] {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&index.to_be_bytes());
    id[4..8].copy_from_slice(&seq.to_be_bytes());
    id[8..].copy_from_slice(&sent_us.to_be_bytes());
    id
}

fn untxn(id: &[u8; 12]) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_be_bytes([id[i], id[i + 1], id[i + 2], id[i + 3]]);
    (word(0), word(4), word(8))
}

/// Run the flood and print its JSON line.
pub fn run(args: StunArgs) -> Result<()> {
    let (counts, hist, secs) = flood(&args)?;
    let p = |q| hist.quantile(q);
    println!(
        "{}",
        json!({
            "sent": counts.sent, "answered": counts.answered, "errors": counts.errors,
            "unanswered": counts.unanswered, "seconds": secs,
            "req_s": counts.answered as f64 / secs,
            "p50_us": p(0.5), "p99_us": p(0.99), "max_us": hist.max(),
            "sockets": args.sockets, "window": args.window,
        })
    );
    Ok(())
}

/// Send for `args.duration`, wait for the last answers; the counts, the latencies and the
/// seconds from the first request to the end of sending or the last answer, the later.
pub fn flood(args: &StunArgs) -> Result<(Counts, Histogram, f64)> {
    let server = check(args)?;
    // A request template from punch-proto's encoder; only the transaction id changes.
    let template = Message::binding_request(TransactionId::new([0; 12]))
        .encode()
        .context("encoding a Binding request")?;
    ensure!(template.len() == 20, "a bare Binding request is 20 bytes");
    let mut flows = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let socket = mmsg::udp_socket(
            SocketAddrV4::new(args.bind, 0),
            Some(server),
            SOCKET_BUFFER,
            false,
        )?;
        let local = match socket.local_addr()?.as_socket() {
            Some(SocketAddr::V4(a)) => a,
            other => bail!("unexpected local address {other:?}"),
        };
        flows.push(Flow {
            socket,
            local,
            next_seq: 0,
            outstanding: Vec::with_capacity(args.window),
        });
    }
    let mut sender = BatchSender::new(args.window);
    let mut receiver = BatchReceiver::new(RECV_BATCH, false);
    let mut counts = Counts::default();
    let mut hist = Histogram::new();
    let mut ready = Vec::new();
    let mut reqs: Vec<[u8; 20]> = vec![[0; 20]; args.window];
    let start = Instant::now();
    let send_for = Duration::from_secs_f64(args.duration);
    let mut last_sweep = start;
    let mut send_end = None;
    let mut last_answer = Duration::ZERO;
    loop {
        let now = Instant::now();
        let elapsed = now.duration_since(start);
        let sending = elapsed < send_for;
        if !sending && send_end.is_none() {
            send_end = Some(elapsed);
        }
        if sending {
            let now_us = elapsed.as_micros() as u32;
            for (i, f) in flows.iter_mut().enumerate() {
                let room = args.window - f.outstanding.len();
                if room == 0 {
                    continue;
                }
                for (k, r) in reqs[..room].iter_mut().enumerate() {
                    r.copy_from_slice(&template);
                    let seq = f.next_seq.wrapping_add(k as u32);
                    r[8..].copy_from_slice(&txn(i as u32, seq, now_us));
                }
                let msgs: Vec<&[u8]> = reqs[..room].iter().map(|r| &r[..]).collect();
                let n = sender.send(mmsg::fd(&f.socket), &msgs)?;
                for k in 0..n {
                    f.outstanding
                        .push((f.next_seq.wrapping_add(k as u32), now_us));
                }
                f.next_seq = f.next_seq.wrapping_add(n as u32);
                counts.sent += n as u64;
            }
        } else if flows.iter().all(|f| f.outstanding.is_empty()) || elapsed > send_for + TIMEOUT {
            break;
        }
        mmsg::wait_readable(flows.iter().map(|f| &f.socket), 5, &mut ready)?;
        for &i in &ready {
            let f = &mut flows[i];
            loop {
                let n = receiver.recv(mmsg::fd(&f.socket))?;
                let got_us = start.elapsed().as_micros() as u64;
                for k in 0..n {
                    let (data, _) = receiver.get(k);
                    match answer(i as u32, f, data) {
                        Some(sent_us) => {
                            counts.answered += 1;
                            last_answer = Duration::from_micros(got_us);
                            hist.record(got_us.saturating_sub(sent_us as u64));
                        }
                        None => counts.errors += 1,
                    }
                }
                if n < RECV_BATCH {
                    break;
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_millis(100) {
            last_sweep = now;
            let cutoff = now
                .duration_since(start)
                .saturating_sub(TIMEOUT)
                .as_micros() as u32;
            for f in &mut flows {
                let before = f.outstanding.len();
                f.outstanding.retain(|&(_, sent)| sent >= cutoff);
                counts.unanswered += (before - f.outstanding.len()) as u64;
            }
        }
    }
    for f in &flows {
        counts.unanswered += f.outstanding.len() as u64;
    }
    // Answers that arrive after the sending stopped count, and so does their time.
    let secs = send_end.unwrap_or(send_for).max(last_answer).as_secs_f64();
    Ok((counts, hist, secs))
}

/// If `data` answers an outstanding request of flow `index`, its send time (and it is no
/// longer outstanding).
fn answer(index: u32, f: &mut Flow, data: &[u8]) -> Option<u32> {
    let msg = Message::decode(data).ok()?;
    if msg.class != Class::SuccessResponse || msg.method != Method::BINDING {
        return None;
    }
    let (idx, seq, sent_us) = untxn(&msg.transaction_id.id96()?);
    if idx != index || msg.mapped_address() != Some(SocketAddr::V4(f.local)) {
        return None;
    }
    let pos = f
        .outstanding
        .iter()
        .position(|&(s, t)| s == seq && t == sent_us)?;
    f.outstanding.swap_remove(pos);
    Some(sent_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_round_trip() {
        assert_eq!(
            untxn(&txn(7, 0xdead_beef, 123_456)),
            (7, 0xdead_beef, 123_456)
        );
    }
}
