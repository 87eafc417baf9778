//! Property: whatever sequence of decoded frames (and relayed datagrams) arrives from
//! whatever addresses, at whatever times, the rendezvous server never panics, never holds
//! more peers than its bound, only ever sends valid frames to addresses it heard from (no
//! reflection toward third parties), answers each frame with at most two datagrams,
//! answers a relayed datagram with at most three times its size, and drains every table
//! and timer once time runs past every lifetime. Registrations come unsigned, signed as a
//! client signs them (after the server's challenge), or signed by the wrong key; only the
//! properly signed ones are accepted.

#[path = "rendezvous_support.rs"]
mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use punch_proto::auth::{Nonce, RegisterRequest, SigningKey};
use punch_proto::rendezvous::{
    Rendezvous, RendezvousConfig, CONNECT_DEDUP_TTL, INTRO_ATTEMPTS, INTRO_RETRANSMIT,
};
use punch_proto::wire::{
    encode_relay, ErrorCode, Frame, PeerInfo, Side, FRAME_TAG, MAX_NAME_LEN, MAX_PRIVATE_ADDRS,
    WIRE_VERSION,
};

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        // A small pool, so frames from the same address meet each other.
        (1u8..5, prop_oneof![Just(1000u16), Just(2000u16)])
            .prop_map(|(h, p)| SocketAddr::from((Ipv4Addr::new(198, 51, 100, h), p))),
        (any::<u32>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((Ipv4Addr::from(ip), p))),
        (any::<u128>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((Ipv6Addr::from(ip), p))),
    ]
}

/// One name a case may use.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["alice", "bob", "carol", "dave", "eve"])
            .prop_map(String::from),
        1 => "[a-z0-9]{1,64}",
        1 => "\\PC{1,16}",
        // Names that `{:?}` blows up (a combining accent becomes `\u{301}`, 2 bytes -> 7),
        // then a tail with unescaped multi-byte characters: quoted in an error reason they
        // pass MAX_REASON_LEN, and the cut may fall inside a character.
        2 => (
            prop::sample::select(vec!['\u{301}', '\u{200b}', '"']),
            0usize..32,
            prop::collection::vec(prop::sample::select(vec!['a', 'é', '字', '😀']), 0..8),
        )
            .prop_map(|(escaped, n, tail)| {
                let mut name = String::new();
                for c in std::iter::repeat_n(escaped, n).chain(tail) {
                    if name.len() + c.len_utf8() > MAX_NAME_LEN {
                        break;
                    }
                    name.push(c);
                }
                if name.is_empty() {
                    name.push('x');
                }
                name
            }),
    ]
}

/// The names of one case: few, so that registrations, lookups and conflicts meet.
fn name_pool() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(any_name(), 1..6)
}

fn txn() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, any::<u64>()]
}

/// Four identities (key pairs from fixed seeds).
fn signer(k: u8) -> SigningKey {
    SigningKey::from_seed(&[k + 1; 32])
}

fn key() -> impl Strategy<Value = [u8; 32]> {
    (0u8..4).prop_map(|k| signer(k).public_key())
}

fn frame(names: Vec<String>) -> impl Strategy<Value = Frame> {
    let name = move || prop::sample::select(names.clone());
    let private = || prop::collection::vec(addr(), 0..=MAX_PRIVATE_ADDRS);
    prop_oneof![
        2 => (txn(), name(), key(), private())
            .prop_map(|(txn, name, key, private)| support::unsigned_register(txn, &name, key, private)),
        4 => (txn(), name()).prop_map(|(txn, target)| Frame::Connect { txn, target }),
        1 => any::<u64>().prop_map(|session| Frame::IntroduceAck { session }),
        1 => (txn(), addr(), any::<u32>())
            .prop_map(|(txn, observed, expires_secs)| Frame::Registered { txn, observed, expires_secs, nonce: [1; 16] }),
        1 => (txn(), any::<u64>(), any::<bool>(), name(), key(), addr(), private())
            .prop_map(|(txn, session, initiator, name, key, public, private)| Frame::Introduce {
                txn, session, initiator, peer: PeerInfo { name, key, public, private },
            }),
        1 => (txn(), "[ -~]{0,200}").prop_map(|(txn, reason)| Frame::Error {
            txn, code: ErrorCode::BadRequest, reason,
        }),
        1 => (any::<u64>(), any::<u32>()).prop_map(|(session, seq)| Frame::Probe { session, seq }),
        1 => (any::<u64>(), any::<u32>(), addr())
            .prop_map(|(session, seq, observed)| Frame::ProbeAck { session, seq, observed }),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// A well-formed frame from an address.
    Frame(SocketAddr, Frame),
    /// Arbitrary bytes after a valid header: fed if (by chance) they decode.
    Bytes(SocketAddr, Vec<u8>),
    /// Acknowledge the n-th introduction seen so far (modulo), from its real destination
    /// or from a wrong address.
    Ack(usize, bool),
    /// A relayed datagram for the n-th session seen so far (modulo), or for a made-up
    /// one, claiming either side, from an address.
    Relay(SocketAddr, usize, bool, bool, Vec<u8>),
    /// Let time pass and run the timers.
    Wait(Duration),
    /// A registration as a client makes it: unsigned, then signed over the challenge's
    /// nonce by identity `k` (or, if `forge`, by another identity than the key named).
    Signed {
        from: SocketAddr,
        txn: u64,
        name: String,
        k: u8,
        private: Vec<SocketAddr>,
        forge: bool,
    },
}

fn op(names: Vec<String>) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (addr(), frame(names.clone())).prop_map(|(a, f)| Op::Frame(a, f)),
        4 => (addr(), txn(), prop::sample::select(names), 0u8..4,
              prop::collection::vec(addr(), 0..=MAX_PRIVATE_ADDRS), prop::bool::weighted(0.2))
            .prop_map(|(from, txn, name, k, private, forge)| Op::Signed { from, txn, name, k, private, forge }),
        1 => (addr(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(a, b)| Op::Bytes(a, b)),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(n, right)| Op::Ack(n, right)),
        2 => (addr(), any::<usize>(), any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(a, n, known, requester, payload)| Op::Relay(a, n, known, requester, payload)),
        3 => (0u64..150_000).prop_map(|ms| Op::Wait(Duration::from_millis(ms))),
    ]
}

