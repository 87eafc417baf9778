//! The punching `Agent` driven by a script of inputs (datagrams from a few addresses, time
//! steps, timeouts) read from the fuzz input; see `src/agent_ops.rs` for the script format and
//! the invariants checked after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    punch_fuzz::agent_ops::run(data);
});
