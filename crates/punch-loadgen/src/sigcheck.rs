//! `punch-loadgen sigcheck`: the cost of checking registrations' signatures alone, with
//! the server's own function ([`punch_proto::auth::verify_frames`]) on real signed
//! `Register` frames, in the batches the server checks them in.
//!
//! Every new registration costs the server one Ed25519 check; this measures that floor on
//! the machine at hand, so a registrations/s figure can be read against it: how many
//! registrations one core could take if checking were all it did, and how many cores a
//! target rate needs for the checks alone. Nothing here touches the network.

use std::time::Instant;

use anyhow::{ensure, Result};
use clap::Args;
use punch_proto::auth::{verify_frames, RegisterRequest};
use punch_proto::wire::Frame;
use serde_json::json;

use crate::register::keys;
use crate::within;

/// Options of `punch-loadgen sigcheck`.
#[derive(Args, Debug)]
pub struct SigcheckArgs {
    /// Distinct signed registrations (each its own key, name and nonce).
    #[arg(long, default_value_t = 2048)]
    pub signatures: usize,
    /// Signatures per check: the server checks those of one receive batch together
    /// (at most 32 datagrams); 1 is the single check it falls back to.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Times every signature is checked (the figure is over all of them).
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Seed of the keys (the same seed gives the same keys).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn check(args: &SigcheckArgs) -> Result<()> {
    within("--signatures", args.signatures, 1..=1_000_000)?;
    within("--batch", args.batch, 1..=4096)?;
    within("--passes", args.passes, 1..=1000)
}

/// `n` signed `Register` frames, as clients send them after the server's challenge.
pub fn signed_frames(n: usize, seed: u64) -> Vec<Frame> {
    keys(n, seed)
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            RegisterRequest {
                name: format!("sc-{i}"),
                private: Vec::new(),
                nat: None,
                nonce,
            }
            .signed(i as u64 + 1, key)
        })
        .collect()
}

/// Check `frames` `passes` times in batches of `batch`: how many checks passed and the
/// seconds it took.
pub fn time_checks(frames: &[Frame], batch: usize, passes: usize) -> (usize, f64) {
    let refs: Vec<&Frame> = frames.iter().collect();
    let mut good = 0;
    let t = Instant::now();
    for _ in 0..passes {
        for chunk in refs.chunks(batch.max(1)) {
            good += verify_frames(chunk).into_iter().filter(|&ok| ok).count();
        }
    }
    (good, t.elapsed().as_secs_f64())
}

/// Sign, check and print the JSON line.
pub fn run(args: SigcheckArgs) -> Result<()> {
    check(&args)?;
    let frames = signed_frames(args.signatures, args.seed);
    let (good, secs) = time_checks(&frames, args.batch, args.passes);
    let checks = args.signatures * args.passes;
    // A failed check would time the slow path (each signature alone) and mean a bug.
    ensure!(
        good == checks,
        "{} of {checks} checks failed",
        checks - good
    );
    let us = secs * 1e6 / checks as f64;
    println!(
        "{}",
        json!({
            "signatures": args.signatures, "batch": args.batch, "passes": args.passes,
            "checks": checks, "seconds": secs, "us_per_signature": us,
            "per_core_s": 1e6 / us,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_check_and_a_forged_one_is_caught() {
        let mut frames = signed_frames(6, 7);
        assert_eq!(time_checks(&frames, 4, 2).0, 12);
        // Another key's signature on frame 0: the batch fails, each is then checked alone.
        let other = match &frames[1] {
            Frame::Register { sig, .. } => *sig,
            f => panic!("not a Register: {f:?}"),
        };
        if let Frame::Register { sig, .. } = &mut frames[0] {
            *sig = other;
        }
        assert_eq!(time_checks(&frames, 4, 1).0, 5);
        assert_eq!(time_checks(&frames, 1, 1).0, 5);
    }

    #[test]
    fn bad_options_are_refused() {
        let args = |signatures, batch, passes| SigcheckArgs {
            signatures,
            batch,
            passes,
            seed: 1,
        };
        assert!(check(&args(10, 32, 1)).is_ok());
        assert!(check(&args(0, 32, 1)).is_err());
        assert!(check(&args(10, 0, 1)).is_err());
        assert!(check(&args(10, 32, 0)).is_err());
    }
}
