//! Lab: `punch nat-type` against `punch server --alt-addr` names every router type of the lab
//! correctly (classic type, RFC 4787 mapping and filtering), reports only what it can know
//! against a server with one address, and says `blocked`, quickly and with a reason, when
//! nothing answers.
//!
//! Each test builds its own lab (host a behind the router type under test; site b unused)
//! and removes it on drop, also when it fails.
mod lab;

use std::net::SocketAddr;

use lab::nat::{
    code, expected, punch_nat_type, start_server, OurVerdict, ScratchDir, Server,
    OUR_VERDICT_BOUND, PORT,
};
use lab::{require_lab, Lab};

/// The IP of an `IP:PORT` string, if it is one.
fn ip_of(addr: Option<&str>) -> Option<String> {
    addr?.parse::<SocketAddr>().ok().map(|a| a.ip().to_string())
}

/// Our client in host a against our two-address server: the right verdicts for `kind`.
fn nat_type(kind: &str) {
    let test = format!("nat-type {kind}");
    require_lab(&test);
    let lab = Lab::pair(&format!("nt{}", code(kind)), kind, "open");
    let scratch = ScratchDir::new(&lab.prefix);
    let server = start_server(&lab, Server::Ours, &scratch);
    let v = punch_nat_type(&lab, "a", &format!("{}:{PORT}", lab.get("SRV_IP")));
    println!(
        "{kind:<21} -> {} in {:.2} s",
        v.cell(),
        v.run.elapsed.as_secs_f64()
    );
    check(kind, &lab, &v, &server.log());
}

fn check(kind: &str, lab: &Lab, v: &OurVerdict, server_log: &str) {
    let want = expected(kind);
    let what = || format!("{kind}: {}\nserver log:\n{server_log}", v.describe());
    assert_eq!(v.classic(), Some(want.classic), "classic type, {}", what());
    assert_eq!(v.mapping(), Some(want.mapping), "mapping, {}", what());
    assert_eq!(v.filtering(), Some(want.filtering), "filtering, {}", what());
    assert_eq!(v.json["nat"], want.nat, "nat, {}", what());
    assert_eq!(
        ip_of(v.str("public")).as_deref(),
        Some(lab.get("A_PUB")),
        "public address, {}",
        what()
    );
    assert!(
        !v.str("explanation").unwrap_or("").is_empty(),
        "no explanation, {}",
        what()
    );
    if want.nat {
        // The lab's routers do not hairpin (lab/README.md).
        assert_eq!(v.json["hairpin"], false, "hairpin, {}", what());
        // masquerade keeps a free source port; fully-random never does on purpose.
        let ports = v.str("port_allocation");
        if want.mapping == lab::nat::EI {
            assert_eq!(ports, Some("preserved"), "port allocation, {}", what());
        } else {
            assert_ne!(ports, Some("preserved"), "port allocation, {}", what());
        }
    }
    // RFC 5780 §4.4 on a clean mapping: the filtering socket never sent to the alternate
    // address itself, or the answers from there would prove nothing.
    let alt_ip = lab.get("SRV_IP2");
    for t in v.json["tests"].as_array().into_iter().flatten() {
        if t["socket"] == "filtering" {
            let dest = t["dest"].as_str().unwrap_or("");
            assert_ne!(
                ip_of(Some(dest)).as_deref(),
                Some(alt_ip),
                "the filtering socket sent to the alternate address ({t}), {}",
                what()
            );
        }
    }
    assert!(
        v.run.elapsed < OUR_VERDICT_BOUND,
        "took {:.1} s, {}",
        v.run.elapsed.as_secs_f64(),
        what()
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_open() {
    nat_type("open");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_firewall() {
    nat_type("firewall");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_full_cone() {
    nat_type("full-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_restricted_cone() {
    nat_type("restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_port_restricted_cone() {
    nat_type("port-restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_symmetric() {
    nat_type("symmetric");
}

/// A server without `--alt-addr` cannot show mapping or filtering: the client reports the
/// public address and leaves the rest unknown, for a cone NAT and a symmetric one alike
/// (a guess would name both the same).
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_single_address_server_reports_unknown() {
    require_lab("nat-type against a one-address server");
    let lab = Lab::pair("ntone", "port-restricted-cone", "symmetric");
    let scratch = ScratchDir::new(&lab.prefix);
    let server = start_server(&lab, Server::OursSingle, &scratch);
    let addr = format!("{}:{PORT}", lab.get("SRV_IP"));
    for (node, public) in [("a", lab.get("A_PUB")), ("b", lab.get("B_PUB"))] {
        let v = punch_nat_type(&lab, node, &addr);
        println!(
            "one-address server, host {node}: {} public {:?}",
            v.cell(),
            v.str("public")
        );
        let what = || {
            format!(
                "host {node}: {}\nserver log:\n{}",
                v.describe(),
                server.log()
            )
        };
        assert_eq!(
            ip_of(v.str("public")).as_deref(),
            Some(public),
            "public, {}",
            what()
        );
        assert_eq!(
            v.json["classic"],
            serde_json::Value::Null,
            "classic, {}",
            what()
        );
        assert_eq!(
            v.json["mapping"],
            serde_json::Value::Null,
            "mapping, {}",
            what()
        );
        assert_eq!(
            v.json["filtering"],
            serde_json::Value::Null,
            "filtering, {}",
            what()
        );
        assert_eq!(v.json["nat"], true, "nat, {}", what());
        assert!(
            !v.str("explanation").unwrap_or("").is_empty(),
            "no explanation, {}",
            what()
        );
        assert!(v.run.elapsed < OUR_VERDICT_BOUND, "too slow, {}", what());
    }
}

/// Nothing answers: `blocked`, every other verdict unknown, a reason naming the server, and
/// within a bounded time. Two ways: a closed port on a live host (ICMP port unreachable
/// comes back) and an address without a host (nothing comes back).
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_no_server_is_blocked() {
    require_lab("nat-type with nothing listening");
    let lab = Lab::pair("ntblk", "port-restricted-cone", "open");
    for server in [
        format!("{}:{PORT}", lab.get("SRV_IP")),
        "203.0.113.99:3478".to_string(),
    ] {
        let v = punch_nat_type(&lab, "a", &server);
        println!(
            "nothing at {server}: {} in {:.2} s: {}",
            v.cell(),
            v.run.elapsed.as_secs_f64(),
            v.json["explanation"]
        );
        let what = || format!("server {server}: {}", v.describe());
        assert_eq!(v.classic(), Some("blocked"), "classic, {}", what());
        for key in ["mapping", "filtering", "public"] {
            assert_eq!(v.json[key], serde_json::Value::Null, "{key}, {}", what());
        }
        let explanation = v.str("explanation").unwrap_or("");
        let reason = format!("{explanation} {}", v.json["notes"]);
        assert!(
            !explanation.is_empty() && reason.contains(&server),
            "the reason must say which server did not answer, {}",
            what()
        );
        assert!(v.run.elapsed < OUR_VERDICT_BOUND, "too slow, {}", what());
    }
}
