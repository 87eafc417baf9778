//! Lab interop of NAT type discovery with real third-party tools from Debian, one test per
//! router type on a fresh lab:
//! - our client against coturn (`turnserver --stun-only` on both server addresses) gives the
//!   same verdicts as against our own server;
//! - coturn's `turnutils_natdiscovery -m -f` gives the same mapping and filtering against our
//!   server as against coturn;
//! - the classic RFC 3489 `stun` client names the same type against our server as against
//!   `stund`;
//! - and our client against our server is right for the router type.
//!
//! Each test appends its row to target/lab-results/nat-matrix.txt. A third-party tool that
//! misjudges a router type by itself is marked `!` there (only equality is asserted for it);
//! `*` marks a classic `stun` run that complained while parsing the server's answers.
mod lab;

use lab::nat::{
    classic_stun, code, expected, natdiscovery, parse_classic_stun, parse_natdiscovery,
    punch_nat_type, record, require_third_party, start_server, ScratchDir, Server, AD, APD, EI,
    PORT,
};
use lab::{require_lab, Lab};

fn interop(kind: &str) {
    let test = format!("nat-type interop {kind}");
    require_lab(&test);
    require_third_party();
    let want = expected(kind);
    let lab = Lab::pair(&format!("ni{}", code(kind)), kind, "open");
    let scratch = ScratchDir::new(&lab.prefix);
    let ip = lab.get("SRV_IP").to_string();
    let primary = format!("{ip}:{PORT}");

    // One server at a time on the same addresses; every client from host a, fresh ports.
    let ours = start_server(&lab, Server::Ours, &scratch);
    let ours_ours = punch_nat_type(&lab, "a", &primary);
    let nd_ours = natdiscovery(&lab, "a", &ip);
    let stun_ours = classic_stun(&lab, "a", &ip);
    let ours_log = ours.log();
    drop(ours);

    let coturn = start_server(&lab, Server::Coturn, &scratch);
    let ours_coturn = punch_nat_type(&lab, "a", &primary);
    let nd_coturn = natdiscovery(&lab, "a", &ip);
    drop(coturn);

    let stund = start_server(&lab, Server::Stund, &scratch);
    let stun_stund = classic_stun(&lab, "a", &ip);
    drop(stund);
    drop(lab);

    // `!` marks a verdict that is wrong for the router type.
    let mark = |cell: String, right: bool| if right { cell } else { format!("{cell} !") };
    let nd_right = |nd: &lab::nat::NatDiscovery| {
        nd.mapping == Some(want.mapping) && nd.filtering == Some(want.filtering)
    };
    let ours_right = |v: &lab::nat::OurVerdict| {
        v.classic() == Some(want.classic)
            && v.mapping() == Some(want.mapping)
            && v.filtering() == Some(want.filtering)
    };
    let row = format!(
        "{kind:<20} | {:<29} | {:<29} | {:<13} | {:<15} | {:<21} | {}",
        mark(ours_ours.cell(), ours_right(&ours_ours)),
        mark(ours_coturn.cell(), ours_right(&ours_coturn)),
        mark(nd_ours.cell(), nd_right(&nd_ours)),
        mark(nd_coturn.cell(), nd_right(&nd_coturn)),
        mark(stun_ours.cell(), stun_ours.classic == Some(want.classic)),
        mark(stun_stund.cell(), stun_stund.classic == Some(want.classic)),
    );
    record(&row);
    let secs = |r: &lab::nat::Run| format!("{:.1} s", r.elapsed.as_secs_f64());
    println!(
        "{kind}: client run times: ours->ours {}, ours->coturn {}, natdisc->ours {}, \
         natdisc->coturn {}, stun->ours {}, stun->stund {}",
        secs(&ours_ours.run),
        secs(&ours_coturn.run),
        secs(&nd_ours.run),
        secs(&nd_coturn.run),
        secs(&stun_ours.run),
        secs(&stun_stund.run),
    );
    if !stun_stund.warnings.is_empty() {
        println!(
            "note: classic stun against stund complained: {:?}",
            stun_stund.warnings
        );
    }
    // Our answers to classic clients must parse cleanly (RFC 3489 attribute lengths).
    assert!(
        stun_ours.warnings.is_empty(),
        "{kind}: classic stun complained about our answers: {:?}",
        stun_ours.warnings
    );

    // Ours against ours: right for the router type.
    assert!(
        ours_right(&ours_ours),
        "{kind}: ours->ours should be {want:?}: {}\nserver log:\n{ours_log}",
        ours_ours.describe()
    );
    // Ours against coturn: the same verdicts.
    for key in ["classic", "mapping", "filtering", "nat"] {
        assert_eq!(
            ours_coturn.json[key],
            ours_ours.json[key],
            "{kind}: {key} against coturn differs from against ours\ncoturn: {}\nours: {}",
            ours_coturn.describe(),
            ours_ours.describe()
        );
    }
    // natdiscovery: the same mapping and filtering against ours as against coturn.
    assert!(
        nd_coturn.mapping.is_some() && nd_coturn.filtering.is_some(),
        "{kind}: natdiscovery gave no verdict against coturn: {}",
        nd_coturn.run.text()
    );
    assert_eq!(
        (nd_ours.mapping, nd_ours.filtering),
        (nd_coturn.mapping, nd_coturn.filtering),
        "{kind}: natdiscovery (mapping, filtering) against ours differs from against coturn\n\
         against ours: {}\nagainst coturn: {}\nour server's log:\n{ours_log}",
        nd_ours.run.text(),
        nd_coturn.run.text()
    );
    // The classic stun client: the same type against ours as against stund.
    assert!(
        stun_stund.classic.is_some(),
        "{kind}: classic stun gave no type against stund: {}",
        stun_stund.run.text()
    );
    assert_eq!(
        stun_ours.classic,
        stun_stund.classic,
        "{kind}: classic stun against ours ({:?}) differs from against stund ({:?})\n\
         against ours: {}\nagainst stund: {}\nour server's log:\n{ours_log}",
        stun_ours.text,
        stun_stund.text,
        stun_ours.run.text(),
        stun_stund.run.text()
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_open() {
    interop("open");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_firewall() {
    interop("firewall");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_full_cone() {
    interop("full-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_restricted_cone() {
    interop("restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_port_restricted_cone() {
    interop("port-restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_symmetric() {
    interop("symmetric");
}

/// The parsers, on output captured from the real tools (no lab needed).
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn nat_interop_parsers_read_the_tools_output() {
    let nd = "-= Mapping Behavior Discovery =-\n\
              NAT with Address and Port Dependent Mapping!\n\
              STUN receive timeout..\n\
              -= Filtering Behavior Discovery =-\n\
              NAT with Address Dependent Filtering!\n";
    assert_eq!(parse_natdiscovery(nd), (Some(APD), Some(AD)));
    let open = "No NAT! (Endpoint Independent Mapping)\nNAT with Endpoint Independent Filtering!\n";
    assert_eq!(parse_natdiscovery(open), (Some(EI), Some(EI)));
    assert_eq!(parse_natdiscovery("STUN receive timeout..\n"), (None, None));

    let stun = "STUN client version 0.97\n\
                Primary: Independent Mapping, Port Dependent Filter, preserves ports, no hairpin\t\n\
                Return value is 0x000017\n";
    assert_eq!(parse_classic_stun(stun).0, Some("port-restricted-cone"));
    for (line, classic) in [
        ("Primary: Open\t", "open"),
        ("Primary: Firewall\t", "firewall"),
        (
            "Primary: Independent Mapping, Independent Filter, preserves ports, no hairpin",
            "full-cone",
        ),
        (
            "Primary: Independent Mapping, Address Dependent Filter, preserves ports, no hairpin",
            "restricted-cone",
        ),
        (
            "Primary: Dependent Mapping, random port, no hairpin",
            "symmetric",
        ),
        ("Primary: Blocked or could not reach STUN server", "blocked"),
    ] {
        assert_eq!(parse_classic_stun(line).0, Some(classic), "{line}");
    }
    assert_eq!(parse_classic_stun("error was 0\n").0, None);
}
