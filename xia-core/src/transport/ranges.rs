//! A bounded set of disjoint byte ranges: received-out-of-order data, SACKed data, chunk pieces.

/// Sorted, disjoint, non-adjacent half-open ranges `[start, end)`, at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
    limit: usize,
}

impl RangeSet {
    /// An empty set holding at most `limit` separate ranges.
    pub fn new(limit: usize) -> RangeSet {
        RangeSet { ranges: Vec::new(), limit: limit.max(1) }
    }

    /// Adds `[start, end)`, merging with neighbours. Returns false (and changes nothing) when the
    /// range would need a new entry beyond the limit: the caller drops that data, the sender
    /// will send it again.
    pub fn insert(&mut self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        // First range whose end reaches `start` (could merge), and first whose start is past `end`.
        let lo = self.ranges.partition_point(|r| r.1 < start);
        let hi = self.ranges.partition_point(|r| r.0 <= end);
        if lo == hi {
            if self.ranges.len() >= self.limit {
                return false;
            }
            self.ranges.insert(lo, (start, end));
            return true;
        }
        let s = start.min(self.ranges[lo].0);
        let e = end.max(self.ranges[hi - 1].1);
        self.ranges.drain(lo + 1..hi);
        self.ranges[lo] = (s, e);
        true
    }

    /// Forgets everything below `at` (cutting a range that spans it).
    pub fn remove_below(&mut self, at: u64) {
        let k = self.ranges.partition_point(|r| r.1 <= at);
        self.ranges.drain(..k);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(at);
        }
    }

    /// True when every byte of `[start, end)` is in the set.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let i = self.ranges.partition_point(|r| r.1 < end);
        self.ranges.get(i).is_some_and(|r| r.0 <= start && r.1 >= end)
    }

    /// The range containing `at`, if any.
    pub fn range_at(&self, at: u64) -> Option<(u64, u64)> {
        let i = self.ranges.partition_point(|r| r.1 <= at);
        self.ranges.get(i).copied().filter(|r| r.0 <= at)
    }

    /// The lowest range.
    pub fn first(&self) -> Option<(u64, u64)> {
        self.ranges.first().copied()
    }

    /// The highest byte covered, plus one.
    pub fn end(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.1)
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().copied()
    }

    /// The gaps of `[start, end)` not in the set, in order.
    pub fn gaps(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut at = start;
        let mut it = self.ranges.iter().copied().skip_while(move |r| r.1 <= start).peekable();
        std::iter::from_fn(move || loop {
            if at >= end {
                return None;
            }
            match it.peek().copied() {
                Some((s, e)) if s <= at => {
                    at = at.max(e);
                    it.next();
                }
                Some((s, _)) => {
                    let gap = (at, s.min(end));
                    at = s;
                    return Some(gap);
                }
                None => {
                    let gap = (at, end);
                    at = end;
                    return Some(gap);
                }
            }
        })
    }

    /// Number of separate ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes covered.
    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 - r.0).sum()
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.ranges.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_limit() {
        let mut s = RangeSet::new(3);
        assert!(s.insert(10, 20));
        assert!(s.insert(30, 40));
        assert!(s.insert(50, 60));
        assert!(!s.insert(70, 80), "a fourth range is refused");
        assert!(s.insert(20, 30), "adjacent ranges merge even at the limit");
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(10, 40), (50, 60)]);
        assert!(s.insert(0, 100));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(0, 100)]);
        assert!(s.contains(5, 95));
        assert!(!s.contains(5, 105));
    }

    #[test]
    fn remove_below_cuts() {
        let mut s = RangeSet::new(8);
        s.insert(10, 20);
        s.insert(30, 40);
        s.remove_below(15);
        assert_eq!(s.first(), Some((15, 20)));
        s.remove_below(35);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(35, 40)]);
        assert_eq!(s.range_at(36), Some((35, 40)));
        assert_eq!(s.range_at(40), None);
    }

    #[test]
    fn gaps() {
        let mut s = RangeSet::new(8);
        s.insert(10, 20);
        s.insert(30, 40);
        assert_eq!(s.gaps(0, 50).collect::<Vec<_>>(), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(s.gaps(15, 35).collect::<Vec<_>>(), vec![(20, 30)]);
        assert_eq!(s.gaps(10, 20).count(), 0);
        assert_eq!(s.covered(), 20);
    }

    #[test]
    fn random_inserts_match_a_bitmap() {
        let mut s = RangeSet::new(usize::MAX);
        let mut bits = [false; 200];
        let mut x: u64 = 0x1234_5678;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = x % 190;
            let b = a + 1 + (x >> 20) % 10;
            s.insert(a, b);
            for bit in &mut bits[a as usize..b as usize] {
                *bit = true;
            }
            let mut expect = Vec::new();
            let mut i = 0;
            while i < 200 {
                if bits[i] {
                    let st = i;
                    while i < 200 && bits[i] {
                        i += 1;
                    }
                    expect.push((st as u64, i as u64));
                } else {
                    i += 1;
                }
            }
            assert_eq!(s.iter().collect::<Vec<_>>(), expect);
        }
    }
}
