//! What the fuzz targets run, kept apart from libFuzzer so that the stable test
//! `crates/punch-proto/tests/fuzz_corpus_replay.rs` can include the same files with
//! `#[path]` and replay the committed seeds under `cargo test`.
//!
//! Every module here depends on `std` and `punch_proto` only (no `arbitrary`, no
//! libfuzzer-sys): the replay test is compiled with punch-proto's dev-dependencies.

pub mod agent_ops;
pub mod codec;
pub mod input;
pub mod rendezvous_ops;
pub mod signing;
pub mod tcp_ops;