struct Model {
    rv: Rendezvous,
    max_peers: usize,
    now: Instant,
    heard_from: HashSet<SocketAddr>,
    /// (destination, session) of every passive-side introduction sent.
    intros: Vec<(SocketAddr, u64)>,
    /// The last challenge sent: (destination, txn, nonce).
    challenge: Option<(SocketAddr, u64, Nonce)>,
    /// Addresses a registration was ever accepted from.
    registered: HashSet<SocketAddr>,
    /// What the last drain sent: (destination, bytes).
    last_out: Vec<(SocketAddr, usize)>,
}

impl Model {
    /// Feed a relayed datagram; check where it goes and what comes back to the sender.
    fn feed_relay(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<(), TestCaseError> {
        self.heard_from.insert(from);
        let forward = self.rv.relay(self.now, from, datagram);
        if let Some(to) = forward {
            prop_assert!(
                self.heard_from.contains(&to),
                "relayed to {to}, which never sent anything"
            );
        }
        let mut back = 0;
        while let Some((to, bytes)) = self.rv.poll_transmit() {
            prop_assert!(Frame::decode(&bytes).is_ok(), "invalid frame {bytes:02x?}");
            prop_assert!(self.heard_from.contains(&to), "sent to {to}, unheard");
            if to == from {
                back += bytes.len();
            }
        }
        // Anti-amplification: a refusal is never more than 3x what provoked it.
        prop_assert!(
            back <= 3 * datagram.len(),
            "{back} bytes back for {}",
            datagram.len()
        );
        Ok(())
    }
}

impl Model {
    /// Drain the output and check every datagram; returns how many there were.
    fn drain(&mut self) -> Result<usize, TestCaseError> {
        let mut n = 0;
        self.last_out.clear();
        while let Some((to, bytes)) = self.rv.poll_transmit() {
            n += 1;
            self.last_out.push((to, bytes.len()));
            let frame = Frame::decode(&bytes);
            prop_assert!(frame.is_ok(), "the server sent an invalid frame: {frame:?}");
            prop_assert!(
                self.heard_from.contains(&to),
                "the server sent to {to}, which never sent it anything"
            );
            match frame {
                Ok(Frame::Introduce {
                    session,
                    initiator: false,
                    ..
                }) => self.intros.push((to, session)),
                Ok(Frame::Challenge { txn, nonce }) => self.challenge = Some((to, txn, nonce)),
                Ok(Frame::Registered { .. }) => {
                    self.registered.insert(to);
                }
                _ => {}
            }
        }
        prop_assert!(self.rv.peer_count() <= self.max_peers);
        Ok(n)
    }

