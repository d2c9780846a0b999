//! A simulated link: frames sent at some instant come out later, possibly lost, duplicated,
//! reordered or delayed, all decided by a seeded RNG so every run is the same. Time is passed
//! in, like everything sans-IO in this crate; nothing sleeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A small, fast, seedable PRNG (xoshiro256**), for simulations and tests.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from `seed` (through SplitMix64, so any seed is fine).
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }

    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for c in &mut words {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let v = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&v[..tail.len()]);
        }
    }
}

/// Impairments of a simulated link (one direction).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Line rate in bits per second (frames are serialized one after another); `None`: infinite.
    pub rate_bps: Option<u64>,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back and overtaken.
    pub reorder: f64,
    /// Extra delay of a reordered frame.
    pub reorder_delay: Duration,
    /// Frames queued for serialization beyond which new ones are dropped (a bounded buffer).
    pub queue_limit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            delay: Duration::from_micros(50),
            rate_bps: Some(10_000_000_000),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_micros(200),
            queue_limit: 10_000,
        }
    }
}

impl SimConfig {
    /// The same link with `loss` random loss, `reorder` reordering and `duplicate` duplication.
    pub fn impaired(loss: f64, reorder: f64, duplicate: f64) -> SimConfig {
        SimConfig { loss, reorder, duplicate, ..SimConfig::default() }
    }
}

/// What a simulated link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Frames offered.
    pub sent: u64,
    /// Frames dropped by random loss.
    pub lost: u64,
    /// Frames dropped because the queue was full.
    pub overflowed: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Frames held back.
    pub reordered: u64,
    /// Frames handed out.
    pub delivered: u64,
}

/// One direction of a simulated link.
#[derive(Debug)]
pub struct SimLink {
    cfg: SimConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
    line_free_at: Option<Instant>,
    stats: SimStats,
}

impl SimLink {
    /// A link with impairments `cfg` and RNG seed `seed`.
    pub fn new(cfg: SimConfig, seed: u64) -> SimLink {
        SimLink {
            cfg,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            line_free_at: None,
            stats: SimStats::default(),
        }
    }

    /// Offers a frame at `now`.
    pub fn send(&mut self, now: Instant, frame: Vec<u8>) {
        self.stats.sent += 1;
        if self.queue.len() >= self.cfg.queue_limit {
            self.stats.overflowed += 1;
            return;
        }
        // Serialization: the frame leaves when the line is free, taking len*8/rate.
        let start = self.line_free_at.map_or(now, |t| t.max(now));
        let tx = self.cfg.rate_bps.map_or(Duration::ZERO, |r| {
            Duration::from_nanos((frame.len() as u64 * 8).saturating_mul(1_000_000_000) / r.max(1))
        });
        self.line_free_at = Some(start + tx);
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut at = start + tx + self.cfg.delay;
        if self.rng.chance(self.cfg.reorder) {
            self.stats.reordered += 1;
            at += self.cfg.reorder_delay;
        }
        if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            self.push(at + Duration::from_micros(1), frame.clone());
        }
        self.push(at, frame);
    }

    fn push(&mut self, at: Instant, frame: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, frame)));
    }

    /// The next frame due at or before `now`.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.queue.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
            self.stats.delivered += 1;
            return self.queue.pop().map(|Reverse((_, _, f))| f);
        }
        None
    }

    /// When the next frame is due.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_roughly_uniform() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        let hits = (0..100_000).filter(|_| a.chance(0.1)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
    }

    #[test]
    fn loss_rate_matches_configuration() {
        let t0 = Instant::now();
        let mut l = SimLink::new(
            SimConfig { loss: 0.1, rate_bps: None, queue_limit: usize::MAX, ..SimConfig::default() },
            7,
        );
        for _ in 0..20_000 {
            l.send(t0, vec![0; 10]);
        }
        let mut n = 0;
        while l.poll_deliver(t0 + Duration::from_secs(1)).is_some() {
            n += 1;
        }
        let lost = 20_000 - n;
        assert!((1_700..2_300).contains(&lost), "{lost}");
        assert_eq!(l.stats().lost, lost as u64);
    }

    #[test]
    fn delay_rate_and_reordering() {
        let t0 = Instant::now();
        let cfg = SimConfig {
            rate_bps: Some(8_000_000),
            reorder: 1.0,
            reorder_delay: Duration::from_millis(5),
            ..SimConfig::default()
        };
        let mut l = SimLink::new(cfg, 1);
        l.send(t0, vec![1; 1000]); // 1 ms on the line
        assert_eq!(l.next_delivery(), Some(t0 + Duration::from_millis(6) + Duration::from_micros(50)));
        assert!(l.poll_deliver(t0 + Duration::from_millis(6)).is_none());
        assert!(l.poll_deliver(t0 + Duration::from_millis(7)).is_some());
    }
}
