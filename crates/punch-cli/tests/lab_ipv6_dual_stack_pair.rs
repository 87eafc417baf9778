//! Lab: two dual-stack sites (port-restricted cone NAT for IPv4, a stateful firewall for
//! IPv6) where both families punch: over IPv4 alone (`--bind 0.0.0.0:0`) the pair goes
//! direct over IPv4, and with both families the IPv6 path is the one chosen.
mod lab;

use lab::ipv6::{direct_over_ipv6, final_path, scenario};

const SITE: &str = "port-restricted-cone+v6";

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn dual_stack_pair_chooses_ipv6() {
    let test = "dual-stack pr x pr: IPv6 chosen";
    scenario(test, "dd", (SITE, SITE), "never", &[], |r| {
        direct_over_ipv6(test, r)
    });
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn the_same_pair_over_ipv4_alone_punches_too() {
    let test = "dual-stack pr x pr, IPv4 socket: IPv4";
    let v4 = ["--bind", "0.0.0.0:0"];
    scenario(test, "d4", (SITE, SITE), "never", &v4, |r| {
        assert_eq!(
            r.registered,
            ("ipv4".into(), "ipv4".into()),
            "{test}: {r:?}"
        );
        let last = final_path(r);
        assert_eq!(last["path"], "direct", "{test}: {r:?}");
        assert_eq!(last["family"], "ipv4", "{test}: {r:?}");
    });
}
