//! Lab: TCP over IPv6 between two IPv6-only sites behind stateful firewalls: a punched
//! direct TCP connection (simultaneous open through both firewalls), and the server's
//! TCP relay when punching is not asked for.
mod lab;

use lab::ipv6::{final_path, scenario};

/// A TCP chat between the two IPv6-only sites with `--relay RELAY` ends on the path
/// `want` ("direct" or "relay"), over TCP and IPv6.
fn tcp_over_ipv6(test: &str, prefix: &str, relay: &str, want: &str) {
    let tcp = ["--transport", "tcp"];
    scenario(test, prefix, ("v6-only", "v6-only"), relay, &tcp, |r| {
        let last = final_path(r);
        assert_eq!(last["transport"], "tcp", "{test}: {r:?}");
        assert_eq!(last["path"], want, "{test}: {r:?}");
        assert_eq!(last["family"], "ipv6", "{test}: {r:?}");
    });
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn tcp_punches_directly_over_ipv6() {
    tcp_over_ipv6(
        "ipv6-only x ipv6-only, TCP punched",
        "tp",
        "never",
        "direct",
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn tcp_relay_over_ipv6() {
    tcp_over_ipv6("ipv6-only x ipv6-only, TCP relay", "tr", "only", "relay");
}
