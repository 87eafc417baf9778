//! The `Rendezvous` server state machine driven by a script of inputs (frames from a handful
//! of addresses, time steps, timeouts) read from the fuzz input; see `src/rendezvous_ops.rs`
//! for the script format and the invariants checked after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    punch_fuzz::rendezvous_ops::run(data);
});
