//! A simulated link: frames sent at some instant come out later, possibly lost, duplicated,
//! reordered or delayed, all decided by a seeded RNG so every run is the same. Time is passed
//! in, like everything sans-IO in this crate; nothing sleeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::rng::Rng;

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
    /// Probability that a frame arrives with one bit flipped (anywhere but its first 14 bytes,
    /// the Ethernet header, which real NICs check with their CRC).
    pub corrupt: f64,
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
            corrupt: 0.0,
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
    /// Frames delivered with a bit flipped.
    pub corrupted: u64,
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
    pub fn send(&mut self, now: Instant, mut frame: Vec<u8>) {
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
        if frame.len() > 14 && self.rng.chance(self.cfg.corrupt) {
            self.stats.corrupted += 1;
            let i = 14 + self.rng.below(frame.len() as u64 - 14) as usize;
            frame[i] ^= 1 << self.rng.below(8);
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

    /// Takes over the frames `other` still holds, due when they were.
    pub fn absorb(&mut self, other: &mut SimLink) {
        for Reverse((at, _, f)) in std::mem::take(&mut other.queue).into_vec() {
            self.push(at, f);
        }
        self.line_free_at = other.line_free_at;
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
