//! Impairments of one direction of a link, decided frame by frame with a seeded RNG: the logic
//! of the `xia-impair` relay, without sockets or clock (time is passed in), so it is tested
//! without root.
//!
//! Per frame, in this order and each drawn only when its probability is non-zero: lost;
//! corrupted (one bit flipped, past the Ethernet header, which a real NIC's CRC would catch);
//! duplicated (two copies go out, back to back); reordered (held back `reorder_delay` beyond the
//! fixed `delay`, so later frames overtake it). Frames neither reordered nor delayed go out at
//! once; the others wait in a queue bounded in bytes, and what does not fit is dropped and
//! counted as overflow.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use xia_core::rng::Rng;

/// Bytes of the Ethernet header, never corrupted.
const ETH_HEADER: usize = 14;

/// Impairments of one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairConfig {
    /// Probability that a frame is lost, 0..=1.
    pub loss: f64,
    /// Probability that a frame goes out twice, 0..=1.
    pub duplicate: f64,
    /// Probability that a frame goes out with one bit flipped (past its Ethernet header), 0..=1.
    pub corrupt: f64,
    /// Probability that a frame is held back and overtaken, 0..=1.
    pub reorder: f64,
    /// Extra delay of a reordered frame.
    pub reorder_delay: Duration,
    /// Delay of every frame.
    pub delay: Duration,
    /// Bound of the queue of held frames, in frame bytes.
    pub max_held_bytes: usize,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        ImpairConfig {
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(1),
            delay: Duration::ZERO,
            // 10 Gbit/s for 50 ms: room for any delay a test asks for, bounded all the same.
            max_held_bytes: 64 << 20,
        }
    }
}

impl ImpairConfig {
    /// Checks that the probabilities are within 0..=1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a fraction within 0..=1, not {p}"));
            }
        }
        Ok(())
    }
}

/// What happened to the frames of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Frames handed to [`Impairer::on_frame`].
    pub received: u64,
    /// Frames lost on purpose.
    pub lost: u64,
    /// Frames that went out twice (each counts once here).
    pub duplicated: u64,
    /// Frames that went out with a bit flipped.
    pub corrupted: u64,
    /// Frames held back to be overtaken.
    pub reordered: u64,
    /// Copies dropped because the queue of held frames was full.
    pub overflow: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    // Unique and increasing: equal deadlines keep arrival order, and the frame bytes are never
    // compared.
    seq: u64,
    frame: Vec<u8>,
}

/// The impairment state of one direction: RNG, held frames, counters.
#[derive(Debug)]
pub struct Impairer {
    cfg: ImpairConfig,
    rng: Rng,
    held: BinaryHeap<Reverse<Held>>,
    held_bytes: usize,
    seq: u64,
    stats: ImpairStats,
}

impl Impairer {
    /// Impairments `cfg`, decisions drawn from an RNG seeded with `seed`.
    pub fn new(cfg: ImpairConfig, seed: u64) -> Impairer {
        Impairer {
            cfg,
            rng: Rng::new(seed),
            held: BinaryHeap::new(),
            held_bytes: 0,
            seq: 0,
            stats: ImpairStats::default(),
        }
    }

