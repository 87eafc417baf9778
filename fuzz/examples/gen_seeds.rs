//! Writes the hand-made seeds into `fuzz/seeds/<target>/hand-*`: the RFC 5769 vectors and
//! messages our own STUN server sends, every `Frame` variant, and agent / rendezvous
//! scenarios that reach deep states (a path chosen, a full registry, retransmissions), and
//! TCP registry scenarios (an introduction, a relay splice, framing errors, expiry).
//!
//! Run from `fuzz/`: `cargo run --example gen_seeds`. Existing `hand-*` files are
//! overwritten; other seeds (minimised fuzzer finds) are left alone.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use punch_fuzz::{agent_ops, rendezvous_ops, tcp_ops};
use punch_proto::auth::{RegisterRequest, SigningKey, NO_NONCE};
use punch_proto::nat::Classic;
use punch_proto::stun::{
    Attribute, ChangeRequest, Class, ErrorCode as StunErrorCode, Message, Method, TransactionId,
};
use punch_proto::tcp::framing::encode_framed;
use punch_proto::wire::{ErrorCode, Frame, PeerInfo, HI_REQUEST, LEGACY_WIRE_VERSION};

/// RFC 5769 §2.1 sample request (as in `crates/punch-proto/tests/stun_codec.rs`).
const SAMPLE_REQUEST: &str = "
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf";

/// RFC 5769 §2.2 sample IPv4 response.
const SAMPLE_IPV4_RESPONSE: &str = "
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96";

/// RFC 5769 §2.3 sample IPv6 response.
const SAMPLE_IPV6_RESPONSE: &str = "
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c";

/// A RFC 3489 §11.1 Binding Request (as in `crates/punch-proto/tests/stun_rfc3489.rs`).
const CLASSIC_REQUEST: &str = "
    00 01 00 08  01 02 03 04  05 06 07 08  09 0a 0b 0c  0d 0e 0f 10
    00 03 00 04  00 00 00 00";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("hand-{name}")), bytes).unwrap();
}

