//! The guest workload of the migration tests and benchmarks (`guest-load`), its flags, and the
//! memory pattern it writes.
//!
//! A migration is only worth measuring if something can tell that the guest arrived intact and
//! kept running. `guest-load` makes that visible on the serial console: a counter line every
//! `tick_ms` (`tick <n>`: after a migration the destination's log must continue the source's
//! count, no gap, no repeat), and a checksum of a memory region filled with a seeded
//! pseudo-random pattern (`sum <hex>`, at start and every `sum_secs`, recomputed each time: the
//! destination must print the source's value). For benchmarks an optional "dirtier" rewrites
//! 1 MiB of a second region every `dirty_every_ms`, so that the migration has pages to send
//! again, as a busy guest would.
//!
//! The flags are formatted by the host side ([`LoadArgs::to_args`], for the guest image's init)
//! and parsed by the guest side ([`LoadArgs::parse`]) from this one definition, so the two cannot
//! drift apart. No clap: the binary runs in a guest under TCG, where every page of code costs.

use std::fmt;

/// How many bytes one MiB is.
pub const MIB: usize = 1 << 20;

/// The workload's settings, as `guest-load` takes them on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadArgs {
    /// Size of the region filled once and checksummed (`--fill-mib`).
    pub fill_mib: u32,
    /// Interval between `tick <n>` lines (`--tick-ms`).
    pub tick_ms: u32,
    /// Interval between checksums of the filled region (`--sum-secs`).
    pub sum_secs: u32,
    /// Size of the region the dirtier rewrites; 0 turns it off (`--dirty-mib`).
    pub dirty_mib: u32,
    /// Interval between two 1 MiB rewrites of the dirtier (`--dirty-every-ms`).
    pub dirty_every_ms: u32,
    /// Seed of the fill pattern (`--seed`).
    pub seed: u64,
}

impl Default for LoadArgs {
    /// 32 MiB filled, a tick every 100 ms, a checksum every 5 s, no dirtier.
    fn default() -> Self {
        LoadArgs { fill_mib: 32, tick_ms: 100, sum_secs: 5, dirty_mib: 0, dirty_every_ms: 10, seed: 1 }
    }
}

/// A flag `guest-load` does not understand, or a value it cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("guest-load: {0}")]
pub struct LoadArgsError(pub String);

impl LoadArgs {
    /// The benchmark workload, for a 512 MiB guest: 1 MiB of a 256 MiB region rewritten every
    /// 10 ms, and 128 MiB filled and checked (384 MiB in all). The kernel and the initramfs keep
    /// the rest: a 512 MiB guest has about 440 MiB free for its program, a 128 MiB one about 65.
    pub fn benchmark() -> Self {
        LoadArgs { fill_mib: 128, dirty_mib: 256, dirty_every_ms: 10, ..LoadArgs::default() }
    }

    /// The command-line flags, every one spelled out (the image's cache key covers them).
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--fill-mib".into(),
            self.fill_mib.to_string(),
            "--tick-ms".into(),
            self.tick_ms.to_string(),
            "--sum-secs".into(),
            self.sum_secs.to_string(),
            "--dirty-mib".into(),
            self.dirty_mib.to_string(),
            "--dirty-every-ms".into(),
            self.dirty_every_ms.to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ]
    }

    /// Parses flags as [`LoadArgs::to_args`] writes them; missing ones keep their defaults.
    pub fn parse<I, S>(args: I) -> Result<LoadArgs, LoadArgsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = LoadArgs::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let flag = flag.as_ref().to_string();
            let value = it.next().ok_or_else(|| LoadArgsError(format!("{flag} needs a value")))?;
            let value = value.as_ref();
            let num = |v: &str| -> Result<u64, LoadArgsError> {
                v.parse().map_err(|_| LoadArgsError(format!("{flag}: {v:?} is not a number")))
            };
            let small = |v: &str| -> Result<u32, LoadArgsError> {
                u32::try_from(num(v)?).map_err(|_| LoadArgsError(format!("{flag}: {v} is too large")))
            };
            match flag.as_str() {
                "--fill-mib" => out.fill_mib = small(value)?,
                "--tick-ms" => out.tick_ms = small(value)?,
                "--sum-secs" => out.sum_secs = small(value)?,
                "--dirty-mib" => out.dirty_mib = small(value)?,
                "--dirty-every-ms" => out.dirty_every_ms = small(value)?,
                "--seed" => out.seed = num(value)?,
                _ => return Err(LoadArgsError(format!("unknown flag {flag}"))),
            }
        }
        if out.tick_ms == 0 || out.sum_secs == 0 || out.dirty_every_ms == 0 {
            return Err(LoadArgsError("intervals must be at least 1".into()));
        }
        Ok(out)
    }
}

