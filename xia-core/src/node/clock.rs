//! A node's wall clock, kept from the monotonic clock: signed control messages carry wall time
//! (ms since the Unix epoch), and a state machine is handed monotonic instants.

use std::time::Instant;

/// The wall clock at one instant, and the monotonic time since.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base_ms: u64,
    base: Instant,
}

impl WallClock {
    /// The wall clock read `wall_ms` at `now`.
    pub fn new(now: Instant, wall_ms: u64) -> WallClock {
        WallClock { base_ms: wall_ms, base: now }
    }

    /// The wall clock (ms since the Unix epoch) at `now`.
    pub fn ms(&self, now: Instant) -> u64 {
        self.base_ms + now.saturating_duration_since(self.base).as_millis() as u64
    }
}
