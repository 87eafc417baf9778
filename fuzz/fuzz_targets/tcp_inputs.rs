//! The server's TCP side, sans-IO: per-connection `FrameReader`s feeding the `TcpRegistry`,
//! driven by a script of inputs (connections opened on the main or assist listener, reads of
//! raw or framed bytes, closes, time steps, timeouts) read from the fuzz input; see
//! `src/tcp_ops/mod.rs` for the script format and the invariants checked after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    punch_fuzz::tcp_ops::run(data);
});
