//! From observations to verdicts: pure functions, no state and no time.
//!
//! RFC 5780 §4.3 (mapping), §4.4 (filtering), §3.4 (hairpinning), the RFC 3489 §10.1 names,
//! port allocation, and the one-line explanation. `discovery.rs` decides which tests to run
//! and calls these on what it saw; the same functions decide mid-run whether test III is
//! needed, so the run and the report cannot disagree.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::report::{
    Behaviour, Classic, LocalSocket, NatReport, Observation, Outcome, PortAllocation, Test,
};
use crate::stun::responder::canonical;

/// Largest gap between neighbouring public ports (sorted) for which allocation counts as
/// sequential. Between two of our own allocations the NAT may hand out a few ports to our
/// unobserved hairpin probes (two) and to other hosts behind it; ten leaves room for that
/// while two random ports land this close by chance only 2·10 / 64 512 ≈ 0.03 % of the time.
pub const SEQUENTIAL_MAX_GAP: u16 = 10;

/// Everything a report is built from.
pub(crate) struct Inputs<'a> {
    pub server: SocketAddr,
    pub other: Option<SocketAddr>,
    pub observations: &'a [Observation],
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
}

/// The observation of `test`, if it ran (the first, for the hairpin pair).
pub(crate) fn find(obs: &[Observation], test: Test) -> Option<&Observation> {
    obs.iter().find(|o| o.test == test)
}

/// The mapped address of `test`, if it was answered with one.
pub(crate) fn mapped(obs: &[Observation], test: Test) -> Option<SocketAddr> {
    find(obs, test)
        .filter(|o| o.outcome == Outcome::Answered)
        .and_then(|o| o.mapped)
}

/// Whether test I of either socket was answered (with success or error): the server is
/// reachable over UDP.
pub(crate) fn reachable(obs: &[Observation]) -> bool {
    [Test::MappingI, Test::FilteringI].iter().any(|&t| {
        find(obs, t).is_some_and(|o| matches!(o.outcome, Outcome::Answered | Outcome::Error))
    })
}

/// RFC 5780 §4.3: "not NATed" when the mapped address equals the local address of the
/// socket. Uses the Mapping socket's test I, else the Filtering socket's. With a wildcard
/// local IP (the IO layer could not tell its address) only a port change proves a NAT.
pub(crate) fn nat_present(obs: &[Observation]) -> Option<bool> {
    [Test::MappingI, Test::FilteringI].iter().find_map(|&t| {
        let o = find(obs, t)?;
        let m = canonical(mapped(obs, t)?);
        let local = canonical(o.local);
        if local.ip().is_unspecified() {
            (m.port() != local.port()).then_some(true)
        } else {
            Some(m != local)
        }
    })
}

/// RFC 5780 §4.3. Without NAT the effective mapping is endpoint-independent. Otherwise test
/// II equal to test I means endpoint-independent; else test III equal to test II means
/// address-dependent, different means address-and-port-dependent. `None` while a needed
/// answer is missing.
pub(crate) fn mapping(obs: &[Observation], nat: Option<bool>) -> Option<Behaviour> {
    if nat == Some(false) {
        return Some(Behaviour::EndpointIndependent);
    }
    let one = mapped(obs, Test::MappingI)?;
    let two = mapped(obs, Test::MappingII)?;
    if one == two {
        return Some(Behaviour::EndpointIndependent);
    }
    let three = mapped(obs, Test::MappingIII)?;
    Some(if three == two {
        Behaviour::AddressDependent
    } else {
        Behaviour::AddressAndPortDependent
    })
}

/// Whether an answer came from where the CHANGE-REQUEST flags asked: another IP for
/// change-IP, another port for change-port. A server that ignores the flags must not make
/// a filtering NAT look open.
pub(crate) fn from_changed(o: &Observation) -> bool {
    let Some(from) = o.response_from.map(canonical) else {
        return false;
    };
    let dest = canonical(o.dest);
    (!o.change_ip || from.ip() != dest.ip()) && (!o.change_port || from.port() != dest.port())
}

