//! What the client session reports: typed paths, routes, reasons, errors and events.
//!
//! Owns the vocabulary between the session and its driver (and the application above
//! it); no `"direct"`/`"relay"` strings travel in the API: [`PathKind`] and
//! [`Route`] do, and their `Display` gives the words for people and JSON.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::agent::CandidateKind;
use crate::nat::Classic;
use crate::wire::{ErrorCode, KeyBytes, Side};

/// A peer, named by its Ed25519 key (the only identity that is checked end to end).
pub type PeerKey = KeyBytes;

/// One application request to reach a peer ([`super::Session::connect`]); its
/// [`Event::ConnectDone`] carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectId(pub u64);

/// Whether connections may, must or must not use the server's relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Start on the relay at once, punch in parallel, move to direct when it works.
    #[default]
    Auto,
    /// Direct only: wait for punching, fail if it fails.
    Never,
    /// Relay only: no punching.
    Only,
}

impl std::str::FromStr for RelayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RelayMode::Auto),
            "never" => Ok(RelayMode::Never),
            "only" => Ok(RelayMode::Only),
            other => Err(format!(
                "relay mode must be auto, never or only, not {other:?}"
            )),
        }
    }
}

/// How a peer's traffic travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// A punched path straight to the peer.
    Direct,
    /// Through the rendezvous server's relay.
    Relay,
}

impl PathKind {
    /// `"direct"` or `"relay"`, for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What carries a connection: QUIC over UDP, or TLS over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// QUIC over UDP (punched, or through the UDP relay).
    #[default]
    Udp,
    /// TLS 1.3 over TCP (punched, or through the TCP relay).
    Tcp,
}

impl Transport {
    /// `"udp"` or `"tcp"`, for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The path a peer's traffic takes at some moment, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// Direct or relayed.
    pub kind: PathKind,
    /// For a direct path, which candidate won.
    pub candidate: Option<CandidateKind>,
    /// The peer's real address on a direct path; the server's on the relay.
    pub remote: SocketAddr,
    /// Round-trip time of the probe that proved a direct path (zero for the relay).
    pub rtt: Duration,
    /// What carries it.
    pub transport: Transport,
}

impl Path {
    /// The UDP relay through `server`.
    pub fn relay(server: SocketAddr) -> Path {
        Path {
            kind: PathKind::Relay,
            candidate: None,
            remote: server,
            rtt: Duration::ZERO,
            transport: Transport::Udp,
        }
    }

    /// A punched UDP path to `remote`.
    pub fn direct(remote: SocketAddr, candidate: CandidateKind, rtt: Duration) -> Path {
        Path {
            kind: PathKind::Direct,
            candidate: Some(candidate),
            remote,
            rtt,
            transport: Transport::Udp,
        }
    }

    /// The same path over `transport`.
    pub fn over(self, transport: Transport) -> Path {
        Path { transport, ..self }
    }

    /// The candidate's name (`"private"`, `"public"`, `"peer-reflexive"`), or `"relay"`.
    pub fn candidate_str(&self) -> &'static str {
        self.candidate.map_or("relay", CandidateKind::as_str)
    }
}

/// Where the driver sends the datagrams of a peer's connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Nowhere (no relay allowed, no direct path yet): drop them; QUIC retransmits.
    None,
    /// Straight to the peer's real address.
    Direct(SocketAddr),
    /// Wrapped in a relay header ([`crate::wire::encode_relay`]) to the server.
    Relay {
        /// The relaying server.
        server: SocketAddr,
        /// Our end of the session.
        side: Side,
        /// The session the server relays.
        session: u64,
    },
}

/// Why a path changed, or why there is no direct one; `Display` words it for people.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathReason {
    /// Punching found a direct path.
    DirectConfirmed {
        /// Which candidate answered.
        candidate: CandidateKind,
        /// Its address.
        addr: SocketAddr,
        /// The probe's round trip.
        rtt: Duration,
    },
    /// The direct path stopped answering its checks.
    DirectLost {
        /// The peer's address on it.
        addr: SocketAddr,
        /// Silent this long.
        silent_for: Duration,
    },
    /// Our local address changed: our NAT mapping with it, so the direct path is gone.
    LocalAddressChanged,
    /// The peer asked for a new introduction while our direct path seemed fine: it lost
    /// the path on its side.
    PeerRepunching,
    /// We moved to a fresh local port (punching from the old one kept failing after a
    /// lost path), so every mapping of the old port is gone.
    Rebound,
    /// UDP gave no direct path and a punched TCP connection worked: the connection
    /// moved onto it.
    MovedToTcp,
    /// UDP gave no direct path, and TCP punching found none either.
    NoTcpPath(String),
    /// Punching ended without a direct path.
    NoDirectPath {
        /// The punching deadline.
        deadline: Duration,
        /// The candidates tried.
        tried: Vec<SocketAddr>,
        /// When punching is tried again, if it is.
        retry_in: Option<Duration>,
    },
    /// The two NAT types rule a direct path out.
    Impossible(String),
    /// The relay stopped carrying the session.
    RelayClosed(String),
    /// The server introduced the pair again (a new session): the relay carries it while
    /// punching is tried again.
    Reintroduced,
}

