//! `guest-load`: the workload that runs inside the test guest (see `qemu_hooks::load`).
//!
//! Fills a region with a seeded pattern, then prints on stdout (the serial console) `tick <n>`
//! every `--tick-ms` and `sum <hex>` (the region's checksum, recomputed) at start and every
//! `--sum-secs`; a checksum that differs from the first is printed as `sum-bad <hex> expected
//! <hex>`. With `--dirty-mib M`, a second thread rewrites 1 MiB of an M MiB region every
//! `--dirty-every-ms`.
//!
//! Built statically (`-C target-feature=+crt-static`): the guest's initramfs has no shared
//! libraries.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use qemu_hooks::load::{checksum, LoadArgs, Prng, MIB};

/// A zeroed region of `mib` MiB, or an error saying how much could not be had.
fn region(mib: u32, what: &str) -> Result<Vec<u64>, String> {
    let words = mib as usize * (MIB / 8);
    let mut v = Vec::new();
    v.try_reserve_exact(words)
        .map_err(|_| format!("guest-load: cannot allocate {mib} MiB for the {what}"))?;
    v.resize(words, 0);
    Ok(v)
}

/// Rewrites 1 MiB of `words` every `every`, round the region, forever.
fn dirty(mut words: Vec<u64>, every: Duration, seed: u64) {
    let mut rng = Prng::new(seed ^ 0xD1D1_D1D1);
    let per = MIB / 8;
    let mut at = 0;
    let mut next = Instant::now() + every;
    loop {
        let end = (at + per).min(words.len());
        rng.fill(&mut words[at..end]);
        at = if end == words.len() { 0 } else { end };
        let now = Instant::now();
        next = if next + every > now { next + every } else { now + every };
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn main() -> ExitCode {
    let args = match LoadArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!("guest-load {args}");

    let mut fill = match region(args.fill_mib, "filled region") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    Prng::new(args.seed).fill(&mut fill);
    let expected = checksum(&fill);

    if args.dirty_mib > 0 {
        let mut words = match region(args.dirty_mib, "dirtied region") {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        // Touched once in full, so the region is resident before the first migration round.
        Prng::new(!args.seed).fill(&mut words);
        let every = Duration::from_millis(u64::from(args.dirty_every_ms));
        let seed = args.seed;
        thread::spawn(move || dirty(words, every, seed));
        println!("dirty {} MiB, 1 MiB every {} ms", args.dirty_mib, args.dirty_every_ms);
    }
    println!("sum {expected:016x}");

    let tick = Duration::from_millis(u64::from(args.tick_ms));
    let sum_every = Duration::from_secs(u64::from(args.sum_secs));
    let start = Instant::now();
    let (mut next_tick, mut next_sum) = (start + tick, start + sum_every);
    let mut n: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= next_sum {
            let sum = checksum(&fill);
            if sum == expected {
                println!("sum {sum:016x}");
            } else {
                println!("sum-bad {sum:016x} expected {expected:016x}");
            }
            next_sum = (next_sum + sum_every).max(now);
        }
        if now >= next_tick {
            n += 1;
            println!("tick {n}");
            // Late (a paused VM, a slow checksum): no burst of catch-up ticks, the count goes on.
            next_tick = (next_tick + tick).max(now);
        }
        let wake = next_tick.min(next_sum);
        thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
}