/// RFC 5780 §4.4: test II answered (from the alternate IP and port) means
/// endpoint-independent; else test III answered (from the alternate port) means
/// address-dependent; neither means address-and-port-dependent. Needs test I answered, and
/// `None` for anything else (errors, answers from the wrong source, tests that did not run).
pub(crate) fn filtering(obs: &[Observation]) -> Option<Behaviour> {
    find(obs, Test::FilteringI).filter(|o| o.outcome == Outcome::Answered)?;
    let two = find(obs, Test::FilteringII)?;
    match two.outcome {
        Outcome::Answered if from_changed(two) => return Some(Behaviour::EndpointIndependent),
        Outcome::NoAnswer => {}
        _ => return None,
    }
    let three = find(obs, Test::FilteringIII)?;
    match three.outcome {
        Outcome::Answered if from_changed(three) => Some(Behaviour::AddressDependent),
        Outcome::NoAnswer => Some(Behaviour::AddressAndPortDependent),
        _ => None,
    }
}

/// RFC 5780 §3.4: true if a probe to our own public address arrived on the other socket,
/// false if every probe went unanswered, `None` if the test did not run.
pub(crate) fn hairpin(obs: &[Observation]) -> Option<bool> {
    let probes: Vec<&Observation> = obs.iter().filter(|o| o.test == Test::Hairpin).collect();
    if probes.iter().any(|o| o.outcome == Outcome::Answered) {
        Some(true)
    } else if !probes.is_empty() && probes.iter().all(|o| o.outcome == Outcome::NoAnswer) {
        Some(false)
    } else {
        None
    }
}

/// Port allocation from every mapping we saw (tests I of both sockets, mapping tests II and
/// III; one sample per distinct (socket, public address)):
/// - `preserved`: both sockets' test I were answered and every sample's public port equals
///   its socket's local port (also the case without NAT);
/// - otherwise, with at least two distinct public ports: `sequential` if, sorted, each is at
///   most [`SEQUENTIAL_MAX_GAP`] above the previous (order-insensitive, so a lost first
///   packet that makes the NAT allocate in another order does not matter), else `random`;
/// - `None` with fewer samples: one port says nothing about the next.
pub(crate) fn port_allocation(obs: &[Observation]) -> Option<PortAllocation> {
    let mut samples: Vec<(LocalSocket, SocketAddr, u16)> = Vec::new();
    for o in obs.iter().filter(|o| {
        matches!(
            o.test,
            Test::MappingI | Test::MappingII | Test::MappingIII | Test::FilteringI
        )
    }) {
        let Some(m) = mapped(std::slice::from_ref(o), o.test) else {
            continue;
        };
        if !samples.iter().any(|&(s, a, _)| s == o.socket && a == m) {
            samples.push((o.socket, m, o.local.port()));
        }
    }
    let both = mapped(obs, Test::MappingI).is_some() && mapped(obs, Test::FilteringI).is_some();
    if both && samples.iter().all(|&(_, m, local)| m.port() == local) {
        return Some(PortAllocation::Preserved);
    }
    let ports: BTreeSet<u16> = samples.iter().map(|&(_, m, _)| m.port()).collect();
    if ports.len() < 2 {
        return None;
    }
    let ports: Vec<u16> = ports.into_iter().collect();
    let sequential = ports.windows(2).all(|w| w[1] - w[0] <= SEQUENTIAL_MAX_GAP);
    Some(if sequential {
        PortAllocation::Sequential
    } else {
        PortAllocation::Random
    })
}

/// The RFC 3489 name from the RFC 5780 behaviours: no NAT + endpoint-independent filtering
/// is open, no NAT + any other filtering is a firewall; endpoint-independent mapping gives
/// the three cones by filtering; any other mapping is symmetric (whatever the filtering).
pub(crate) fn classic(
    nat: Option<bool>,
    mapping: Option<Behaviour>,
    filtering: Option<Behaviour>,
) -> Option<Classic> {
    use Behaviour::*;
    match (nat?, mapping, filtering) {
        (false, _, Some(EndpointIndependent)) => Some(Classic::Open),
        (false, _, Some(_)) => Some(Classic::Firewall),
        (true, Some(AddressDependent | AddressAndPortDependent), _) => Some(Classic::Symmetric),
        (true, Some(EndpointIndependent), Some(EndpointIndependent)) => Some(Classic::FullCone),
        (true, Some(EndpointIndependent), Some(AddressDependent)) => Some(Classic::RestrictedCone),
        (true, Some(EndpointIndependent), Some(AddressAndPortDependent)) => {
            Some(Classic::PortRestrictedCone)
        }
        _ => None,
    }
}