    fn feed(&mut self, from: SocketAddr, frame: Frame) -> Result<(), TestCaseError> {
        self.heard_from.insert(from);
        let request_len = frame.encoded_len().unwrap_or(0);
        let unregistered = !self.registered.contains(&from);
        self.rv.handle_frame(self.now, from, frame.clone());
        let n = self.drain()?;
        // An unproven source (never registered: it may be spoofed) asking for an
        // introduction gets at most its request's size back.
        if matches!(frame, Frame::Connect { .. }) && unregistered {
            let back: usize = self
                .last_out
                .iter()
                .filter(|(to, _)| *to == from)
                .map(|(_, n)| n)
                .sum();
            prop_assert!(
                back <= request_len,
                "{back} bytes back for a {request_len}-byte Connect"
            );
        }
        prop_assert!(n <= 2, "{n} datagrams in answer to one frame");
        Ok(())
    }
}

fn run(max_peers: usize, ttl: Duration, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let mut m = Model {
        rv: Rendezvous::new(
            RendezvousConfig {
                registration_ttl: ttl,
                max_peers,
                ..RendezvousConfig::default()
            },
            7,
        ),
        max_peers,
        now: t0,
        heard_from: HashSet::new(),
        intros: Vec::new(),
        challenge: None,
        registered: HashSet::new(),
        last_out: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Frame(from, frame) => {
                // Only what the decoder lets through reaches the server.
                let Ok(bytes) = frame.encode() else { continue };
                let decoded = Frame::decode(&bytes);
                prop_assert_eq!(decoded.as_ref(), Ok(&frame));
                m.feed(from, frame)?;
            }
            Op::Bytes(from, body) => {
                let mut bytes = vec![FRAME_TAG, WIRE_VERSION];
                bytes.extend(body);
                if let Ok(frame) = Frame::decode(&bytes) {
                    m.feed(from, frame)?;
                }
            }
            Op::Ack(n, right) => {
                if m.intros.is_empty() {
                    continue;
                }
                let (to, session) = m.intros[n % m.intros.len()];
                let from = if right {
                    to
                } else {
                    SocketAddr::from(([203, 0, 113, 1], 1))
                };
                m.feed(from, Frame::IntroduceAck { session })?;
            }
            Op::Relay(from, n, known, requester, payload) => {
                let session = match m.intros.get(n % m.intros.len().max(1)) {
                    Some(&(_, session)) if known => session,
                    _ => n as u64,
                };
                let side = if requester {
                    Side::Requester
                } else {
                    Side::Target
                };
                let datagram = encode_relay(side, session, &payload);
                m.feed_relay(from, &datagram)?;
            }
            Op::Signed {
                from,
                txn,
                name,
                k,
                private,
                forge,
            } => {
                let key = signer(k).public_key();
                m.challenge = None;
                let first = support::unsigned_register(txn, &name, key, private.clone());
                if first.encode().is_err() {
                    continue; // breaks a bound: the decoder would not let it through
                }
                m.feed(from, first)?;
                let Some((to, t, nonce)) = m.challenge.take() else {
                    // Rate-limited: no answer at all.
                    continue;
                };
                prop_assert_eq!((to, t), (from, txn), "the challenge answers the request");
                let req = RegisterRequest {
                    name,
                    private,
                    nat: None,
                    nonce,
                };
                let by = if forge {
                    signer((k + 1) % 4)
                } else {
                    signer(k)
                };
                let frame = req.with_signature(txn, key, by.sign(&req.message(&key)));
                let before = m.rv.stats().clone();
                m.feed(from, frame)?;
                let after = m.rv.stats();
                if after.register_limited > before.register_limited {
                    continue;
                }
                prop_assert_eq!(
                    after.challenged,
                    before.challenged,
                    "a fresh nonce is taken"
                );
                if forge {
                    prop_assert_eq!(after.bad_signatures, before.bad_signatures + 1);
                    prop_assert_eq!(after.registrations, before.registrations);
                } else {
                    prop_assert_eq!(after.bad_signatures, before.bad_signatures);
                }
            }
            Op::Wait(d) => {
                m.now += d;
                m.rv.handle_timeout(m.now);
                let introductions = m.rv.stats().introductions as usize;
                let n = m.drain()?;
                prop_assert!(n <= introductions, "{n} sends from one timer run");
            }
        }
    }
    // Past every lifetime, everything drains and the server stops asking to be woken.
    let intro_schedule: Duration = (1..=INTRO_ATTEMPTS).map(|a| INTRO_RETRANSMIT * a).sum();
    let horizon = m.now + ttl + intro_schedule + CONNECT_DEDUP_TTL;
    let mut wakes = 0;
    while let Some(t) = m.rv.poll_timeout() {
        prop_assert!(t <= horizon, "timer set past every lifetime");
        m.now = m.now.max(t);
        m.rv.handle_timeout(m.now);
        m.drain()?;
        wakes += 1;
        prop_assert!(wakes < 10_000, "timers never settle");
    }
    prop_assert_eq!(m.rv.peer_count(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_frames_never_panic_or_break_bounds(
        max_peers in 1usize..5,
        ttl_secs in 1u64..120,
        (_names, ops) in name_pool().prop_flat_map(|names| {
            (Just(names.clone()), prop::collection::vec(op(names), 0..80))
        }),
    ) {
        run(max_peers, Duration::from_secs(ttl_secs), ops)?;
    }
}
