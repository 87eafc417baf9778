//! Lab: RFC 5780 discovery per family. A server listening on one address per family, each
//! with its own alternate address, and `punch nat-type --server srv.lab` in a dual-stack
//! site with a symmetric IPv4 NAT: one verdict per family, IPv6 first — a stateful
//! firewall without NAT over IPv6, the symmetric NAT over IPv4.
mod lab;

use serde_json::Value;

use lab::nat::{expected, run_in, CLIENT_TIMEOUT};
use lab::{punch_bin, record_to, require_lab, Lab, Proc};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_type_is_discovered_per_family() {
    let test = "nat-type per family";
    require_lab(test);
    let lab = Lab::pair("v6nt", "symmetric+v6", "open");
    let (v4, v4alt) = (lab.get("SRV_IP"), lab.get("SRV_IP2"));
    let (v6, v6alt) = (lab.get("SRV_IP6"), lab.get("SRV_IP6_2"));
    let listen4 = format!("{v4}:3478");
    let listen6 = format!("[{v6}]:3478");
    let _server = Proc::spawn(
        "server",
        &lab.ns("srv"),
        &[
            "server",
            "--no-tcp",
            "--listen",
            &listen4,
            "--listen",
            &listen6,
            "--alt-addr",
            v4alt,
            "--alt-addr",
            v6alt,
        ],
    );
    let run = run_in(
        &lab.ns("a"),
        punch_bin(),
        &["nat-type", "--json", "--server", lab.get("SRV_NAME")],
        CLIENT_TIMEOUT,
    );
    assert!(!run.timed_out(), "{test}: {}", run.text());
    let reports: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{test}: {e}: {l}")))
        .collect();
    assert_eq!(
        reports.len(),
        2,
        "{test}: one report per family: {}",
        run.text()
    );
    let (first, second) = (&reports[0], &reports[1]);
    let public = |r: &Value| r["public"].as_str().unwrap_or("").to_string();
    assert!(
        public(first).contains(lab.get("A_IP6")),
        "{test}: IPv6 first: {first}"
    );
    assert!(
        public(second).starts_with(lab.get("A_PUB")),
        "{test}: {second}"
    );
    for (r, kind) in [(first, "firewall"), (second, "symmetric")] {
        let want = expected(kind);
        assert_eq!(r["classic"], want.classic, "{test}: {r}");
        assert_eq!(r["mapping"], want.mapping, "{test}: {r}");
        assert_eq!(r["filtering"], want.filtering, "{test}: {r}");
    }
    record_to(
        "ipv6.txt",
        &format!(
            "{test:<44} IPv6 {} (public {}), IPv4 {} (public {})",
            first["classic"],
            public(first),
            second["classic"],
            public(second)
        ),
    );
}
