//! Rate limits, as plain data and arithmetic (time is passed in): a token bucket, a connection's
//! inbound limits (frames and bytes per second) and the bulk API's limit per token.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens at `now` if there are enough.
    pub fn take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// How long from `now` until `n` tokens are there (zero when they are).
    pub fn wait_for(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let missing = (n.min(self.burst) - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.rate.max(f64::MIN_POSITIVE))
    }

    /// Whether the bucket is full at `now` (nothing owed: safe to forget).
    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// What the inbound limits make of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits.
    Pass,
    /// Over them: read nothing more for this long (the sender is slowed down).
    Throttle(Duration),
    /// Over them for longer than the flood allowance: close with 1008.
    Close,
}

/// How long a connection may stay over its limits, throttled, before it is closed.
pub const FLOOD_ALLOWANCE: Duration = Duration::from_secs(5);

/// One connection's inbound limits: frames and bytes per second, each with a burst of two
/// seconds' worth.
#[derive(Debug, Clone, Copy)]
pub struct InboundLimits {
    frames: TokenBucket,
    bytes: TokenBucket,
    /// Since when the connection has been over its limits without a second's break.
    over_since: Option<Instant>,
    /// When it was last over them.
    last_over: Instant,
}

/// How long within the limits ends a flood.
const FLOOD_ENDS_AFTER: Duration = Duration::from_secs(1);

impl InboundLimits {
    /// `frames_per_s` and `bytes_per_s`, starting full at `now`; the bytes' burst holds at least
    /// one message of `max_message` bytes, so that the largest message accepted can pass.
    pub fn new(frames_per_s: u32, bytes_per_s: u32, max_message: usize, now: Instant) -> Self {
        let burst = |rate: u32| 2.0 * f64::from(rate);
        let bytes_burst = burst(bytes_per_s).max(max_message as f64);
        InboundLimits {
            frames: TokenBucket::new(f64::from(frames_per_s), burst(frames_per_s), now),
            bytes: TokenBucket::new(f64::from(bytes_per_s), bytes_burst, now),
            over_since: None,
            last_over: now,
        }
    }

    /// A message of `len` bytes arrived at `now`.
    pub fn message(&mut self, len: usize, now: Instant) -> Verdict {
        let len = len as f64;
        let frame_ok = self.frames.take(1.0, now);
        let bytes_ok = self.bytes.take(len, now);
        if frame_ok && bytes_ok {
            // The flood is over once the sender has kept within the limits for a while, not at
            // the first message the throttle lets through.
            if now.saturating_duration_since(self.last_over) >= FLOOD_ENDS_AFTER {
                self.over_since = None;
            }
            return Verdict::Pass;
        }
        self.last_over = now;
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) > FLOOD_ALLOWANCE {
            return Verdict::Close;
        }
        let wait = self
            .frames
            .wait_for(1.0, now)
            .max(self.bytes.wait_for(len, now));
        Verdict::Throttle(wait)
    }
}

/// The most bulk API callers whose buckets are kept; beyond it, those with nothing owed are
/// forgotten first.
const MAX_BULK_CALLERS: usize = 16_384;

/// The bulk API's requests per second per token.
#[derive(Debug)]
pub struct BulkLimits {
    rate: f64,
    callers: HashMap<Box<str>, TokenBucket>,
}

impl BulkLimits {
    /// `per_s` requests a second per token (a burst of two seconds' worth).
    pub fn new(per_s: u32) -> Self {
        BulkLimits {
            rate: f64::from(per_s),
            callers: HashMap::new(),
        }
    }

    /// One request of `caller` at `now`: `Ok` to serve it, or how long until the next one
    /// would be.
    pub fn request(&mut self, caller: &str, now: Instant) -> Result<(), Duration> {
        if self.callers.len() >= MAX_BULK_CALLERS && !self.callers.contains_key(caller) {
            self.callers.retain(|_, bucket| !bucket.full(now));
            if self.callers.len() >= MAX_BULK_CALLERS {
                // Every bucket owes: a new caller waits as if it had one.
                return Err(Duration::from_secs_f64(
                    1.0 / self.rate.max(f64::MIN_POSITIVE),
                ));
            }
        }
        let rate = self.rate;
        let bucket = self
            .callers
            .entry(caller.into())
            .or_insert_with(|| TokenBucket::new(rate, 2.0 * rate, now));
        if bucket.take(1.0, now) {
            Ok(())
        } else {
            Err(bucket.wait_for(1.0, now))
        }
    }
}

#[cfg(test)]
mod tests;
