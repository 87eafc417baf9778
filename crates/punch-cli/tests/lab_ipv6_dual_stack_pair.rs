//! Lab: two dual-stack sites (port-restricted cone NAT for IPv4, a stateful firewall for
//! IPv6) where both families punch: the IPv6 path is the one chosen.
mod lab;

use lab::ipv6::{direct_over_ipv6, scenario};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn dual_stack_pair_chooses_ipv6() {
    let test = "dual-stack pr x pr: IPv6 chosen";
    let t = "port-restricted-cone+v6";
    scenario(test, "dd", (t, t), "never", &[], |r| {
        direct_over_ipv6(test, r)
    });
}