impl fmt::Display for LoadArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_args().join(" "))
    }
}

/// xorshift64*: fast, seedable, good enough to make pages that do not compress or deduplicate
/// (QEMU sends a page of one repeated byte as a few bytes, which would flatter a migration).
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Prng {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams and 0 is not stuck.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Prng((z ^ (z >> 31)) | 1)
    }

    /// The next word.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Overwrites `words` with the next words of the stream.
    pub fn fill(&mut self, words: &mut [u64]) {
        for w in words {
            *w = self.next_u64();
        }
    }
}

/// A checksum of `words` that depends on every bit and on the order of the words (four lanes,
/// so it runs at memory speed even under TCG, then mixed into one value).
pub fn checksum(words: &[u64]) -> u64 {
    const K: [u64; 4] =
        [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x27D4_EB2F_1656_67C5];
    let mut lanes = [1u64, 2, 3, 4];
    let mut chunks = words.chunks_exact(4);
    for c in &mut chunks {
        for i in 0..4 {
            lanes[i] = (lanes[i] ^ c[i]).wrapping_mul(K[i]).rotate_left(31);
        }
    }
    for (i, w) in chunks.remainder().iter().enumerate() {
        lanes[i] = (lanes[i] ^ w).wrapping_mul(K[i]).rotate_left(31);
    }
    let mut h = words.len() as u64;
    for (i, l) in lanes.iter().enumerate() {
        h = (h ^ l).wrapping_mul(K[(i + 1) % 4]).rotate_left(27);
    }
    h ^ (h >> 29)
}

/// The parts of a `guest-load` serial line that tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadLine {
    /// `tick <n>`.
    Tick(u64),
    /// `sum <hex>` (a correct checksum: a mismatch is printed as `sum-bad ...`).
    Sum(u64),
}

impl LoadLine {
    /// Parses one serial line (trailing `\r` and spaces ignored); `None` for other lines.
    pub fn parse(line: &str) -> Option<LoadLine> {
        let mut words = line.split_whitespace();
        let (kind, value) = (words.next()?, words.next()?);
        if words.next().is_some() {
            return None;
        }
        match kind {
            "tick" => value.parse().ok().map(LoadLine::Tick),
            "sum" => u64::from_str_radix(value, 16).ok().map(LoadLine::Sum),
            _ => None,
        }
    }
}

/// The `tick` numbers in a guest's console text, in order.
pub fn ticks(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|l| match LoadLine::parse(l) {
            Some(LoadLine::Tick(n)) => Some(n),
            _ => None,
        })
        .collect()
}

/// The `sum` values in a guest's console text, in order.
pub fn sums(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|l| match LoadLine::parse(l) {
            Some(LoadLine::Sum(s)) => Some(s),
            _ => None,
        })
        .collect()
}

/// What the consoles of a migrated guest show: the source's last tick, the destination's
/// first, the checksum every `sum` line gave, and how many the destination printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation {
    /// The last tick printed on the source.
    pub last_source_tick: u64,
    /// The first tick printed on the destination.
    pub first_destination_tick: u64,
    /// The checksum of the filled region (every `sum` line, both sides).
    pub sum: u64,
    /// `sum` lines printed on the destination so far.
    pub destination_sums: usize,
}