/// One line on what the verdict means for direct connections.
pub(crate) fn explanation(r: &NatReport) -> String {
    let s = match r.classic {
        Some(Classic::Blocked) => {
            return format!(
                "no UDP answer from {}: UDP is blocked here (or the server is down), so direct \
                 connections are impossible; only a relay reached another way can help",
                r.server
            )
        }
        Some(Classic::Open) => "no NAT and no filtering: any peer can reach you directly",
        Some(Classic::Firewall) if r.filtering == Some(Behaviour::AddressDependent) => {
            "no NAT, but a firewall admits only addresses you have sent to: hole punching \
             works with every peer"
        }
        Some(Classic::Firewall) => {
            "no NAT, but a firewall admits only addresses and ports you have sent to: hole \
             punching works with every peer except those behind symmetric NATs, which need \
             the relay"
        }
        Some(Classic::FullCone) => {
            "one public port for all destinations and no filtering: any peer can reach you \
             directly once you have sent anything"
        }
        Some(Classic::RestrictedCone) => {
            "one public port for all destinations, answers only from addresses you have sent \
             to: hole punching works with every peer, symmetric NATs included"
        }
        Some(Classic::PortRestrictedCone) => {
            "one public port for all destinations, answers only from addresses and ports you \
             have sent to: hole punching works with every peer except those behind symmetric \
             NATs, which need the relay"
        }
        Some(Classic::Symmetric) => {
            "ports change per destination: direct connections work only with peers whose NAT \
             accepts unknown ports (open, full-cone, restricted-cone); others need the relay"
        }
        None if r.other_address.is_none() && r.nat.is_some() => {
            if r.nat == Some(true) {
                "behind a NAT; the server has no second address, so mapping and filtering are \
                 unknown: direct connections may need the relay"
            } else {
                "no NAT; the server has no second address, so filtering is unknown: direct \
                 connections may need hole punching"
            }
        }
        None => {
            "the tests could not decide the NAT type (see notes): direct connections may need \
             the relay"
        }
    };
    s.to_owned()
}

