//! Per-source rate limits, sans-IO: one token bucket per source IP address, in a bounded
//! table.
//!
//! A server on the open internet must not let one source fill its tables or keep it busy.
//! The registries apply these limits to registrations and introduction requests; the IO
//! layer applies them to STUN. A request over the limit is dropped without an answer,
//! because answering would cost the server work and could send traffic to a spoofed
//! source. Limits go by IP address, not port: one host can have any number of ports.
//!
//! The table holds at most [`RateLimit::max_sources`] buckets. When it is full, buckets
//! that have refilled (they behave as new ones would) are dropped first; if none has, the
//! oldest-touched one goes. Memory stays bounded under a flood from many addresses; the
//! cost is that such a flood may get a fresh burst per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// One limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second allowed on average (0 turns the limit off).
    pub per_second: f64,
    /// Requests allowed at once after a quiet time.
    pub burst: f64,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl RateLimit {
    /// `per_second` sustained, `burst` at once, up to 65,536 sources tracked.
    pub const fn new(per_second: f64, burst: f64) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

/// Sources tracked per limit by default (a bucket is about 40 bytes).
pub const DEFAULT_MAX_SOURCES: usize = 65_536;
/// Registrations (and refreshes) per source address. A client refreshes every 25 s, so
/// this serves hundreds of clients behind one NAT (a household, a CGNAT address).
pub const DEFAULT_REGISTER: RateLimit = RateLimit::new(20.0, 40.0);
/// Introduction requests (`Connect`, TCP connects) per source address.
pub const DEFAULT_CONNECT: RateLimit = RateLimit::new(20.0, 40.0);
/// STUN requests per source address (one NAT discovery sends about 20 in a burst).
pub const DEFAULT_STUN: RateLimit = RateLimit::new(50.0, 100.0);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of one limit. See the module documentation.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
    refused: u64,
}

impl Limiter {
    /// An empty table for `limit`.
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            buckets: HashMap::new(),
            refused: 0,
        }
    }

    /// May `source` make one more request at `now`? (Takes a token if so.)
    pub fn allow(&mut self, now: Instant, source: IpAddr) -> bool {
        let RateLimit {
            per_second,
            burst,
            max_sources,
        } = self.limit;
        if per_second <= 0.0 {
            return true;
        }
        if !self.buckets.contains_key(&source) && self.buckets.len() >= max_sources.max(1) {
            self.make_room(now);
        }
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    fn make_room(&mut self, now: Instant) {
        let RateLimit {
            per_second, burst, ..
        } = self.limit;
        let full = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second >= burst
        };
        self.buckets.retain(|_, b| !full(b));
        if self.buckets.len() >= self.limit.max_sources.max(1) {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(ip, _)| *ip)
            {
                self.buckets.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimit::new(10.0, 5.0));
        let allowed = (0..20).filter(|_| l.allow(t0, ip(1))).count();
        assert_eq!(allowed, 5, "the burst");
        assert_eq!(l.refused(), 15);
        // Another source has its own bucket.
        assert!(l.allow(t0, ip(2)));
        // One second later: ten more (the rate), not more than the burst.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..20).filter(|_| l.allow(t1, ip(1))).count();
        assert_eq!(allowed, 5, "refilled up to the burst only");
        let t2 = t1 + Duration::from_millis(200);
        let allowed = (0..20).filter(|_| l.allow(t2, ip(1))).count();
        assert_eq!(allowed, 2, "200 ms at 10/s");
    }

    #[test]
    fn the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimit {
            per_second: 1.0,
            burst: 2.0,
            max_sources: 8,
        });
        for n in 0..200u8 {
            l.allow(t0 + Duration::from_millis(u64::from(n)), ip(n));
            assert!(l.sources() <= 8);
        }
        // A source that is being limited keeps its bucket over idle ones that refilled.
        let t = t0 + Duration::from_secs(10);
        assert!(l.allow(t, ip(250)));
        assert!(l.allow(t, ip(250)));
        assert!(!l.allow(t, ip(250)), "burst of 2 used up");
        for n in 0..7u8 {
            l.allow(t, ip(n));
        }
        assert!(!l.allow(t, ip(250)), "still limited: its bucket was kept");
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimit::new(0.0, 0.0));
        assert!((0..1000).all(|_| l.allow(t0, ip(1))));
        assert_eq!(l.sources(), 0);
    }
}
