//! Arbitrary bytes through `stun::Message::decode`; a message that decodes must re-encode
//! and decode again to the same message. The checks live in `src/codec.rs`, shared with the
//! stable replay test `crates/punch-proto/tests/fuzz_corpus_replay.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _decoded = punch_fuzz::codec::check_stun(data);
});