/// Assembles the report.
pub(crate) fn build(inputs: Inputs<'_>) -> NatReport {
    let obs = inputs.observations;
    let mut notes = inputs.notes;
    let blocked = !obs.is_empty() && !reachable(obs);
    let nat = nat_present(obs);
    let mapping = mapping(obs, nat);
    let filtering = filtering(obs);
    for o in obs.iter().filter(|o| {
        matches!(o.test, Test::FilteringII | Test::FilteringIII)
            && o.outcome == Outcome::Answered
            && !from_changed(o)
    }) {
        notes.push(format!(
            "the answer to {} came from {} although it asked for another {}: the server \
             ignores CHANGE-REQUEST, filtering is unknown",
            o.test,
            o.response_from.map_or("?".into(), |a| a.to_string()),
            if o.change_ip { "address" } else { "port" },
        ));
    }
    for o in obs.iter().filter(|o| o.outcome == Outcome::Error) {
        notes.push(format!(
            "the server answered {} with error {}",
            o.test,
            o.error_code
                .map_or("(no ERROR-CODE)".into(), |c| c.to_string()),
        ));
    }
    let classic = if blocked {
        Some(Classic::Blocked)
    } else {
        classic(nat, mapping, filtering)
    };
    let public = mapped(obs, Test::MappingI).or_else(|| mapped(obs, Test::FilteringI));
    let mut report = NatReport {
        classic,
        mapping,
        filtering,
        public,
        nat,
        hairpin: hairpin(obs),
        port_allocation: port_allocation(obs),
        server: inputs.server,
        other_address: inputs.other,
        tests: obs.to_vec(),
        notes,
        explanation: String::new(),
        elapsed_ms: inputs.elapsed_ms,
    };
    report.explanation = explanation(&report);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(test: Test, socket: LocalSocket, local: &str, mapped: Option<&str>) -> Observation {
        Observation {
            test,
            socket,
            local: local.parse().unwrap(),
            dest: "203.0.113.1:3478".parse().unwrap(),
            change_ip: false,
            change_port: false,
            transmits: 1,
            outcome: if mapped.is_some() {
                Outcome::Answered
            } else {
                Outcome::NoAnswer
            },
            mapped: mapped.map(|m| m.parse().unwrap()),
            response_from: None,
            response_origin: None,
            other_address: None,
            error_code: None,
        }
    }

    fn ports(m1: u16, f1: u16, more: &[u16]) -> Vec<Observation> {
        let addr = |p: u16| format!("198.51.100.1:{p}");
        let mut v = vec![
            obs(
                Test::MappingI,
                LocalSocket::Mapping,
                "10.0.0.2:40000",
                Some(&addr(m1)),
            ),
            obs(
                Test::FilteringI,
                LocalSocket::Filtering,
                "10.0.0.2:40001",
                Some(&addr(f1)),
            ),
        ];
        let tests = [Test::MappingII, Test::MappingIII];
        for (t, p) in tests.iter().zip(more) {
            v.push(obs(
                *t,
                LocalSocket::Mapping,
                "10.0.0.2:40000",
                Some(&addr(*p)),
            ));
        }
        v
    }

    #[test]
    fn port_allocation_rules() {
        assert_eq!(
            port_allocation(&ports(40000, 40001, &[])),
            Some(PortAllocation::Preserved)
        );
        assert_eq!(
            port_allocation(&ports(40000, 40001, &[40000])),
            Some(PortAllocation::Preserved)
        );
        // One preserved socket is not enough when the other is not.
        assert_eq!(
            port_allocation(&ports(40000, 51234, &[])),
            Some(PortAllocation::Random)
        );
        assert_eq!(
            port_allocation(&ports(1025, 1026, &[1029, 1030])),
            Some(PortAllocation::Sequential)
        );
        // Order does not matter (loss can make the NAT allocate F before M).
        assert_eq!(
            port_allocation(&ports(1026, 1025, &[])),
            Some(PortAllocation::Sequential)
        );
        assert_eq!(
            port_allocation(&ports(1025, 1026, &[1040])),
            Some(PortAllocation::Random)
        );
        // A single sample cannot tell.
        let mut one = ports(1025, 1026, &[]);
        one.truncate(1);
        assert_eq!(port_allocation(&one), None);
    }

    #[test]
    fn classic_table() {
        use Behaviour::*;
        assert_eq!(
            classic(Some(false), None, Some(EndpointIndependent)),
            Some(Classic::Open)
        );
        assert_eq!(
            classic(Some(false), None, Some(AddressDependent)),
            Some(Classic::Firewall)
        );
        assert_eq!(
            classic(
                Some(true),
                Some(EndpointIndependent),
                Some(EndpointIndependent)
            ),
            Some(Classic::FullCone)
        );
        assert_eq!(
            classic(
                Some(true),
                Some(EndpointIndependent),
                Some(AddressDependent)
            ),
            Some(Classic::RestrictedCone)
        );
        assert_eq!(
            classic(
                Some(true),
                Some(EndpointIndependent),
                Some(AddressAndPortDependent)
            ),
            Some(Classic::PortRestrictedCone)
        );
        assert_eq!(
            classic(Some(true), Some(AddressDependent), None),
            Some(Classic::Symmetric)
        );
        assert_eq!(classic(Some(true), Some(EndpointIndependent), None), None);
        assert_eq!(classic(Some(true), None, Some(EndpointIndependent)), None);
        assert_eq!(classic(None, None, None), None);
    }

    #[test]
    fn wildcard_local_address_only_trusts_port_changes() {
        let o = vec![obs(
            Test::MappingI,
            LocalSocket::Mapping,
            "0.0.0.0:40000",
            Some("198.51.100.1:40000"),
        )];
        assert_eq!(nat_present(&o), None);
        let o = vec![obs(
            Test::MappingI,
            LocalSocket::Mapping,
            "0.0.0.0:40000",
            Some("198.51.100.1:40001"),
        )];
        assert_eq!(nat_present(&o), Some(true));
    }
}
