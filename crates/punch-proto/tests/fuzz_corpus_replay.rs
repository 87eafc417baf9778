//! The committed fuzz seeds (`fuzz/seeds/<target>/`) replayed through the very checks the
//! cargo-fuzz targets run, under stable `cargo test`: the codec round trips and the agent,
//! rendezvous and TCP registry scripts with their invariants. The checks are the fuzz
//! crate's own files, included by path, so the two cannot drift apart.
//!
//! A missing or empty seed directory fails the test: it must not pass by replaying nothing.
//! See `fuzz/README.md` for running the fuzzers and adding seeds.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../../fuzz/src/input.rs"]
mod input;

#[allow(dead_code)]
#[path = "../../../fuzz/src/codec.rs"]
mod codec;

#[allow(dead_code)]
#[path = "../../../fuzz/src/agent_ops.rs"]
mod agent_ops;

#[allow(dead_code)]
#[path = "../../../fuzz/src/signing.rs"]
mod signing;

#[allow(dead_code)]
#[path = "../../../fuzz/src/rendezvous_ops.rs"]
mod rendezvous_ops;

#[allow(dead_code, unused_imports)]
#[path = "../../../fuzz/src/tcp_ops/mod.rs"]
mod tcp_ops;

/// Every file in `fuzz/seeds/<target>/`, sorted by name; panics if there are none.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed directory {} unreadable: {e}", dir.display()));
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = fs::read(&path)
                .unwrap_or_else(|e| panic!("seed {} unreadable: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `check` on every seed of `target`, naming every seed that panics; returns how many
/// seeds `check` reported as decoded.
fn replay(target: &str, check: impl Fn(&[u8]) -> bool) -> usize {
    let mut failed = Vec::new();
    let mut decoded = 0;
    for (path, bytes) in seeds(target) {
        match panic::catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            Ok(true) => decoded += 1,
            Ok(false) => {}
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} seed(s) failed (panic messages above):\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
    decoded
}

#[test]
fn stun_decode_seeds_round_trip() {
    let decoded = replay("stun_decode", codec::check_stun);
    // The RFC 5769 vectors are among the seeds: the round trip must not be vacuous.
    assert!(decoded > 0, "no stun_decode seed decodes");
}

#[test]
fn frame_decode_seeds_round_trip() {
    let decoded = replay("frame_decode", codec::check_frame);
    // Every Frame variant is among the seeds: the round trip must not be vacuous.
    assert!(decoded > 0, "no frame_decode seed decodes");
}

#[test]
fn owner_record_seeds_round_trip() {
    let parsed = replay("owner_record", codec::check_owner_record);
    // Valid records are among the seeds: the round trip must not be vacuous.
    assert!(parsed >= 3, "only {parsed} owner_record seeds parse");
}

#[test]
fn agent_inputs_seeds_keep_invariants() {
    replay("agent_inputs", |data| {
        agent_ops::run(data);
        true
    });
}

#[test]
fn rendezvous_inputs_seeds_keep_invariants() {
    replay("rendezvous_inputs", |data| {
        rendezvous_ops::run(data);
        true
    });
}

#[test]
fn tcp_inputs_seeds_keep_invariants() {
    replay("tcp_inputs", |data| {
        tcp_ops::run(data);
        true
    });
}
