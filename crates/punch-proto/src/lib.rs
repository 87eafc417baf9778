//! Sans-IO core of punch: everything that can be decided from bytes and time alone.
//!
//! Nothing here opens a socket, spawns a task or reads a clock: callers pass `now`
//! and the bytes they received, and take back what to send and when to wake up.
//! That keeps protocol behaviour testable in virtual time (see `tests/`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod auth;
pub mod client;
pub mod nat;
pub mod owners;
pub mod ratelimit;
pub mod relay;
pub mod rendezvous;
pub mod stun;
pub mod tcp;
pub mod wire;
