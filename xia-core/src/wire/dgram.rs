//! The DGRAM header (xia-v2 XDGRAM): unreliable datagrams between SIDs.
//!
//! ```text
//! +------+-------------+---------+-------------------+
//! | next | hlen (words)| 2 pad   | check (CRC32C)    |   then the datagram
//! +------+-------------+---------+-------------------+
//! ```
//! There are no ports: the endpoints are the intents (SIDs) of the XIP destination and source.
//! The prototype's header is the first word alone (`hlen` 1); the check, filled in once the
//! whole packet is written ([`super::integrity`]), makes it two.

use super::{need, room, Result, WireError};

/// Header length this implementation emits (with the check).
pub const HEADER_LEN: usize = 8;
/// The shortest header: the prototype's first word.
pub const MIN_HEADER_LEN: usize = 4;

/// A view of a DGRAM packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed header and the header length field.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, MIN_HEADER_LEN)?;
        let h = self.header_len();
        if h < MIN_HEADER_LEN {
            return Err(WireError::HeaderLength(h));
        }
        need(b, h)
    }

    /// Next header inside the datagram (0: data).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[1]) * 4
    }

    /// The datagram.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The datagram, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// The parsed meaning of a DGRAM packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DgramRepr<'a> {
    /// The datagram.
    pub payload: &'a [u8],
}

impl<'a> DgramRepr<'a> {
    /// Reads a packet. Header extensions and next headers other than data are not defined for
    /// DGRAM, so they are refused rather than skipped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<DgramRepr<'a>> {
        p.check_len()?;
        let b: &'a [u8] = p.buffer.as_ref();
        if p.header_len() != HEADER_LEN {
            return Err(WireError::HeaderLength(p.header_len()));
        }
        if p.next_header() != 0 || b[2..4] != [0, 0] {
            return Err(WireError::Field("DGRAM next header or padding"));
        }
        Ok(DgramRepr { payload: &b[p.header_len()..] })
    }

    /// Header plus datagram.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and datagram into `buf[..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        room(buf, self.buffer_len())?;
        // The check is zero until the packet is sealed.
        buf[..HEADER_LEN].copy_from_slice(&[0, (HEADER_LEN / 4) as u8, 0, 0, 0, 0, 0, 0]);
        buf[HEADER_LEN..self.buffer_len()].copy_from_slice(self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PKT: [u8; 11] = [0, 2, 0, 0, 0xA1, 0xB2, 0xC3, 0xD4, b'h', b'i', b'!'];

    #[test]
    fn test_parse_and_emit() {
        let p = Packet::new_checked(&PKT[..]).unwrap();
        assert_eq!(p.next_header(), 0);
        assert_eq!(p.header_len(), 8);
        let r = DgramRepr::parse(&p).unwrap();
        assert_eq!(r.payload, b"hi!");
        let mut buf = [0xEEu8; 11];
        r.emit(&mut buf).unwrap();
        assert_eq!(buf[..4], PKT[..4]);
        assert_eq!(buf[4..8], [0; 4], "the check is left for sealing");
        assert_eq!(buf[8..], PKT[8..]);
    }

    #[test]
    fn test_impossible_len() {
        assert_eq!(Packet::new_checked(&PKT[..3]).unwrap_err(), WireError::Truncated { need: 4, have: 3 });
        let zero = [0u8, 0, 0, 0];
        assert_eq!(Packet::new_checked(&zero[..]).unwrap_err(), WireError::HeaderLength(0));
        let long = [0u8, 3, 0, 0, 1, 2];
        assert_eq!(Packet::new_checked(&long[..]).unwrap_err(), WireError::Truncated { need: 12, have: 6 });
    }

    #[test]
    fn undefined_header_fields_are_refused() {
        // The prototype's one-word header: no check, refused.
        let p = [0u8, 1, 0, 0, b'x'];
        assert_eq!(
            DgramRepr::parse(&Packet::new_checked(&p[..]).unwrap()).unwrap_err(),
            WireError::HeaderLength(4)
        );
        let p = [1u8, 2, 0, 0, 0, 0, 0, 0, b'x'];
        assert!(matches!(DgramRepr::parse(&Packet::new_checked(&p[..]).unwrap()), Err(WireError::Field(_))));
    }
}
