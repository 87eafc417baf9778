//! Lab: routers that forward no UDP at all (`punch-lab up --block-udp`). Peers still reach
//! each other over TCP: punched directly where the NATs allow it, through the TCP relay
//! where they do not. Results go to target/lab-results/tcp-matrix.txt.
mod lab;

use std::process::Command;

use lab::tcp::{tcp_lab, tcp_pair, Expect, TcpLabOpts};

const BLOCKED: TcpLabOpts = TcpLabOpts {
    block_udp: true,
    udp_to_server_only: false,
    wan_input: None,
    delay_ms: 0,
};

/// The lab really drops UDP: a datagram from host b never reaches the server.
#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn udp_is_blocked_in_this_lab() {
    lab::require_lab("udp blocked lab");
    let lab = tcp_lab("tubchk", "port-restricted-cone", "open", BLOCKED);
    let srv = format!("{}:3478", lab.get("SRV_IP"));
    let probe = lab::repo_root().join("lab/udp-probe.py");
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &lab.ns("srv"), "timeout", "3", "python3"])
        .arg(&probe)
        .args(["listen", "--echo", &srv])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("udp-probe listen");
    std::thread::sleep(std::time::Duration::from_millis(300));
    for host in ["a", "b"] {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns(host), "timeout", "2", "python3"])
            .arg(&probe)
            .args(["send", "--msg", "blocked?", &srv])
            .output()
            .expect("udp-probe send");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("recv"),
            "UDP from {host} got an answer through --block-udp routers: {text}"
        );
    }
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn port_restricted_cone_pair_connects_over_tcp() {
    tcp_pair(
        "port-restricted-cone",
        "port-restricted-cone",
        Expect::Direct,
        BLOCKED,
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn full_cone_symmetric_connects_over_tcp() {
    tcp_pair("full-cone", "symmetric", Expect::Direct, BLOCKED);
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn symmetric_pair_relays_over_tcp() {
    tcp_pair("symmetric", "symmetric", Expect::Relay, BLOCKED);
}