fn stun_seeds() {
    let t = "stun_decode";
    write(t, "rfc5769-request", &hex(SAMPLE_REQUEST));
    write(t, "rfc5769-ipv4-response", &hex(SAMPLE_IPV4_RESPONSE));
    write(t, "rfc5769-ipv6-response", &hex(SAMPLE_IPV6_RESPONSE));
    write(t, "rfc3489-request", &hex(CLASSIC_REQUEST));

    let modern = TransactionId::new([7; 12]);
    let classic = TransactionId::from_bytes([9; 16]);
    let mut request = Message::binding_request(modern);
    request.fingerprint = true;
    write(t, "binding-request-fp", &request.encode().unwrap());
    let v6 = addr("[2001:db8::1]:40000");
    let response = Message::binding_success(&request, v6);
    write(t, "binding-success-v6", &response.encode().unwrap());
    let classic_request = Message::binding_request(classic);
    let mut response = Message::binding_success(&classic_request, addr("198.51.100.7:5000"));
    response
        .attributes
        .push(Attribute::SourceAddress(addr("192.0.2.1:3478")));
    response
        .attributes
        .push(Attribute::ChangedAddress(addr("192.0.2.2:3479")));
    write(t, "classic-success", &response.encode().unwrap());

    let mut rfc5780 = Message::binding_request(modern);
    rfc5780.attributes = vec![
        Attribute::ChangeRequest(ChangeRequest {
            change_ip: true,
            change_port: true,
        }),
        Attribute::ResponsePort(61000),
        Attribute::Padding(7),
        Attribute::ResponseOrigin(addr("192.0.2.1:3478")),
        Attribute::OtherAddress(addr("[2001:db8::2]:3479")),
    ];
    write(t, "rfc5780-attributes", &rfc5780.encode().unwrap());

    let mut error = Message::error_response(
        &request,
        StunErrorCode::new(StunErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute").unwrap(),
    );
    error
        .attributes
        .push(Attribute::UnknownAttributes(vec![0x0024, 0x0006, 0x0008]));
    write(t, "error-420", &error.encode().unwrap());

    let mut indication = Message::new(Class::Indication, Method::new(0xABC).unwrap(), modern);
    indication.attributes.push(Attribute::Raw {
        typ: 0xC057,
        value: vec![1, 2, 3],
    });
    write(t, "indication-raw", &indication.encode().unwrap());
}

fn frame_seeds() {
    let t = "frame_decode";
    let peer = PeerInfo {
        name: "bob".into(),
        key: [2; 32],
        public: addr("203.0.113.20:40000"),
        private: vec![addr("192.168.1.20:4000"), addr("[fd00::20]:4000")],
    };
    let frames = [
        (
            "register",
            RegisterRequest {
                name: "alice".into(),
                private: vec![addr("192.168.1.10:4000"), addr("[fd00::10]:4000")],
                nat: Some(Classic::PortRestrictedCone),
                nonce: [0x5a; 16],
            }
            .signed(1, &SigningKey::from_seed(&[1; 32])),
        ),
        (
            "registered",
            Frame::Registered {
                txn: 1,
                observed: addr("198.51.100.1:1000"),
                expires_secs: 90,
                nonce: [0xa5; 16],
            },
        ),
        (
            "challenge",
            Frame::Challenge {
                txn: 1,
                nonce: [0x3c; 16],
            },
        ),
        (
            "connect",
            Frame::Connect {
                txn: 2,
                target: "bob".into(),
            },
        ),
        (
            "introduce",
            Frame::Introduce {
                txn: 2,
                session: 0x5E55_10A0_CAFE_F00D,
                initiator: true,
                peer,
            },
        ),
        ("introduce-ack", Frame::IntroduceAck { session: u64::MAX }),
        ("peer-ready", Frame::PeerReady { session: 77 }),
        (
            "error",
            Frame::Error {
                txn: 3,
                code: ErrorCode::UnknownPeer,
                reason: "peer unknown: \"bob\" is not registered".into(),
            },
        ),
        (
            "probe",
            Frame::Probe {
                session: 1 << 40,
                seq: 300,
            },
        ),
        (
            "probe-ack",
            Frame::ProbeAck {
                session: 1 << 40,
                seq: 300,
                observed: addr("[2001:db8::20]:40000"),
            },
        ),
    ];
    for (name, frame) in frames {
        write(t, name, &frame.encode().unwrap());
    }
    let codes = [
        ErrorCode::NameTaken,
        ErrorCode::SelfConnect,
        ErrorCode::NotRegistered,
        ErrorCode::Busy,
        ErrorCode::BadRequest,
        ErrorCode::BadSignature,
    ];
    for (i, code) in codes.into_iter().enumerate() {
        let frame = Frame::Error {
            txn: i as u64,
            code,
            reason: String::new(),
        };
        write(t, &format!("error-code-{i}"), &frame.encode().unwrap());
    }
    write(t, "hi-request", HI_REQUEST);
    // What an old (version 1) client's registration starts like.
    let mut legacy = Frame::Connect {
        txn: 2,
        target: "bob".into(),
    }
    .encode()
    .unwrap();
    legacy[1] = LEGACY_WIRE_VERSION;
    legacy[2] = 0; // variant 0: Register
    write(t, "legacy-register", &legacy);
}

fn agent_seeds() {
    use agent_ops::Script;
    let t = "agent_inputs";
    let probe = Frame::Probe {
        session: agent_ops::SESSION,
        seq: 1,
    }
    .encode()
    .unwrap();
    let seeds = [
        // Every candidate; the first full round, then the host candidate answers.
        (
            "host-path",
            Script::new(0, 0x3f).drive().advance(2).ack_sent(5, 9),
        ),
        // The server relays the peer's ready signal: full probes at once, the host answers.
        ("ready", Script::new(0, 0x0f).ready().ack_sent(3, 1)),
        // Only public candidates; one answers, chosen at once.
        (
            "public-path",
            Script::new(0, 0x0c).drive().ack_sent(0, 2).drive(),
        ),
        // A public answer while host candidates are untried: the private grace runs out.
        (
            "grace-expires",
            Script::new(0, 0x07).drive().ack_sent(0, 2).drive().drive(),
        ),
        // A symmetric NAT: a probe from an unknown port, our probe back, its ack.
        (
            "peer-reflexive",
            Script::new(1, 0x04).probe(6, 1).ack_sent(0, 6).drive(),
        ),
        // Nobody answers: the deadline fails the session; later probes are still answered.
        (
            "deadline",
            Script::new(4, 0x3f)
                .drive()
                .drive()
                .drive()
                .advance(255)
                .timeout()
                .probe(2, 9),
        ),
        // Probes from many ports fill the candidate table.
        (
            "spray",
            (0..20u16)
                .fold(Script::new(2, 0x01), |s, p| {
                    s.spray(50000 + p, u32::from(p))
                })
                .drive(),
        ),
        // A probe delivered as raw bytes, and bytes that are not a frame.
        (
            "raw",
            Script::new(0, 0x03)
                .raw(6, &probe)
                .raw(7, b"<Hi!>")
                .timeout(),
        ),
    ];
    for (name, script) in seeds {
        write(t, name, &script.into_bytes());
    }
}

fn rendezvous_seeds() {
    use rendezvous_ops::Script;
    let t = "rendezvous_inputs";
    let carol = RegisterRequest {
        name: "carol".into(),
        private: vec![],
        nat: None,
        nonce: NO_NONCE,
    };
    let register = carol.encode(5, &SigningKey::from_seed(&[3; 32])).unwrap();
    let seeds = [
        // alice and bob register, alice connects to bob, bob acknowledges.
        (
            "introduce",
            Script::new(3, 5)
                .register(0, 1, 0, 0, &[3])
                .register(1, 1, 1, 1, &[2, 4])
                .connect(0, 2, 1)
                .intro_ack(0, false)
                .intro_ack(0, true),
        ),
        // Nobody acknowledges: the introduction is retransmitted until given up.
        (
            "intro-retransmit",
            Script::new(1, 31)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 1, 1, &[])
                .connect(0, 2, 1)
                .drive()
                .drive()
                .drive()
                .drive()
                .drive()
                .drive(),
        ),
        // A retransmitted Connect gets the same session.
        (
            "connect-dedup",
            Script::new(1, 10)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 1, 1, &[])
                .connect(0, 2, 1)
                .connect(0, 2, 1),
        ),
        // max_peers 1: the second name is refused, then accepted once the first expires.
        (
            "registry-full",
            Script::new(0, 0)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 1, 1, &[])
                .advance(20)
                .register(1, 2, 1, 1, &[]),
        ),
        // The same name from another key, a self-connect, an unknown peer, no registration.
        (
            "refusals",
            Script::new(3, 3)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 0, 1, &[])
                .connect(0, 2, 0)
                .connect(0, 3, 2)
                .connect(5, 4, 1),
        ),
        // alice registers; then her key registers "alice" from another address with a
        // forged signature (key byte 6: alice's key, another's signature), then unsigned
        // (9): a challenge, a refusal, a challenge; bob still reaches alice.
        (
            "forged-and-unsigned",
            Script::new(3, 3)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 1, 1, &[])
                .register(2, 7, 0, 6, &[])
                .register(2, 7, 0, 6, &[])
                .register(5, 8, 0, 9, &[])
                .connect(1, 2, 0),
        ),
        // Connect toward a name full of characters Debug escapes: the error's reason
        // (`peer unknown: "<name>" is not registered`) passes MAX_REASON_LEN.
        (
            "escaped-name",
            Script::new(3, 3).register(0, 1, 0, 0, &[]).connect_to(
                0,
                2,
                &[[6; 30].as_slice(), &[0, 0, 0]].concat(),
            ),
        ),
        // A registration delivered as raw bytes, then expiry.
        (
            "raw",
            Script::new(2, 1).raw(2, &register).raw(3, b"<Hi!>").drive(),
        ),
    ];
    for (name, script) in seeds {
        write(t, name, &script.into_bytes());
    }
}