    /// Decides the fate of `frame`, received at `now` (flipping a bit of it if it is to be
    /// corrupted), and returns how many copies of it to send right away (0, 1 or 2). Copies to
    /// send later are kept; see [`Impairer::pop_due`].
    pub fn on_frame(&mut self, now: Instant, frame: &mut [u8]) -> usize {
        self.stats.received += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return 0;
        }
        if frame.len() > ETH_HEADER && self.rng.chance(self.cfg.corrupt) {
            self.stats.corrupted += 1;
            let i = ETH_HEADER + self.rng.below((frame.len() - ETH_HEADER) as u64) as usize;
            frame[i] ^= 1 << self.rng.below(8);
        }
        let copies = if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let reordered = self.rng.chance(self.cfg.reorder);
        if !reordered && self.cfg.delay.is_zero() {
            return copies;
        }
        let mut due = now + self.cfg.delay;
        if reordered {
            self.stats.reordered += 1;
            due += self.cfg.reorder_delay;
        }
        for _ in 0..copies {
            if self.held_bytes + frame.len() > self.cfg.max_held_bytes {
                self.stats.overflow += 1;
                continue;
            }
            self.held_bytes += frame.len();
            self.seq += 1;
            self.held.push(Reverse(Held { due, seq: self.seq, frame: frame.to_vec() }));
        }
        0
    }

    /// When the next held frame is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// The next held frame due at or before `now`, in due order (arrival order among equals).
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        self.held_bytes -= h.frame.len();
        Some(h.frame)
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    fn run(cfg: ImpairConfig, seed: u64, n: u32) -> (Impairer, Vec<usize>) {
        let mut imp = Impairer::new(cfg, seed);
        let now = Instant::now();
        let out = (0..n).map(|i| imp.on_frame(now, &mut frame(i))).collect();
        (imp, out)
    }

    #[test]
    fn corruption_flips_one_bit_past_the_ethernet_header() {
        let cfg = ImpairConfig { corrupt: 0.2, ..Default::default() };
        let mut imp = Impairer::new(cfg, 3);
        let now = Instant::now();
        let (mut changed, mut flipped_bits) = (0, 0);
        for _ in 0..5000 {
            let mut f = vec![0u8; 64];
            assert_eq!(imp.on_frame(now, &mut f), 1);
            assert_eq!(f[..ETH_HEADER], [0; ETH_HEADER]);
            let bits: u32 = f.iter().map(|b| b.count_ones()).sum();
            changed += u64::from(bits > 0);
            flipped_bits += bits;
        }
        assert_eq!(imp.stats().corrupted, changed);
        assert_eq!(u64::from(flipped_bits), changed, "one bit each");
        assert!((900..1100).contains(&changed), "{changed}");
    }

    #[test]
    fn unimpaired_frames_go_straight_through() {
        let (imp, out) = run(ImpairConfig::default(), 1, 1000);
        assert!(out.iter().all(|&c| c == 1));
        assert_eq!(imp.held(), 0);
        assert_eq!(imp.stats(), ImpairStats { received: 1000, ..Default::default() });
    }

    #[test]
    fn loss_and_duplication_follow_their_probabilities_and_the_seed() {
        let cfg = ImpairConfig { loss: 0.1, duplicate: 0.05, ..Default::default() };
        let (imp, out) = run(cfg.clone(), 7, 10_000);
        let s = imp.stats();
        assert!((900..1100).contains(&s.lost), "{s:?}");
        assert!((380..560).contains(&s.duplicated), "{s:?}");
        assert_eq!(out.iter().filter(|&&c| c == 0).count() as u64, s.lost);
        assert_eq!(out.iter().filter(|&&c| c == 2).count() as u64, s.duplicated);
        assert_eq!(run(cfg.clone(), 7, 10_000).1, out, "same seed, same decisions");
        assert_ne!(run(cfg, 8, 10_000).1, out, "another seed, other decisions");
    }

    #[test]
    fn reordered_frames_wait_their_delay_and_are_overtaken() {
        let cfg =
            ImpairConfig { reorder: 0.3, reorder_delay: Duration::from_millis(2), ..Default::default() };
        let mut imp = Impairer::new(cfg, 3);
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..100 {
            if imp.on_frame(t0, &mut frame(i)) == 1 {
                sent.push(i);
            }
        }
        let held = imp.held();
        assert!((15..50).contains(&held), "{held} held");
        assert_eq!(imp.stats().reordered, held as u64);
        assert_eq!(imp.next_due(), Some(t0 + Duration::from_millis(2)));
        assert_eq!(imp.pop_due(t0 + Duration::from_micros(1999)), None);
        while let Some(f) = imp.pop_due(t0 + Duration::from_millis(2)) {
            sent.push(u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
        }
        let mut sorted = sent.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "every frame exactly once");
        assert_ne!(sent, sorted, "some overtaken");
    }

    #[test]
    fn delay_keeps_order() {
        let cfg = ImpairConfig { delay: Duration::from_millis(5), ..Default::default() };
        let mut imp = Impairer::new(cfg, 1);
        let t0 = Instant::now();
        for i in 0..50 {
            assert_eq!(imp.on_frame(t0 + Duration::from_micros(u64::from(i)), &mut frame(i)), 0);
        }
        assert_eq!(imp.pop_due(t0 + Duration::from_millis(4)), None);
        let out: Vec<_> = std::iter::from_fn(|| imp.pop_due(t0 + Duration::from_millis(6))).collect();
        assert_eq!(out, (0..50).map(frame).collect::<Vec<_>>());
    }

    #[test]
    fn held_queue_is_bounded() {
        let cfg = ImpairConfig { delay: Duration::from_millis(1), max_held_bytes: 40, ..Default::default() };
        let (imp, _) = run(cfg, 1, 25);
        assert_eq!(imp.held(), 10);
        assert_eq!(imp.stats().overflow, 15);
    }

    #[test]
    fn probabilities_are_validated() {
        assert!(ImpairConfig::default().validate().is_ok());
        assert!(ImpairConfig { loss: 1.5, ..Default::default() }.validate().is_err());
        assert!(ImpairConfig { reorder: -0.1, ..Default::default() }.validate().is_err());
        assert!(ImpairConfig { duplicate: f64::NAN, ..Default::default() }.validate().is_err());
    }
}
