//! Faulting in the chunk cache's memory while the router is idle.
//!
//! The cache fills with chunks copied out of the responses passing through. Memory the process
//! has never touched costs a page fault per 4 KiB page on first write (and, in a virtual
//! machine, often a fault in the hypervisor too): a cache filling for the first time made a
//! CHUNK transfer through the router 0.55-0.67x as fast as one through a router whose cache
//! memory had been used before. So at start, and when the cache grows, the daemon allocates
//! the cache's size from the heap a block at a time, whenever a turn of its loop finds nothing
//! to do, asks for transparent huge pages on it, writes a byte in every page, and frees it all
//! at the end. The allocator keeps freed memory (the warm-up raises its trim threshold above the
//! cache's size, and has blocks and chunks below 64 MiB come from the heap), so the chunks the
//! cache later allocates land in memory that is already there. Up to [`MAX_WARMUP`].

/// Bytes faulted in per idle turn: a few milliseconds of work at most.
const BLOCK: usize = 4 << 20;
const PAGE: usize = 4096;

/// The warm-up: the blocks being faulted in, held until all of them are.
#[derive(Debug, Default)]
pub struct Warmup {
    target: usize,
    /// The blocks of the warm-up under way, and how many of them are touched.
    held: Vec<Vec<u8>>,
    touched: usize,
    /// The largest size faulted in so far (a cache shrinking and growing back needs nothing).
    warmed: usize,
}

impl Warmup {
    /// A warm-up of `bytes` (none for 0).
    pub fn new(bytes: usize) -> Warmup {
        let mut w = Warmup::default();
        w.grow_to(bytes);
        w
    }

    /// The cache now holds up to `bytes`: fault in what was never faulted in.
    pub fn grow_to(&mut self, bytes: usize) {
        let bytes = bytes.min(MAX_WARMUP);
        if bytes > self.target {
            keep_freed_heap(bytes);
            self.target = bytes;
        }
    }

    /// Bytes faulted in so far (by whole warm-ups).
    pub fn warmed(&self) -> usize {
        self.warmed
    }

    /// True while there is memory left to fault in.
    pub fn pending(&self) -> bool {
        self.target > self.warmed
    }

    /// Faults in one more block; frees everything once the target is reached.
    pub fn step(&mut self) {
        if !self.pending() {
            return;
        }
        if self.held.is_empty() {
            // Every block at once (taking address space only), so that one piece of advice
            // covers them all, unbroken by the allocator's headers between them.
            let mut left = self.target;
            while left > 0 {
                let n = BLOCK.min(left);
                self.held.push(Vec::with_capacity(n));
                left -= n;
            }
            let lo = self.held.iter().map(|b| b.as_ptr() as usize).min().unwrap_or(0);
            let hi = self.held.iter().map(|b| b.as_ptr() as usize + b.capacity()).max().unwrap_or(0);
            advise_huge(lo, hi);
        }
        let b = &mut self.held[self.touched];
        let spare = b.spare_capacity_mut();
        for i in (0..spare.len()).step_by(PAGE) {
            spare[i].write(0);
        }
        // Keeps the writes (in practice; losing them would cost speed, never correctness): the
        // block is never read, and freeing it unread could let them go.
        std::hint::black_box(b);
        self.touched += 1;
        if self.touched == self.held.len() {
            // What these blocks cover (the target may have grown since: more to do then).
            self.warmed = self.held.iter().map(Vec::capacity).sum();
            self.held = Vec::new();
            self.touched = 0;
            tracing::debug!("chunk cache memory faulted in: {} MiB", self.warmed >> 20);
        }
    }
}

/// Asks for transparent huge pages on the whole 2 MiB pages of `[lo, hi)`, the span of the
/// warm-up's blocks (contiguous in the heap; were they not, the span could take in other
/// mappings of the process, which the advice would only make eligible for huge pages too):
/// fewer faults, and a TLB entry per 2 MiB of cached chunks. Ignored where THP is off.
fn advise_huge(lo: usize, hi: usize) {
    const HUGE: usize = 2 << 20;
    let start = lo.next_multiple_of(HUGE);
    let end = hi & !(HUGE - 1);
    if end > start {
        // SAFETY: MADV_HUGEPAGE changes how memory is backed, never its contents; an unmapped
        // hole in the range is skipped by the kernel (ENOMEM, ignored).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// The most a warm-up faults in: the allocator's thresholds are `int`s, and the freed heap
/// must stay under its trim threshold (larger caches are warmed this far, the rest faults in
/// as it fills).
pub const MAX_WARMUP: usize = 1536 << 20;

/// Makes the allocator serve the cache's chunks from the heap (not from a mapping each, given
/// back when freed) and keep at least `bytes` of freed heap instead of returning it.
fn keep_freed_heap(bytes: usize) {
    let t = bytes.saturating_add(64 << 20).clamp(512 << 20, i32::MAX as usize);
    // SAFETY: mallopt only tunes glibc's allocator; it takes the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, t as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_to_the_target_once_then_only_growth() {
        let mut w = Warmup::new(10 << 20);
        let mut steps = 0;
        while w.pending() {
            w.step();
            steps += 1;
        }
        assert_eq!(steps, 3);
        assert!(w.held.is_empty());
        w.grow_to(6 << 20);
        assert!(!w.pending());
        w.grow_to(12 << 20);
        assert!(w.pending());
        w.step();
        w.step();
        assert!(w.pending());
        w.step();
        assert!(!w.pending());
        assert!(!Warmup::new(0).pending());
    }
}
