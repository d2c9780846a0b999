//! A circular byte buffer addressed by absolute stream offsets: the send buffer (bytes from
//! the oldest unacknowledged one) and the receive buffer (bytes from the next one the
//! application reads, out-of-order data written in place).

/// Bytes at absolute offsets `[base, base + capacity)`; the owner tracks which are valid.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    base: u64,
    start: usize,
}

impl Ring {
    /// A ring of `capacity` bytes whose first byte has absolute offset `base`.
    pub fn new(capacity: usize, base: u64) -> Ring {
        Ring { buf: vec![0u8; capacity.max(1)].into_boxed_slice(), base, start: 0 }
    }

    /// Size in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Absolute offset of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    fn index(&self, abs: u64) -> usize {
        debug_assert!(abs >= self.base && abs - self.base <= self.buf.len() as u64);
        let off = (abs - self.base) as usize;
        let i = self.start + off;
        if i >= self.buf.len() {
            i - self.buf.len()
        } else {
            i
        }
    }

    /// The bytes `[abs, abs + len)` as at most two slices. The range must lie within the ring.
    pub fn slices(&self, abs: u64, len: usize) -> (&[u8], &[u8]) {
        assert!(abs >= self.base && (abs - self.base) as usize + len <= self.buf.len(), "range outside ring");
        let i = self.index(abs);
        let first = len.min(self.buf.len() - i);
        (&self.buf[i..i + first], &self.buf[..len - first])
    }

    /// The bytes `[abs, abs + len)` as at most two writable slices.
    pub fn slices_mut(&mut self, abs: u64, len: usize) -> (&mut [u8], &mut [u8]) {
        assert!(abs >= self.base && (abs - self.base) as usize + len <= self.buf.len(), "range outside ring");
        let i = self.index(abs);
        let first = len.min(self.buf.len() - i);
        let (head, tail) = self.buf.split_at_mut(i);
        (&mut tail[..first], &mut head[..len - first])
    }

    /// Copies `[abs, abs + out.len())` into `out`.
    pub fn read_at(&self, abs: u64, out: &mut [u8]) {
        let (a, b) = self.slices(abs, out.len());
        out[..a.len()].copy_from_slice(a);
        out[a.len()..].copy_from_slice(b);
    }

    /// Writes `data` at `[abs, abs + data.len())`. The range must lie within the ring.
    pub fn write_at(&mut self, abs: u64, data: &[u8]) {
        assert!(
            abs >= self.base && (abs - self.base) as usize + data.len() <= self.buf.len(),
            "range outside ring"
        );
        let i = self.index(abs);
        let first = data.len().min(self.buf.len() - i);
        self.buf[i..i + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Moves the window forward by `n` bytes (they are consumed).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.buf.len());
        self.base += n as u64;
        self.start = self.index_after(n);
    }

    fn index_after(&self, n: usize) -> usize {
        let i = self.start + n;
        if i >= self.buf.len() {
            i - self.buf.len()
        } else {
            i
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around() {
        let mut r = Ring::new(8, 100);
        r.write_at(100, b"abcdef");
        r.advance(5);
        assert_eq!(r.base(), 105);
        r.write_at(106, b"ghijkl");
        let mut out = [0u8; 7];
        r.read_at(105, &mut out);
        assert_eq!(&out, b"fghijkl");
        let (a, b) = r.slices(105, 7);
        assert_eq!([a, b].concat(), b"fghijkl");
        assert!(!b.is_empty(), "the range wraps");
    }

    #[test]
    #[should_panic]
    fn refuses_writes_beyond_capacity() {
        let mut r = Ring::new(8, 0);
        r.write_at(4, b"abcdefgh");
    }
}
