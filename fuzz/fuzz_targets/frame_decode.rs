//! Arbitrary bytes through `wire::Frame::decode`; a frame that decodes must re-encode and
//! decode again to the same frame. The checks live in `src/codec.rs`, shared with the
//! stable replay test `crates/punch-proto/tests/fuzz_corpus_replay.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _decoded = punch_fuzz::codec::check_frame(data);
});
