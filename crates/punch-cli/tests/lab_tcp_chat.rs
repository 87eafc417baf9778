//! Lab: `punch chat` itself over TCP. With `--transport tcp` the chat punches a TCP path
//! (or uses the TCP relay) and says so in its events; with `--transport auto` on a network
//! whose routers drop all UDP, the chat finds the server over TCP by itself.
mod lab;

use lab::relay::{code, record, Pair};
use lab::require_lab;
use lab::tcp::{tcp_lab, TcpLabOpts};

fn chat_over_tcp(a: &str, b: &str, transport: &str, block_udp: bool, want_path: &str) {
    let test = format!(
        "chat --transport {transport}: {a} x {b}{}",
        if block_udp { " (UDP blocked)" } else { "" }
    );
    require_lab(&test);
    let prefix = format!(
        "tc{}{}{}",
        code(a),
        code(b),
        if block_udp { "u" } else { "" }
    );
    let opts = TcpLabOpts {
        block_udp,
        udp_to_server_only: false,
        ..TcpLabOpts::default()
    };
    let lab = tcp_lab(&prefix, a, b, opts);
    let extra = ["--transport", transport];
    let mut pair = Pair::start_with(&lab, &lab.ns("a"), &lab.ns("b"), "auto", &extra);
    let connected = pair.connected();
    assert_eq!(connected["transport"], "tcp", "{test}: {connected}");
    assert_eq!(connected["path"], want_path, "{test}: {connected}");
    let n = 20;
    pair.talk_both_ways(&test, n);
    record(&format!(
        "{test:<64} {want_path} over tcp, {n}/{n} messages in order, and back"
    ));
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn chat_over_tcp_port_restricted_pair() {
    chat_over_tcp(
        "port-restricted-cone",
        "port-restricted-cone",
        "tcp",
        false,
        "direct",
    );
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn chat_auto_falls_back_to_tcp_when_udp_is_blocked() {
    chat_over_tcp("port-restricted-cone", "full-cone", "auto", true, "direct");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn chat_over_tcp_relay_for_symmetric_pair() {
    chat_over_tcp("symmetric", "symmetric", "tcp", false, "relay");
}
