//! Round-trip time estimation (RFC 6298) from microsecond samples, and the retransmission
//! timeout it implies.

use std::time::Duration;

/// Smoothed RTT, its variation, the minimum seen, and the RTO.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    latest: Duration,
    initial_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    /// An estimator with no samples yet.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            latest: Duration::ZERO,
            initial_rto,
            min_rto,
            max_rto,
        }
    }

    /// Takes one sample.
    pub fn sample(&mut self, rtt: Duration) {
        self.latest = rtt;
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let err = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + err) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Smoothed RTT (the initial RTO's worth before any sample).
    pub fn srtt(&self) -> Duration {
        self.srtt.unwrap_or(self.initial_rto)
    }

    /// True once a sample was taken.
    pub fn has_samples(&self) -> bool {
        self.srtt.is_some()
    }

    /// Smallest sample seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The latest sample.
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// RTT variation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Retransmission timeout before backoff: srtt + 4 rttvar, within the configured bounds.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => self.initial_rto,
            Some(srtt) => (srtt + 4 * self.rttvar).clamp(self.min_rto, self.max_rto),
        }
    }

    /// The RTO after `backoff` consecutive timeouts (doubling, capped).
    pub fn rto_backoff(&self, backoff: u32) -> Duration {
        self.rto().saturating_mul(1u32 << backoff.min(16)).min(self.max_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298_first_and_later_samples() {
        let ms = Duration::from_millis;
        let mut r = RttEstimator::new(ms(100), ms(1), ms(2000));
        assert_eq!(r.rto(), ms(100));
        r.sample(ms(8));
        assert_eq!(r.srtt(), ms(8));
        assert_eq!(r.rttvar(), ms(4));
        assert_eq!(r.rto(), ms(24));
        r.sample(ms(16));
        assert_eq!(r.srtt(), ms(9));
        assert_eq!(r.rttvar(), ms(5));
        assert_eq!(r.min_rtt(), Some(ms(8)));
        assert_eq!(r.rto_backoff(2), ms(116));
        assert_eq!(r.rto_backoff(30), ms(2000));
    }

    #[test]
    fn floor_applies_to_microsecond_rtts() {
        let mut r =
            RttEstimator::new(Duration::from_millis(100), Duration::from_millis(2), Duration::from_secs(1));
        for _ in 0..50 {
            r.sample(Duration::from_micros(40));
        }
        assert_eq!(r.rto(), Duration::from_millis(2));
    }
}
