//! Lab: an IPv4-only peer and an IPv6-only peer share no address family: a dual-stack
//! server relays between them, and the path event says why there is no direct path.
mod lab;

use lab::ipv6::{final_path, scenario};

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn ipv4_only_and_ipv6_only_meet_on_the_relay() {
    let test = "ipv4-only x ipv6-only: relay";
    scenario(
        test,
        "46",
        ("port-restricted-cone", "v6-only"),
        "auto",
        &[],
        |r| {
            assert_eq!(
                r.registered,
                ("ipv4".into(), "ipv6".into()),
                "{test}: {r:?}"
            );
            assert_eq!(r.connected["path"], "relay", "{test}: {r:?}");
            assert_eq!(final_path(r)["path"], "relay", "{test}: {r:?}");
            let said = r.paths.iter().any(|p| {
                p["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("no address family in common"))
            });
            assert!(said, "{test}: no path event gave the reason: {r:?}");
        },
    );
}
