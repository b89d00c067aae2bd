//! Wall-clock milliseconds tied to tokio's monotonic clock.
//!
//! The presence core works in epoch milliseconds. [`Clock`] reads the wall clock once and then
//! advances with `tokio::time::Instant`, so that timestamps never go backwards and tests can drive
//! time with `tokio::time::pause`.

use crate::presence::Millis;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Maps between epoch milliseconds and tokio instants. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_ms: Millis,
}

impl Clock {
    /// A clock anchored at the current wall-clock time.
    pub fn start() -> Self {
        let origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock {
            origin: Instant::now(),
            origin_ms,
        }
    }

    /// Milliseconds since the epoch, now.
    pub fn now_ms(&self) -> Millis {
        self.ms_at(Instant::now())
    }

    /// Milliseconds since the epoch at `instant`.
    pub fn ms_at(&self, instant: Instant) -> Millis {
        let elapsed = instant.saturating_duration_since(self.origin);
        self.origin_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant at which the clock reads `ms`.
    pub fn instant_at(&self, ms: Millis) -> Instant {
        self.origin + Duration::from_millis(ms.saturating_sub(self.origin_ms))
    }
}