fn list(addrs: &[SocketAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    v.join(", ")
}

impl fmt::Display for PathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathReason::DirectConfirmed {
                candidate,
                addr,
                rtt,
            } => write!(
                f,
                "direct path confirmed: {} address {addr} answered in {:.1} ms",
                candidate.as_str(),
                rtt.as_secs_f64() * 1000.0
            ),
            PathReason::DirectLost { addr, silent_for } => write!(
                f,
                "direct path lost (no answer from {addr} for {:.1} s)",
                silent_for.as_secs_f64()
            ),
            PathReason::LocalAddressChanged => {
                f.write_str("our local address changed; punching again")
            }
            PathReason::PeerRepunching => {
                f.write_str("the peer lost the direct path; punching again")
            }
            PathReason::Rebound => f.write_str("moved to a fresh local port; punching again"),
            PathReason::MovedToTcp => {
                f.write_str("moved to a punched TCP connection: UDP gave no direct path")
            }
            PathReason::NoTcpPath(why) => write!(f, "no direct TCP path either ({why})"),
            PathReason::NoDirectPath {
                deadline,
                tried,
                retry_in,
            } => {
                write!(
                    f,
                    "no direct path within {deadline:?} (tried {})",
                    list(tried)
                )?;
                if let Some(r) = retry_in {
                    write!(f, "; punching again in {r:?}")?;
                }
                Ok(())
            }
            PathReason::Impossible(why) => write!(f, "no direct path possible: {why}"),
            PathReason::RelayClosed(why) => write!(f, "relay closed: {why}"),
            PathReason::Reintroduced => {
                f.write_str("introduced again: on the relay while punching again")
            }
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The peer's name is empty or too long (checked before anything is sent).
    #[error("invalid peer name {0:?}: 1 to 64 bytes of UTF-8")]
    InvalidName(String),
    /// The server refused the introduction.
    #[error("{}: {reason}", code.describe())]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        reason: String,
    },
    /// The server did not answer.
    #[error("server unreachable: no answer from {server} within {after:?}")]
    ServerUnreachable {
        /// The server.
        server: SocketAddr,
        /// How long we tried.
        after: Duration,
    },
    /// Punching found no direct path, and the relay could not be used.
    #[error("no direct path within {deadline:?} (tried {}){}", list(tried), relay.as_deref().map(|r| format!("; {r}")).unwrap_or_default())]
    NoPath {
        /// The punching deadline.
        deadline: Duration,
        /// The candidates tried.
        tried: Vec<SocketAddr>,
        /// Why the relay did not help, if it was allowed.
        relay: Option<String>,
    },
    /// The two NAT types rule a direct path out, and the relay may not be used.
    #[error("no direct path possible: {0}")]
    Impossible(String),
    /// TCP punching found no direct path, and the TCP relay could not be used.
    #[error("no TCP path within {deadline:?}: {detail}")]
    NoTcpPath {
        /// The punching deadline.
        deadline: Duration,
        /// What was tried and why it failed.
        detail: String,
    },
    /// Neither transport reached the peer.
    #[error("{udp}; over TCP: {tcp}")]
    NoPathAnyTransport {
        /// Why UDP failed.
        udp: Box<ConnectError>,
        /// Why TCP failed.
        tcp: Box<ConnectError>,
    },
    /// A path worked but the QUIC (or TLS) handshake failed: wrong key, peer gone.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// Too many peers at once.
    #[error("too many peers at once")]
    Busy,
    /// The server introduced the name with another key than the one we know for it
    /// ([`super::trust`]): refused, since the server or whoever holds the name now may be
    /// posing as that peer.
    #[error(
        "{name} was introduced with another key than the one we know for it (known {}, \
         offered {}): refused, since the server or whoever holds the name now may be posing \
         as {name}",
        hex(known),
        hex(offered)
    )]
    KeyChanged {
        /// The peer's name.
        name: String,
        /// The key we know for it.
        known: KeyBytes,
        /// The key it came with.
        offered: KeyBytes,
    },
    /// The client is closed.
    #[error("client closed")]
    Closed,
}

