//! The relay's per-session accounting: limits on rate, volume and idleness, sans-IO.
//!
//! Owns the decision for one relayed datagram: forward it, drop it (over the rate, as a
//! congested link would), or end the session (volume reached). It does not own which
//! sessions exist or where datagrams go: [`crate::rendezvous`] pairs the two peers of an
//! introduction and asks this module about each datagram. The relay never looks inside
//! the payload: it is QUIC, end-to-end encrypted and authenticated between the peers.

use std::time::{Duration, Instant};

/// Default rate limit per session: 100 Mbit/s, enough for a file transfer over most
/// home links while keeping one session from taking a server's whole uplink.
pub const DEFAULT_RATE: u64 = 12_500_000;
/// Default volume limit per session: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Default idle timeout: longer than the peers' 15 s QUIC keep-alive, so only a session
/// whose peers are gone times out.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Relay limits, per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Whether this server relays at all (`--no-relay` turns it off).
    pub enabled: bool,
    /// Bytes per second (sustained); a burst of one second's worth is allowed.
    pub rate: u64,
    /// Bytes in all, after which the session ends with a clear reason.
    pub max_bytes: u64,
    /// A session with no relayed datagram for this long is forgotten.
    pub idle_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            rate: DEFAULT_RATE,
            max_bytes: DEFAULT_MAX_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// What to do with one relayed datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Forward it.
    Forward,
    /// Drop it: over the rate limit.
    OverRate,
    /// End the session: the reason is told to both peers.
    Close(String),
}

/// Usage of one session (a token bucket for the rate, counters for the rest).
#[derive(Debug, Clone)]
pub struct RelayUsage {
    tokens: u64,
    refilled: Instant,
    /// Bytes forwarded so far.
    pub total: u64,
    /// Datagrams forwarded so far.
    pub packets: u64,
    /// Last forwarded datagram.
    pub last_activity: Option<Instant>,
}

impl RelayUsage {
    /// A fresh session's usage, with a full bucket.
    pub fn new(cfg: &RelayConfig, now: Instant) -> RelayUsage {
        RelayUsage {
            tokens: cfg.rate,
            refilled: now,
            total: 0,
            packets: 0,
            last_activity: None,
        }
    }

    /// Account for a datagram of `len` bytes at `now`.
    pub fn admit(&mut self, cfg: &RelayConfig, now: Instant, len: usize) -> Admit {
        let len = len as u64;
        if self.total.saturating_add(len) > cfg.max_bytes {
            return Admit::Close(format!(
                "relay limit reached: {} bytes per session",
                cfg.max_bytes
            ));
        }
        let (tokens, add) = self.tokens_at(cfg, now);
        if add > 0 {
            self.tokens = tokens;
            self.refilled = now;
        }
        if self.tokens < len {
            return Admit::OverRate;
        }
        self.tokens -= len;
        self.total += len;
        self.packets += 1;
        self.last_activity = Some(now);
        Admit::Forward
    }

    /// How long until `len` bytes fit the rate (zero if they fit now). For a stream relay,
    /// which waits instead of dropping; `len` must not exceed one second's worth.
    pub fn wait_for(&self, cfg: &RelayConfig, now: Instant, len: usize) -> Duration {
        let (have, _) = self.tokens_at(cfg, now);
        let missing = (len as u64).saturating_sub(have);
        if missing == 0 || cfg.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            (u128::from(missing) * 1_000_000_000 / u128::from(cfg.rate)) as u64 + 1,
        )
    }

    /// The bucket at `now`, and the tokens refilled since the last refill: proportional to
    /// the time elapsed, capped at one second's worth (the burst).
    fn tokens_at(&self, cfg: &RelayConfig, now: Instant) -> (u64, u64) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let add = (u128::from(cfg.rate) * elapsed.as_nanos() / 1_000_000_000) as u64;
        (self.tokens.saturating_add(add).min(cfg.rate), add)
    }

    /// When the session goes idle (`idle_timeout` after the last forwarded bytes, or
    /// after `started` if nothing was forwarded yet).
    pub fn idle_at(&self, cfg: &RelayConfig, started: Instant) -> Instant {
        self.last_activity.unwrap_or(started) + cfg.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_drops_then_refills() {
        let cfg = RelayConfig {
            rate: 1000,
            ..RelayConfig::default()
        };
        let t0 = Instant::now();
        let mut u = RelayUsage::new(&cfg, t0);
        assert_eq!(u.admit(&cfg, t0, 600), Admit::Forward);
        assert_eq!(u.admit(&cfg, t0, 600), Admit::OverRate);
        assert_eq!(
            u.admit(&cfg, t0 + Duration::from_millis(300), 600),
            Admit::Forward
        );
        assert_eq!(u.total, 1200);
    }

    #[test]
    fn wait_for_says_when_bytes_fit_the_rate() {
        let cfg = RelayConfig {
            rate: 1000,
            ..RelayConfig::default()
        };
        let t0 = Instant::now();
        let mut u = RelayUsage::new(&cfg, t0);
        assert_eq!(u.wait_for(&cfg, t0, 1000), Duration::ZERO);
        assert_eq!(u.admit(&cfg, t0, 1000), Admit::Forward);
        let wait = u.wait_for(&cfg, t0, 500);
        assert!(
            wait >= Duration::from_millis(500) && wait < Duration::from_millis(501),
            "{wait:?}"
        );
        assert_eq!(u.admit(&cfg, t0 + wait, 500), Admit::Forward);
        assert_eq!(u.idle_at(&cfg, t0), t0 + wait + cfg.idle_timeout);
    }

    #[test]
    fn volume_limit_closes() {
        let cfg = RelayConfig {
            max_bytes: 1000,
            ..RelayConfig::default()
        };
        let t0 = Instant::now();
        let mut u = RelayUsage::new(&cfg, t0);
        assert_eq!(u.admit(&cfg, t0, 900), Admit::Forward);
        assert!(matches!(u.admit(&cfg, t0, 200), Admit::Close(r) if r.contains("1000 bytes")));
    }
}