/// Checks that the destination's console (`dst`) continues the source's (`src`): one tick
/// count across both, without a gap or a repeat (even when the stop fell inside a line), every
/// checksum equal, no `sum-bad` and no kernel panic on the destination. The error says what
/// broke, with the end of the source's console and the destination's.
pub fn check_continuation(src: &str, dst: &str) -> Result<Continuation, String> {
    let context = || {
        let l: Vec<&str> = src.lines().collect();
        format!("source ...\n{}\n--- destination\n{dst}", l[l.len().saturating_sub(5)..].join("\n"))
    };
    if dst.contains("sum-bad") || dst.contains("Kernel panic") {
        return Err(format!("the guest came up broken: {}", context()));
    }
    // The stop may fall inside a line: the source's unfinished last line ends on the
    // destination, so it counts only in the two joined.
    let src_done = &src[..src.rfind('\n').map_or(0, |i| i + 1)];
    let (src_ticks, dst_ticks) = (ticks(src_done), ticks(dst));
    let (Some(&last_source_tick), Some(&first_destination_tick)) = (src_ticks.last(), dst_ticks.first())
    else {
        return Err(format!("no tick on one side: {}", context()));
    };
    let all = ticks(&format!("{src}{dst}"));
    if all.iter().enumerate().any(|(i, &t)| t != i as u64 + 1) {
        return Err(format!("the tick count broke across the migration: {}", context()));
    }
    let (s, d) = (sums(src_done), sums(dst));
    let joined = sums(&format!("{src}{dst}"));
    let Some(&sum) = joined.first() else {
        return Err(format!("no checksum on either side: {}", context()));
    };
    if joined.iter().any(|&x| x != sum) {
        return Err(format!("checksums differ: source {s:x?}, destination {d:x?}"));
    }
    Ok(Continuation { last_source_tick, first_destination_tick, sum, destination_sums: d.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let a = LoadArgs { fill_mib: 7, tick_ms: 9, sum_secs: 2, dirty_mib: 3, dirty_every_ms: 4, seed: 99 };
        assert_eq!(LoadArgs::parse(a.to_args()).unwrap(), a);
        assert_eq!(LoadArgs::parse(Vec::<String>::new()).unwrap(), LoadArgs::default());
        assert!(LoadArgs::parse(["--fill-mib"]).is_err());
        assert!(LoadArgs::parse(["--bogus", "1"]).is_err());
        assert!(LoadArgs::parse(["--tick-ms", "0"]).is_err());
        assert!(LoadArgs::parse(["--tick-ms", "x"]).is_err());
    }

    #[test]
    fn pattern_and_checksum_are_deterministic_and_sensitive() {
        let mut a = vec![0u64; 1000];
        let mut b = vec![0u64; 1000];
        Prng::new(5).fill(&mut a);
        Prng::new(5).fill(&mut b);
        assert_eq!(a, b);
        assert_eq!(checksum(&a), checksum(&b));
        b[999] ^= 1 << 40;
        assert_ne!(checksum(&a), checksum(&b));
        b[999] ^= 1 << 40;
        b.swap(0, 1);
        assert_ne!(checksum(&a), checksum(&b));
        let mut c = vec![0u64; 1000];
        Prng::new(6).fill(&mut c);
        assert_ne!(a, c);
        assert_ne!(Prng::new(0).next_u64(), 0);
    }

    #[test]
    fn serial_lines_parse() {
        assert_eq!(LoadLine::parse("tick 42\r"), Some(LoadLine::Tick(42)));
        assert_eq!(LoadLine::parse("sum 00ff"), Some(LoadLine::Sum(255)));
        assert_eq!(LoadLine::parse("sum-bad 00ff expected 0001"), None);
        assert_eq!(LoadLine::parse("tick 4 2"), None);
        assert_eq!(LoadLine::parse("ti"), None);
        assert_eq!(LoadLine::parse("2"), None);
    }

    #[test]
    fn a_continued_console_passes_and_a_broken_one_says_why() {
        let src = "boot\ntick 1\nsum 00ab\ntick 2\nti";
        let dst = "ck 3\ntick 4\nsum ab\n";
        // The stop fell inside `tick 3`: joined, the count goes on.
        let c = check_continuation(src, dst).unwrap();
        assert_eq!(
            c,
            Continuation { last_source_tick: 2, first_destination_tick: 4, sum: 0xab, destination_sums: 1 }
        );
        let src = "tick 1\nsum ab\ntick 2\n";
        assert!(check_continuation(src, "tick 5\n").unwrap_err().contains("tick count"));
        assert!(check_continuation(src, "tick 3\ntick 3\n").unwrap_err().contains("tick count"));
        assert!(check_continuation(src, "tick 3\nsum ac\n").unwrap_err().contains("checksums differ"));
        assert!(check_continuation(src, "tick 3\nsum-bad 1 2\n").unwrap_err().contains("broken"));
        assert!(check_continuation(src, "").unwrap_err().contains("no tick"));
        // The stop fell inside a `sum` line (or a tick's digits): its start is no checksum and
        // no tick of its own.
        let src = "tick 1\nsum 00ab\ntick 2\nsum 00";
        let c = check_continuation(src, "ab\ntick 3\n").unwrap();
        assert_eq!((c.sum, c.destination_sums), (0xab, 0));
        let c = check_continuation("tick 1\nsum 1\ntick 2\ntick", " 3\ntick 4\n").unwrap();
        assert_eq!(c.last_source_tick, 2);
    }
}
