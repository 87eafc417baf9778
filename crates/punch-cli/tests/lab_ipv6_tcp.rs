//! Lab: TCP over IPv6 between two IPv6-only sites behind stateful firewalls: a punched
//! direct TCP connection (simultaneous open through both firewalls), and the server's
//! TCP relay when punching is not asked for.
mod lab;

use lab::ipv6::{final_path, scenario};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn tcp_punches_directly_over_ipv6() {
    let test = "ipv6-only x ipv6-only, TCP punched";
    let tcp = ["--transport", "tcp"];
    scenario(test, "tp", ("v6-only", "v6-only"), "never", &tcp, |r| {
        let last = final_path(r);
        assert_eq!(last["transport"], "tcp", "{test}: {r:?}");
        assert_eq!(last["path"], "direct", "{test}: {r:?}");
        assert_eq!(last["family"], "ipv6", "{test}: {r:?}");
    });
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn tcp_relay_over_ipv6() {
    let test = "ipv6-only x ipv6-only, TCP relay";
    let tcp = ["--transport", "tcp"];
    scenario(test, "tr", ("v6-only", "v6-only"), "only", &tcp, |r| {
        let last = final_path(r);
        assert_eq!(last["transport"], "tcp", "{test}: {r:?}");
        assert_eq!(last["path"], "relay", "{test}: {r:?}");
        assert_eq!(last["family"], "ipv6", "{test}: {r:?}");
    });
}
