//! NAT behaviour discovery, client side and sans-IO: RFC 5780 §4 tests, RFC 4787 behaviours,
//! RFC 3489 §10.1 classic names.
//!
//! # What this module owns
//! - [`Discovery`]: the state machine that runs the tests from two local sockets against one
//!   server, retransmits, and ends with a [`NatReport`]. Same shape as the punching agent:
//!   `handle_datagram` / `handle_timeout` in, `poll_transmit` / `poll_timeout` out, `now`
//!   passed in, transaction ids from a seeded generator.
//! - The verdicts ([`Classic`], [`Behaviour`], [`PortAllocation`]) and the raw
//!   [`Observation`]s they come from, serializable as the `punch nat-type --json` object.
//!
//! # What it does not own
//! Sockets (the IO layer binds the two sockets on fresh ports and passes their local
//! addresses, with the real source IP for wildcard binds), resolving the server name,
//! printing, caching, and the server side (`stun::responder`). Binding lifetime discovery
//! (RFC 5780 §4.6, minutes of idle waiting) is not run.
//!
//! # The tests, and why in this order
//! RFC 5780 §4.4 warns that filtering tests "are sensitive to prior state on the NAT", and
//! §3.2 makes it a precondition that "no binding be established to the alternate address".
//! Mapping tests II and III must send to the alternate address, which opens exactly that
//! state: on the socket that sent them, and on NATs whose address-restricted filter is kept
//! per host rather than per mapping (the lab's restricted cone fills one `@contacted` set
//! for the whole host) even for other sockets. So:
//!
//! 1. **Test I on both sockets**, in parallel, to the primary address only.
//!    [`LocalSocket::Mapping`] gets mapping test I, [`LocalSocket::Filtering`] filtering test
//!    I. Both learn the public address and the server's alternate address (OTHER-ADDRESS,
//!    or CHANGED-ADDRESS from RFC 3489 servers). No answer on either socket: `blocked`.
//! 2. **Filtering tests II and III** from the Filtering socket, in parallel: both go to the
//!    primary address, with CHANGE-REQUEST change-IP+port and change-port, and only the
//!    answers come from elsewhere; an inbound packet does not open a NAT, so neither test
//!    can spoil the other. II answered (from the changed address): endpoint-independent;
//!    else III answered: address-dependent; else address-and-port-dependent. In the same
//!    phase, **hairpinning** (§3.4): each socket sends a Binding request to the other's
//!    public address; it arriving on the other socket means the NAT hairpins. Probes go
//!    both ways so that a filter on the receiving mapping cannot hide a working hairpin
//!    (each probe opens its sender toward the other; retransmissions then pass). They
//!    contact only our own public address, never the alternate address.
//! 3. **Mapping test II**, then **III** if needed (§4.3), from the Mapping socket: the
//!    first packets of the whole run toward the alternate IP, sent only after every
//!    filtering verdict is in. Skipped when test I showed no NAT (the mapping is then
//!    endpoint-independent by definition).
//!
//! Every test is one STUN transaction retransmitted every [`DEFAULT_RTO`], at first up to
//! [`DEFAULT_MAX_TRANSMITS`] times; silence is a verdict for filtering II/III and hairpin,
//! so such a test waits its whole budget (1.4 s). Budgets double where the run has shown
//! that silence may be loss (see [`Discovery`]). A run on a clean path takes about 1.5 s
//! (one silent phase, three quick ones); however much is lost, under 12 s.
//!
//! # Verdicts, and what stays unknown
//! - No NAT when test I's mapped address equals the socket's local address; then
//!   endpoint-independent filtering is `open`, any other `firewall`. Behind a NAT an
//!   endpoint-independent mapping gives the three cones by filtering; any other mapping is
//!   `symmetric`.
//! - A server without a usable alternate address (no OTHER-ADDRESS / CHANGED-ADDRESS, or
//!   one that repeats the primary IP or port): no CHANGE-REQUEST is sent, mapping and
//!   filtering stay `None` and so does the classic name; the public address, NAT or no NAT,
//!   hairpinning and port allocation are still reported. We never guess.
//! - An answer to a change request that arrives from the unchanged address (a server that
//!   ignores CHANGE-REQUEST) or an error answer makes filtering unknown, with a note.
//! - Port allocation: `preserved` when the public port equals the local port on both
//!   sockets (and in every other mapping seen); otherwise, with at least two distinct public
//!   ports among tests I (both sockets) and mapping tests II/III, `sequential` when the
//!   sorted ports are each at most [`SEQUENTIAL_MAX_GAP`] apart, else `random`; `None`
//!   with fewer samples (an endpoint-independent NAT that answered only one socket).
//!
//! # Servers
//! Our own `stun::responder`, coturn (OTHER-ADDRESS, RESPONSE-ORIGIN) and RFC 3489 servers
//! such as stund (CHANGED-ADDRESS, SOURCE-ADDRESS, MAPPED-ADDRESS) all work: the client
//! reads whichever attribute is present. [`Dialect::Classic`] sends cookie-less RFC 3489
//! requests for servers that want them.

mod classify;
mod discovery;
mod report;

pub use classify::SEQUENTIAL_MAX_GAP;
pub use discovery::{
    Dialect, Discovery, DiscoveryConfig, Transmit, DEFAULT_MAX_TRANSMITS, DEFAULT_PACING,
    DEFAULT_RTO,
};
pub use report::{
    Behaviour, Classic, LocalSocket, NatReport, Observation, Outcome, PortAllocation, Test,
};
