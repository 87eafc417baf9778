//! What discovery reports: the verdicts (RFC 4787 behaviours, RFC 3489 classic names) and the
//! raw observations they were derived from, serializable for `punch nat-type --json`.
//!
//! Owns the vocabulary only; deriving verdicts from observations is `classify.rs`, running the
//! tests is `discovery.rs`. Every enum serializes lowercase with hyphens, exactly as the issue
//! writes the values, and deserializes back (a cached report can be read again).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The classic RFC 3489 §5 / §10.1 name of the NAT (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classic {
    /// No NAT and no filter: the public address is the local one, anyone can send to it.
    Open,
    /// No NAT, but a stateful filter drops unsolicited packets ("symmetric UDP firewall").
    Firewall,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Address-dependent or address-and-port-dependent mapping: a new public port per
    /// destination.
    Symmetric,
    /// No UDP answer from the server at all.
    Blocked,
}

impl Classic {
    /// Why no direct path can exist between NATs of types `self` and `other`, or `None`
    /// when one may (RFC 4787 §4: a NAT that picks a new port per destination can only be
    /// reached by a peer that accepts packets from ports it never sent to). Used to skip
    /// punching that cannot work instead of waiting out its deadline.
    pub fn direct_impossible(self, other: Classic) -> Option<&'static str> {
        use Classic::*;
        let strict = |c: Classic| matches!(c, PortRestrictedCone | Firewall | Symmetric);
        match (self, other) {
            (Blocked, _) | (_, Blocked) => Some("UDP is blocked on one side"),
            (Symmetric, Symmetric) => Some("both NATs randomise ports"),
            (Symmetric, o) | (o, Symmetric) if strict(o) => Some(
                "one NAT randomises ports and the other accepts only the exact ports it sent to",
            ),
            _ => None,
        }
    }

    /// The name as serialized: `open`, `firewall`, `full-cone`, `restricted-cone`,
    /// `port-restricted-cone`, `symmetric`, `blocked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Classic::Open => "open",
            Classic::Firewall => "firewall",
            Classic::FullCone => "full-cone",
            Classic::RestrictedCone => "restricted-cone",
            Classic::PortRestrictedCone => "port-restricted-cone",
            Classic::Symmetric => "symmetric",
            Classic::Blocked => "blocked",
        }
    }
}

/// A mapping or filtering behaviour of RFC 4787 §4.1 / §5, as measured by RFC 5780 §4.3/§4.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// The same for every remote endpoint.
    EndpointIndependent,
    /// Depends on the remote IP address only.
    AddressDependent,
    /// Depends on the remote IP address and port.
    AddressAndPortDependent,
}

impl Behaviour {
    /// The name as serialized: `endpoint-independent`, `address-dependent`,
    /// `address-and-port-dependent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// How the NAT chooses public ports (RFC 4787 §4.2.1 port preservation; sequential or
/// random assignment). See [`crate::nat`] for the exact rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortAllocation {
    /// The public port equals the local port on every socket.
    Preserved,
    /// New public ports follow each other closely (a predictable NAT).
    Sequential,
    /// Anything else.
    Random,
}

impl PortAllocation {
    /// The name as serialized: `preserved`, `sequential`, `random`.
    pub fn as_str(self) -> &'static str {
        match self {
            PortAllocation::Preserved => "preserved",
            PortAllocation::Sequential => "sequential",
            PortAllocation::Random => "random",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Classic, Behaviour, PortAllocation, Test);

/// The two local sockets discovery uses. The IO layer binds both (fresh, unused ports) and
/// tells discovery their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalSocket {
    /// Runs the mapping tests (RFC 5780 §4.3); may later talk to the alternate address.
    Mapping,
    /// Runs the filtering tests (RFC 5780 §4.4); never sends to the alternate address.
    Filtering,
}

impl LocalSocket {
    /// The other socket.
    pub fn other(self) -> LocalSocket {
        match self {
            LocalSocket::Mapping => LocalSocket::Filtering,
            LocalSocket::Filtering => LocalSocket::Mapping,
        }
    }
}

/// Which test an [`Observation`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Test {
    /// RFC 5780 §4.3 test I: Mapping socket to the primary address.
    #[serde(rename = "mapping-1")]
    MappingI,
    /// RFC 5780 §4.3 test II: Mapping socket to the alternate IP, primary port.
    #[serde(rename = "mapping-2")]
    MappingII,
    /// RFC 5780 §4.3 test III: Mapping socket to the alternate IP and port.
    #[serde(rename = "mapping-3")]
    MappingIII,
    /// RFC 5780 §4.4 test I: Filtering socket to the primary address.
    #[serde(rename = "filtering-1")]
    FilteringI,
    /// RFC 5780 §4.4 test II: Filtering socket to the primary address, CHANGE-REQUEST
    /// change-IP and change-port.
    #[serde(rename = "filtering-2")]
    FilteringII,
    /// RFC 5780 §4.4 test III: Filtering socket to the primary address, CHANGE-REQUEST
    /// change-port.
    #[serde(rename = "filtering-3")]
    FilteringIII,
    /// RFC 5780 §3.4 hairpinning: a Binding request from one local socket to the other
    /// socket's public address; "answered" means it arrived there.
    #[serde(rename = "hairpin")]
    Hairpin,
}

