//! `punch-loadgen`: the load generator of punch's benchmarks (`bench/`).
//!
//! A separate binary, so that what measures the server is not the server's own code:
//! - `stun`: STUN Binding requests (RFC 8489) from many sockets, batched with
//!   sendmmsg/recvmmsg, at most a window outstanding per socket ([`stun`]);
//! - `register`: many simulated clients registering as real ones do (wire v2: an unsigned
//!   Register, the server's Challenge, the Register signed over its nonce), each from its
//!   own loopback address and port, then one refresh round ([`register`]);
//! - `quic-plain`: a plain quinn connection between two hosts, the reference for punch's
//!   connect time ([`quic`]);
//! - `sigcheck`: the server's signature check alone on real signed registrations, the
//!   floor under the server's CPU per registration ([`sigcheck`]).
//!
//! Each prints one JSON line on stdout; progress and errors go to stderr. It does not start
//! the servers it loads nor read their CPU or memory: the `bench/` scripts do that.

mod latency;
mod mmsg;
mod quic;
mod register;
mod sigcheck;
mod stun;

use std::ops::RangeInclusive;

use anyhow::{ensure, Result};
use clap::{Parser, Subcommand};

/// The option `flag`'s `value` must lie in `range`; the error names the option, the range
/// and what was given. The subcommands check their counts with it before anything runs.
pub(crate) fn within(flag: &str, value: usize, range: RangeInclusive<usize>) -> Result<()> {
    ensure!(
        range.contains(&value),
        "{flag} must be {} to {}, got {value}",
        range.start(),
        range.end()
    );
    Ok(())
}

/// Load generator for punch's benchmarks (see bench/run).
#[derive(Parser, Debug)]
#[command(
    name = "punch-loadgen",
    version,
    after_help = "Examples:\n  \
      punch-loadgen stun --server 127.0.0.1:3478 --sockets 64 --duration 10 --window 16\n  \
      punch-loadgen register --server 127.0.0.1:3478 --clients 100000 --rate 0\n  \
      punch-loadgen sigcheck --signatures 2048 --batch 32\n  \
      punch-loadgen quic-plain server --listen 0.0.0.0:4433\n  \
      punch-loadgen quic-plain client --server 192.0.2.66:4433 --key KEY"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// STUN Binding requests from many sockets at once; prints answered requests/s and
    /// latency percentiles. Works against any STUN server (punch server, coturn).
    Stun(stun::StunArgs),
    /// N simulated clients register with a punch server (challenge, signed registration)
    /// from distinct loopback addresses, then refresh once; prints registrations/s.
    Register(register::RegisterArgs),
    /// The server's Ed25519 check of signed registrations alone, in batches as the server
    /// checks them; prints microseconds per signature (no network).
    Sigcheck(sigcheck::SigcheckArgs),
    /// A plain QUIC connection (no rendezvous, no punching): the reference for connect time.
    QuicPlain {
        #[command(subcommand)]
        side: quic::Side,
    },
}

fn main() -> Result<()> {
    // As `punch` does, so the plain QUIC reference runs with the same glibc copies.
    punch::memcpy::reexec_with_copy_tunable();
    let cli = Cli::parse();
    match cli.command {
        Command::Stun(args) => stun::run(args),
        Command::Register(args) => register::run(args),
        Command::Sigcheck(args) => sigcheck::run(args),
        Command::QuicPlain { side } => quic::run(side),
    }
}
