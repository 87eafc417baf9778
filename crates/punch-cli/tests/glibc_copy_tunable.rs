//! `punch` runs itself again with glibc's copy tunable where the CPU needs it
//! (`punch::memcpy`): a server started without the tunable runs, in the same process, with
//! it added to what `GLIBC_TUNABLES` held, keeps its name and arguments, and answers; one
//! started with the user's own threshold keeps it. Where this CPU has no slow case, the
//! environment must stay as it was given. What the process runs with is read from its log
//! (`punch=debug`): glibc cuts the variable short in `/proc/PID/environ` as it parses it.

#[path = "chat_support.rs"]
mod support;

use std::net::UdpSocket;
use std::time::Duration;

use punch::memcpy::{tunables_for, Cpu, TUNABLE};
use support::Server;

/// The server answers `<Hi!>` on the address it was given: its arguments survived.
fn answers(server: &Server) {
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    probe.send_to(b"<Hi!>", server.addr).expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = probe.recv_from(&mut buf).expect("an answer to <Hi!>");
    assert_eq!((&buf[..n], from), (&b"<HI!>"[..], server.addr));
}

/// A server started with `GLIBC_TUNABLES` set to `given` (or unset): the value its log says
/// it runs with, when that holds the copy tunable.
fn started_with(given: Option<&str>) -> Option<String> {
    let server = Server::start_env(&[], &[("GLIBC_TUNABLES", given)]);
    let comm =
        std::fs::read_to_string(format!("/proc/{}/comm", server.proc.pid())).expect("read comm");
    assert_eq!(comm.trim(), "punch", "the process keeps its name");
    answers(&server);
    // Logged right after start, before the server listens: in the log by now.
    let log = server.proc.stderr();
    let runs_with = log
        .lines()
        .find_map(|l| l.split("glibc copies: GLIBC_TUNABLES=").nth(1))
        .map(|v| v.split(" (see").next().unwrap_or(v).to_string());
    eprintln!("given {given:?}: runs with {runs_with:?}");
    runs_with
}

fn cpu() -> Cpu {
    let cpu = Cpu::this().expect("an x86-64 CPU");
    eprintln!("{cpu:?}, needs the fix: {}", cpu.needs_fix());
    cpu
}

#[test]
fn the_tunable_is_added_where_the_cpu_needs_it() {
    let want = tunables_for(cpu(), None);
    assert_eq!(started_with(None), want);
}

#[test]
fn the_tunable_joins_the_users_others() {
    let other = "glibc.malloc.tcache_count=7";
    let want = tunables_for(cpu(), Some(other));
    assert_eq!(started_with(Some(other)), want);
}

#[test]
fn a_threshold_the_user_set_is_kept() {
    let own = format!("glibc.malloc.tcache_count=7:{TUNABLE}=4096");
    assert_eq!(tunables_for(cpu(), Some(&own)), None);
    assert_eq!(started_with(Some(&own)), Some(own));
}
