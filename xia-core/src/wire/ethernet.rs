//! Ethernet II framing. XIP rides on ethertype 0xC0DE.

use std::fmt;
use std::str::FromStr;

use super::{need, room, Result};

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for group addresses (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for individual addresses other than all zeros.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A MAC address that is not six `:`-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address")]
pub struct BadMac(pub String);

impl FromStr for EthernetAddress {
    type Err = BadMac;
    fn from_str(s: &str) -> std::result::Result<Self, BadMac> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(|| BadMac(s.into()))?;
            if !crate::xid::decode_hex(p, std::slice::from_mut(b)) {
                return Err(BadMac(s.into()));
            }
        }
        if parts.next().is_some() {
            return Err(BadMac(s.into()));
        }
        Ok(EthernetAddress(out))
    }
}

/// Ethertypes this stack meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// XIP, 0xC0DE.
    Xip,
    /// XARP (neighbour resolution for XIDs), 0x9990 as in the prototype.
    Xarp,
    /// RARP, 0x8035: QEMU's post-migration announcement.
    Rarp,
    /// IPv4, 0x0800.
    Ipv4,
    /// ARP, 0x0806.
    Arp,
    /// Anything else.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0xC0DE => EtherType::Xip,
            0x9990 => EtherType::Xarp,
            0x8035 => EtherType::Rarp,
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        match v {
            EtherType::Xip => 0xC0DE,
            EtherType::Xarp => 0x9990,
            EtherType::Rarp => 0x8035,
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Unknown(other) => other,
        }
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after [`Frame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Frame::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the header fits.
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref(), HEADER_LEN)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        EthernetAddress(a)
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        EthernetAddress(a)
    }

    /// Ethertype.
    pub fn ethertype(&self) -> EtherType {
        super::be16(self.buffer.as_ref(), field::ETHERTYPE.start).into()
    }

    /// Bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0)
    }

    /// Sets the ethertype.
    pub fn set_ethertype(&mut self, t: EtherType) {
        super::put16(self.buffer.as_mut(), field::ETHERTYPE.start, t.into())
    }

    /// Bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The parsed meaning of an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source address.
    pub src: EthernetAddress,
    /// Destination address.
    pub dst: EthernetAddress,
    /// Ethertype.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(f: &Frame<T>) -> Result<EthernetRepr> {
        f.check_len()?;
        Ok(EthernetRepr { src: f.src_addr(), dst: f.dst_addr(), ethertype: f.ethertype() })
    }

    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first bytes of `f`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, f: &mut Frame<T>) -> Result<()> {
        room(f.buffer.as_ref(), HEADER_LEN)?;
        f.set_dst_addr(self.dst);
        f.set_src_addr(self.src);
        f.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    static FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x77, 0x00, 0x02, // src
        0xc0, 0xde, // XIP
        0xaa, 0xbb,
    ];

    #[test]
    fn test_deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.src_addr().to_string(), "52:54:00:77:00:02");
        assert!(f.src_addr().is_unicast());
        assert_eq!(f.ethertype(), EtherType::Xip);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn test_construct() {
        let repr = EthernetRepr::parse(&Frame::new_checked(&FRAME[..]).unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        repr.emit(&mut f).unwrap();
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn test_impossible_len() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]).unwrap_err(),
            WireError::Truncated { need: 14, have: 13 }
        );
    }

    #[test]
    fn mac_text() {
        let m: EthernetAddress = "52:54:00:77:00:02".parse().unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0, 0x77, 0, 2]);
        assert!("52:54:00:77:00".parse::<EthernetAddress>().is_err());
        assert!("52:54:00:77:00:02:03".parse::<EthernetAddress>().is_err());
        assert!("5:54:00:77:00:02".parse::<EthernetAddress>().is_err());
        assert!("+f:54:00:77:00:02".parse::<EthernetAddress>().is_err());
        assert_eq!(EtherType::from(0x1234), EtherType::Unknown(0x1234));
        assert_eq!(u16::from(EtherType::Rarp), 0x8035);
    }
}