/// What the session tells its driver. Drain with [`super::Session::poll_event`] after
/// every input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server accepted our registration: the first time, and whenever the public
    /// address it observes changes (a NAT gave us a new mapping).
    Registered {
        /// Our public address as the server sees it.
        public: SocketAddr,
    },
    /// The server refused our registration (the name is taken by another key).
    RegistrationRefused {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        reason: String,
    },
    /// The server stopped answering (before the first registration: it never answered).
    ServerLost {
        /// Silent for this long.
        silent_for: Duration,
    },
    /// The server answers again after having been silent.
    ServerBack {
        /// Our public address as it sees it.
        public: SocketAddr,
    },
    /// A name met for the first time, or with a new key the user accepted: `key` is now
    /// the one we know for it (store it, if `recorded`: the table was full otherwise).
    PeerKeyLearned {
        /// The peer's name.
        name: String,
        /// Its key.
        key: KeyBytes,
        /// The key it replaces (an accepted change).
        replaced: Option<KeyBytes>,
        /// The key went into the table.
        recorded: bool,
    },
    /// An introduction of `name` with another key than the one we know: refused.
    PeerKeyRefused {
        /// The peer's name.
        name: String,
        /// The key we know for it.
        known: KeyBytes,
        /// The key it came with.
        offered: KeyBytes,
    },
    /// The server told us a peer's NAT type (from the peer's own discovery).
    PeerNat {
        /// Its key.
        peer: PeerKey,
        /// Its NAT type.
        classic: Classic,
    },
    /// A peer we were introduced to: give it a stable (virtual) address and accept its
    /// authenticated connections from now on.
    PeerAdded {
        /// Its key.
        peer: PeerKey,
        /// Its registered name.
        name: String,
    },
    /// Relayed datagrams of these sessions (the current one first) are `peer`'s.
    RelaySessions {
        /// The peer.
        peer: PeerKey,
        /// Its current session, and the one before it (late datagrams still belong).
        sessions: [Option<u64>; 2],
    },
    /// Datagrams arriving straight from `addr` are `peer`'s.
    Alias {
        /// The peer.
        peer: PeerKey,
        /// A real address of it.
        addr: SocketAddr,
    },
    /// Send `peer`'s datagrams this way from now on. `path` describes it for the
    /// application (`None` while there is none).
    Route {
        /// The peer.
        peer: PeerKey,
        /// Where its datagrams go.
        route: Route,
        /// The same for people.
        path: Option<Path>,
    },
    /// Open the (QUIC) connection to `peer` now: a path to carry it exists.
    OpenConnection {
        /// The peer.
        peer: PeerKey,
    },
    /// The path carrying an established connection changed.
    PathChanged {
        /// The peer.
        peer: PeerKey,
        /// The path now (`None`: none for the moment; the connection stays open and
        /// recovers when one comes back).
        path: Option<Path>,
        /// Why.
        reason: PathReason,
    },
    /// Punching toward `peer` ended without a direct path (it failed, or the NAT types
    /// rule one out). The relay carries on if it may; the application may try another
    /// transport.
    DirectFailed {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: PathReason,
    },
    /// An application request ended: the peer's connection is up, or it failed.
    ConnectDone {
        /// The request.
        id: ConnectId,
        /// The peer reached, or why not.
        result: Result<PeerKey, ConnectError>,
    },
    /// Move to a fresh local port and report it with [`super::Session::rebound`]:
    /// punching again after a lost direct path failed, which on real NATs means their
    /// connection tracking still holds the old port's paths in a state that blocks them
    /// (a peer's packet took our old public port after a mapping was lost). A new port has
    /// no such state anywhere.
    Rebind,
    /// Try TCP for `name` (only with [`super::Config::tcp_fallback`]): with `request`, an
    /// application request that UDP could not serve (answer it from TCP, or with both
    /// errors); without, an established connection we opened whose UDP punching found no
    /// direct path (move it onto a punched TCP connection if one works; the relay, if it
    /// carries the connection, stays otherwise).
    TryTcp {
        /// The peer's name.
        name: String,
        /// The request UDP failed, and why.
        request: Option<(ConnectId, ConnectError)>,
    },
    /// A peer's connection reached us, and nobody of ours asked for it.
    Incoming {
        /// The peer.
        peer: PeerKey,
    },
    /// A peer that wanted to reach us could not.
    IncomingFailed {
        /// Its name.
        name: String,
        /// Why.
        error: ConnectError,
    },
    /// Forget `peer`: drop its address and routes (after a moment, with `linger`, so a
    /// closing connection's last datagrams still leave).
    PeerRemoved {
        /// The peer.
        peer: PeerKey,
        /// Keep its route a little longer.
        linger: bool,
    },
}

/// The session's answer to a connection the driver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it: it is the peer's connection.
    Keep,
    /// Close it as a duplicate: the peer's other connection carries the pair.
    Duplicate,
    /// Close it: we were never introduced to that key.
    NotIntroduced,
}

/// A key as 64 lowercase hexadecimal characters (the text form the `punch` crate uses too).
pub fn hex(key: &KeyBytes) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
