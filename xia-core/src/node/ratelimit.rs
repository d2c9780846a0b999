//! A token bucket: how a node bounds what it spends answering others (XCMP errors, signed XARP
//! replies) whatever they send it.

use std::time::Instant;

/// `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(now: Instant, burst: u32, rate: u32) -> TokenBucket {
        TokenBucket { tokens: f64::from(burst), burst: f64::from(burst), rate: f64::from(rate), at: now }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now.max(self.at);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10, 100);
        assert_eq!((0..50).filter(|_| b.take(t0)).count(), 10);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..50).filter(|_| b.take(t1)).count(), 10);
        // Time running backwards gives nothing.
        assert!(!b.take(t0));
    }
}
