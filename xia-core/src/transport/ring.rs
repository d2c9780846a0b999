//! A circular byte buffer addressed by absolute stream offsets: the send buffer (bytes from
//! the oldest unacknowledged one) and the receive buffer (bytes from the next one the
//! application reads, out-of-order data written in place).

/// Bytes at absolute offsets `[base, base + capacity)`; the owner tracks which are valid.
///
/// The memory is taken on the first write: a connection that never carries data (a half-open
/// one, say) costs nothing.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    cap: usize,
    base: u64,
    start: usize,
}

impl Ring {
    /// A ring of `capacity` bytes whose first byte has absolute offset `base`.
    pub fn new(capacity: usize, base: u64) -> Ring {
        Ring { buf: Box::default(), cap: capacity.max(1), base, start: 0 }
    }

    /// Size in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn allocate(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0u8; self.cap].into_boxed_slice();
        }
    }

    /// Absolute offset of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    fn index(&self, abs: u64) -> usize {
        debug_assert!(abs >= self.base && abs - self.base <= self.cap as u64);
        let off = (abs - self.base) as usize;
        let i = self.start + off;
        if i >= self.cap {
            i - self.cap
        } else {
            i
        }
    }

    /// The bytes `[abs, abs + len)` as at most two slices. The range must lie within the ring.
    pub fn slices(&self, abs: u64, len: usize) -> (&[u8], &[u8]) {
        assert!(abs >= self.base && (abs - self.base) as usize + len <= self.cap, "range outside ring");
        if len == 0 {
            return (&[], &[]);
        }
        let i = self.index(abs);
        let first = len.min(self.buf.len() - i);
        (&self.buf[i..i + first], &self.buf[..len - first])
    }

    /// The bytes `[abs, abs + len)` as at most two writable slices.
    pub fn slices_mut(&mut self, abs: u64, len: usize) -> (&mut [u8], &mut [u8]) {
        assert!(abs >= self.base && (abs - self.base) as usize + len <= self.cap, "range outside ring");
        if len == 0 {
            return (&mut [], &mut []);
        }
        self.allocate();
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
            abs >= self.base && (abs - self.base) as usize + data.len() <= self.cap,
            "range outside ring"
        );
        if data.is_empty() {
            return;
        }
        self.allocate();
        let i = self.index(abs);
        let first = data.len().min(self.buf.len() - i);
        self.buf[i..i + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Moves the window forward by `n` bytes (they are consumed).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.cap);
        self.base += n as u64;
        let i = self.start + n;
        self.start = if i >= self.cap { i - self.cap } else { i };
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