impl Test {
    /// The name as serialized: `mapping-1` ... `filtering-3`, `hairpin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Test::MappingI => "mapping-1",
            Test::MappingII => "mapping-2",
            Test::MappingIII => "mapping-3",
            Test::FilteringI => "filtering-1",
            Test::FilteringII => "filtering-2",
            Test::FilteringIII => "filtering-3",
            Test::Hairpin => "hairpin",
        }
    }
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A success response arrived (for [`Test::Hairpin`]: the probe arrived).
    Answered,
    /// Nothing arrived after every retransmission.
    NoAnswer,
    /// An error response arrived ([`Observation::error_code`]).
    Error,
    /// Stopped early because another test already decided the question.
    Cancelled,
}

/// One test as it ran: the raw material of every verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Which test.
    pub test: Test,
    /// The local socket it was sent from.
    pub socket: LocalSocket,
    /// That socket's local address, as the IO layer reported it.
    pub local: SocketAddr,
    /// Where the requests went.
    pub dest: SocketAddr,
    /// CHANGE-REQUEST change-IP flag of the request.
    pub change_ip: bool,
    /// CHANGE-REQUEST change-port flag of the request.
    pub change_port: bool,
    /// How many times the request was sent.
    pub transmits: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS) of the answer: the public address the server saw.
    pub mapped: Option<SocketAddr>,
    /// The source address the answer (or the hairpinned probe) arrived from.
    pub response_from: Option<SocketAddr>,
    /// RESPONSE-ORIGIN (or the classic SOURCE-ADDRESS): where the server says it answered from.
    pub response_origin: Option<SocketAddr>,
    /// OTHER-ADDRESS (or the classic CHANGED-ADDRESS) of the answer.
    pub other_address: Option<SocketAddr>,
    /// ERROR-CODE of an error answer.
    pub error_code: Option<u16>,
}

/// The result of a discovery run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatReport {
    /// The classic name; `None` when the tests could not decide it.
    pub classic: Option<Classic>,
    /// Mapping behaviour (RFC 5780 §4.3); endpoint-independent without NAT; `None` if unknown.
    pub mapping: Option<Behaviour>,
    /// Filtering behaviour (RFC 5780 §4.4); `None` if unknown.
    pub filtering: Option<Behaviour>,
    /// The public address of the Mapping socket (of the Filtering socket if only it was
    /// answered).
    pub public: Option<SocketAddr>,
    /// Whether a NAT translates our addresses (the mapped address differs from the local one);
    /// `None` without any answer.
    pub nat: Option<bool>,
    /// Whether a packet to our own public address comes back in (RFC 5780 §3.4).
    pub hairpin: Option<bool>,
    /// How public ports are chosen; `None` when it cannot tell.
    pub port_allocation: Option<PortAllocation>,
    /// The server's primary address, as configured.
    pub server: SocketAddr,
    /// The server's alternate address (OTHER-ADDRESS or CHANGED-ADDRESS), if it has a usable one.
    pub other_address: Option<SocketAddr>,
    /// Every test that ran, in the order it started.
    pub tests: Vec<Observation>,
    /// Caveats met on the way (server without alternate address, ALG, anomalies).
    pub notes: Vec<String>,
    /// One line on what this means for direct connections.
    pub explanation: String,
    /// Time from the start of discovery to the verdict, in milliseconds.
    pub elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    use serde::de::value::{Error, StrDeserializer};
    use serde::de::IntoDeserializer;

    use super::*;

    fn parse<'a, T: Deserialize<'a>>(s: &'a str) -> T {
        let de: StrDeserializer<'a, Error> = s.into_deserializer();
        T::deserialize(de).unwrap()
    }

    #[test]
    fn serde_names_match_as_str() {
        for c in [
            Classic::Open,
            Classic::Firewall,
            Classic::FullCone,
            Classic::RestrictedCone,
            Classic::PortRestrictedCone,
            Classic::Symmetric,
            Classic::Blocked,
        ] {
            assert_eq!(parse::<Classic>(c.as_str()), c);
        }
        assert_eq!(
            parse::<Classic>("port-restricted-cone"),
            Classic::PortRestrictedCone
        );
        for b in [
            Behaviour::EndpointIndependent,
            Behaviour::AddressDependent,
            Behaviour::AddressAndPortDependent,
        ] {
            assert_eq!(parse::<Behaviour>(b.as_str()), b);
        }
        assert_eq!(
            parse::<Behaviour>("address-and-port-dependent"),
            Behaviour::AddressAndPortDependent
        );
        for p in [
            PortAllocation::Preserved,
            PortAllocation::Sequential,
            PortAllocation::Random,
        ] {
            assert_eq!(parse::<PortAllocation>(p.as_str()), p);
        }
        for t in [
            Test::MappingI,
            Test::MappingII,
            Test::MappingIII,
            Test::FilteringI,
            Test::FilteringII,
            Test::FilteringIII,
            Test::Hairpin,
        ] {
            assert_eq!(parse::<Test>(t.as_str()), t);
        }
        assert_eq!(parse::<Outcome>("no-answer"), Outcome::NoAnswer);
        assert_eq!(Classic::FullCone.to_string(), "full-cone");
    }
}
