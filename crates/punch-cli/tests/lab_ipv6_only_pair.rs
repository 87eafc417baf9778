//! Lab: two IPv6-only sites behind stateful IPv6 firewalls punch a direct path over IPv6,
//! registering with a dual-stack server they reach by name (its IPv4 address is no use
//! to them: Happy Eyeballs must pick IPv6).
mod lab;

use lab::ipv6::{direct_over_ipv6, scenario};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn ipv6_only_pair_punches_directly() {
    let test = "ipv6-only x ipv6-only";
    scenario(test, "oo", ("v6-only", "v6-only"), "never", &[], |r| {
        assert_eq!(
            r.registered,
            ("ipv6".into(), "ipv6".into()),
            "{test}: {r:?}"
        );
        direct_over_ipv6(test, r);
    });
}
