//! Arbitrary bytes as a stored name record of the server's name database
//! (`owners::Owner::from_record`); one that parses must re-encode to the same bytes. The
//! check lives in `src/codec.rs`, shared with the stable replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _parsed = punch_fuzz::codec::check_owner_record(data);
});