fn tcp_seeds() {
    use tcp_ops::{kind, Script};
    let t = "tcp_inputs";
    // Header limits: 4 peers, 8 connections, 4 sessions; TTLs: registrations 16 s,
    // sessions 16 s.
    let (roomy, long) = (0x7f, 0xff);
    // Connections 0 and 1: alice's and bob's control connections (registered), alice asks
    // for bob (session 0).
    let registered = Script::new(roomy, long, 0)
        .open(false, 0)
        .open(false, 1)
        .register(0, 1, 0, 0, &[2])
        .register(1, 1, 1, 1, &[3, 4])
        .connect(0, 2, 1);
    // Then the assist sequence: alice's assist (connection 2, from her punching port), bob
    // is introduced; bob's assist (connection 3), bob ready: alice is introduced.
    let introduced = registered
        .clone()
        .open(true, 2)
        .assist(2, 0, &[2])
        .open(true, 3)
        .assist(3, 0, &[3, 5])
        .session_frame(1, 1, kind::READY, 0);
    // Punching failed: alice asks for the relay, bob is told, both join on new main
    // connections (4, 5): spliced, and the IO layer takes both streams.
    let spliced = introduced
        .clone()
        .session_frame(0, 0, kind::RELAY, 0)
        .open(false, 0)
        .open(false, 1)
        .session_frame(4, 3, kind::RELAY_JOIN, 0)
        .session_frame(5, 0, kind::RELAY_JOIN, 0)
        .reap();
    let mut split = Vec::new();
    for frame in [
        RegisterRequest {
            name: "carol".into(),
            private: vec![addr("192.168.1.30:4000")],
            nat: None,
            nonce: NO_NONCE,
        }
        .signed(9, &SigningKey::from_seed(&[3; 32])),
        Frame::TcpConnect {
            txn: 10,
            target: "alice".into(),
        },
    ] {
        split.extend(encode_framed(&frame).unwrap());
    }
    let seeds = [
        ("introduce", introduced.clone()),
        ("relay-splice", spliced),
        // A forged registration (key byte 6) after a challenge, then an old client's
        // (9: wire version 1) on a fresh connection: refused, then told to upgrade.
        (
            "forged-and-legacy",
            Script::new(roomy, long, 0)
                .open(false, 0)
                .open(false, 1)
                .register(0, 1, 0, 0, &[])
                .register(1, 2, 0, 6, &[])
                .open(false, 2)
                .register_once(2, 3, 1, 9, &[])
                .reap(),
        ),
        // Relay off: the request is refused, a join is closed.
        (
            "relay-off",
            Script::new(roomy, long, 1)
                .open(false, 0)
                .open(false, 1)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 1, 1, &[])
                .connect(0, 2, 1)
                .session_frame(0, 0, kind::RELAY, 0)
                .open(false, 0)
                .session_frame(2, 0, kind::RELAY_JOIN, 0),
        ),
        // One side joins, nobody else: the session expires and the join is closed.
        (
            "relay-join-expires",
            registered
                .clone()
                .open(false, 0)
                .session_frame(2, 0, kind::RELAY_JOIN, 0)
                .drive()
                .reap()
                .drive(),
        ),
        // Two frames in one read, fed a byte at a time, then the rest of a stream in one
        // read: carol registers and asks for alice.
        (
            "split-reads",
            split
                .iter()
                .fold(
                    Script::new(roomy, long, 0)
                        .open(false, 4)
                        .open(false, 0)
                        .register(1, 1, 0, 0, &[]),
                    |s, b| s.raw(0, &[*b]),
                )
                .raw(1, &split),
        ),
        // Out-of-sync streams: a zero length, a length over the bound, a body that is no
        // frame; each is closed as a bad stream.
        (
            "bad-streams",
            Script::new(roomy, long, 0)
                .open(false, 0)
                .open(true, 1)
                .open(false, 2)
                .raw(0, &[0, 0])
                .raw(1, &[0xff, 0xff, 1])
                .raw(2, &[0, 5, b'<', b'H', b'i', b'!', b'>'])
                .reap(),
        ),
        // Frames the registry does not take where they arrive: TcpConnect before Register,
        // Register on the assist port, a UDP frame, a server frame, an unknown session.
        (
            "protocol-breaks",
            Script::new(roomy, long, 0)
                .open(false, 0)
                .open(true, 1)
                .open(false, 2)
                .open(false, 3)
                .open(true, 4)
                .connect(0, 1, 1)
                .register(1, 1, 1, 1, &[])
                .session_frame(2, 0, kind::INTRO_ACK, 0x80)
                .session_frame(3, 0, kind::RELAY_READY, 0x81)
                .assist(4, 0x82, &[])
                .reap(),
        ),
        // A silent connection is closed after the first-frame timeout; registrations expire.
        (
            "silent-and-expiry",
            Script::new(0x04, 0x00, 0)
                .open(false, 0)
                .register(0, 1, 0, 0, &[])
                .open(false, 1)
                .advance(101)
                .timeout()
                .reap()
                .connect(0, 2, 1),
        ),
        // One peer and one connection: the second connection is refused, the second name
        // is Busy, then the first registration expires and the second name fits.
        (
            "tables-full",
            Script::new(0x04, 0x00, 0)
                .open(false, 0)
                .open(false, 1)
                .register(0, 1, 0, 0, &[])
                .open(false, 2)
                .register(1, 1, 1, 1, &[])
                .advance(20)
                .register(1, 2, 1, 1, &[]),
        ),
        // The same name from another key, a name change, a self-connect, an unknown peer.
        (
            "refusals",
            Script::new(roomy, long, 0)
                .open(false, 0)
                .open(false, 1)
                .open(false, 2)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 0, 1, &[])
                .connect(0, 2, 0)
                .connect(0, 3, 2)
                .register(0, 4, 2, 0, &[])
                .reap(),
        ),
        // TcpConnect toward a name full of characters Debug escapes (26 combining graves,
        // then 6 'é'): the error's reason passes MAX_REASON_LEN, cut inside an 'é'.
        (
            "escaped-name",
            Script::new(roomy, long, 0)
                .open(false, 0)
                .register(0, 1, 0, 0, &[])
                .connect_to(0, 2, &[[6; 26].as_slice(), &[5; 6]].concat()),
        ),
        // A control connection closes: its registration goes with it.
        (
            "control-closes",
            Script::new(roomy, long, 0)
                .open(false, 0)
                .open(false, 1)
                .register(0, 1, 0, 0, &[])
                .register(1, 1, 1, 1, &[])
                .close(1)
                .connect(0, 2, 1),
        ),
    ];
    for (name, script) in seeds {
        write(t, name, &script.into_bytes());
    }
}

fn main() {
    stun_seeds();
    frame_seeds();
    agent_seeds();
    rendezvous_seeds();
    tcp_seeds();
    println!("hand-made seeds written under fuzz/seeds/");
}
