//! Lab: two symmetric IPv4 NATs (no direct IPv4 path can exist) on dual-stack sites: the
//! pair goes direct over IPv6 instead of staying on the relay.
mod lab;

use lab::ipv6::{direct_over_ipv6, scenario};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_ipv4_pair_goes_direct_over_ipv6() {
    let test = "symmetric+v6 x symmetric+v6";
    scenario(
        test,
        "ss",
        ("symmetric+v6", "symmetric+v6"),
        "auto",
        &[],
        |r| direct_over_ipv6(test, r),
    );
}
