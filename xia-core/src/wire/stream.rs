//! The STREAM header (xia-v2 XSTREAM): TCP's fields without ports, 32-bit window.
//!
//! ```text
//!  0      1        2               4               8              12             16
//! +------+--------+---------------+---------------+---------------+---------------+---------
//! | next | offset | flags         | sequence      | acknowledgment| window        | options
//! +------+--------+---------------+---------------+---------------+---------------+---------
//! ```
//! `offset` is the header length in 4-byte words. Options are `kind, length` where length counts
//! 4-byte words of the whole option (the prototype keeps options 4-byte aligned):
//! MSS `[2,1,mss(2)]`, window scale `[3,1,0,shift]`, SACK permitted `[4,1,0,0]`,
//! SACK `[5,1+2n,0,0,(left,right)*n]`, timestamps `[8,3,0,0,tsval(4),tsecr(4)]`,
//! MIGRATE / MIGRATE_ACK `[50|51,words,len(2),body,pad]`, CHECK `[52,2,0,0,crc32c(4)]`. Kind 0
//! ends the list, kind 1 is a one-byte pad; unknown kinds are skipped. Every segment this
//! implementation sends starts its options with CHECK (the CRC32C of [`super::integrity`],
//! filled in once the whole packet is written).

use std::fmt;

use super::{be16, be32, need, put16, put32, room, Result, WireError};

/// Fixed header length.
pub const HEADER_LEN: usize = 16;
/// Longest header the 8-bit offset can express.
pub const MAX_HEADER_LEN: usize = 255 * 4;
/// Length of the CHECK option every segment starts its options with.
pub const CHECK_OPTION_LEN: usize = 8;
/// Most SACK blocks carried in one header.
pub const MAX_SACK_BLOCKS: usize = 4;

/// Option kinds.
pub mod option {
    /// End of options.
    pub const END: u8 = 0;
    /// One-byte pad.
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMPS: u8 = 8;
    /// An endpoint moved: its new DAG, signed.
    pub const MIGRATE: u8 = 50;
    /// Acknowledges a MIGRATE.
    pub const MIGRATE_ACK: u8 = 51;
    /// The integrity check ([`super::super::integrity`]); always the first option.
    pub const CHECK: u8 = 52;
}

/// STREAM flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No more data from the sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push.
    pub const PSH: Flags = Flags(0x08);
    /// The acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);
    /// ECN echo.
    pub const ECE: Flags = Flags(0x40);
    /// Congestion window reduced.
    pub const CWR: Flags = Flags(0x80);

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::SYN, "SYN"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
            (Flags::PSH, "PSH"),
            (Flags::ACK, "ACK"),
            (Flags::ECE, "ECE"),
            (Flags::CWR, "CWR"),
        ];
        let mut first = true;
        for (fl, n) in names {
            if self.contains(fl) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A view of a STREAM segment.
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

    /// Checks the fixed header and the data offset.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, HEADER_LEN)?;
        let h = self.header_len();
        if h < HEADER_LEN {
            return Err(WireError::HeaderLength(h));
        }
        need(b, h)
    }

    /// Next header (0: data).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[1]) * 4
    }

    /// Flags.
    pub fn flags(&self) -> Flags {
        Flags(be16(self.buffer.as_ref(), 2))
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        be32(self.buffer.as_ref(), 8)
    }

    /// Window (unscaled).
    pub fn window(&self) -> u32 {
        be32(self.buffer.as_ref(), 12)
    }

    /// Option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Segment data.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// SACK blocks: `(left, right)` sequence ranges received out of order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SackBlocks {
    len: u8,
    blocks: [(u32, u32); MAX_SACK_BLOCKS],
}

impl SackBlocks {
    /// Blocks from a slice; more than [`MAX_SACK_BLOCKS`] is an error.
    pub fn new(blocks: &[(u32, u32)]) -> Result<SackBlocks> {
        if blocks.len() > MAX_SACK_BLOCKS {
            return Err(WireError::Field("SACK blocks"));
        }
        let mut s = SackBlocks::default();
        s.blocks[..blocks.len()].copy_from_slice(blocks);
        s.len = blocks.len() as u8;
        Ok(s)
    }

    /// The blocks.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..usize::from(self.len)]
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The parsed meaning of a STREAM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamRepr<'a> {
    /// Flags.
    pub flags: Flags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Window (unscaled).
    pub window: u32,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub window_scale: Option<u8>,
    /// SACK permitted option.
    pub sack_permitted: bool,
    /// Timestamps option `(tsval, tsecr)`.
    pub timestamps: Option<(u32, u32)>,
    /// SACK option.
    pub sack: SackBlocks,
    /// MIGRATE option body.
    pub migrate: Option<&'a [u8]>,
    /// MIGRATE_ACK option body.
    pub migrate_ack: Option<&'a [u8]>,
    /// Segment data.
    pub payload: &'a [u8],
}

fn bad(kind: u8) -> WireError {
    WireError::BadOption { kind }
}

impl<'a> StreamRepr<'a> {
    /// Reads a segment and its options.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<StreamRepr<'a>> {
        p.check_len()?;
        let b: &'a [u8] = p.buffer.as_ref();
        if p.next_header() != 0 {
            return Err(WireError::Field("STREAM next header"));
        }
        let mut r = StreamRepr {
            flags: p.flags(),
            seq: p.seq(),
            ack: p.ack(),
            window: p.window(),
            payload: &b[p.header_len()..],
            ..StreamRepr::default()
        };
        let opts = &b[HEADER_LEN..p.header_len()];
        let mut i = 0;
        while i < opts.len() {
            let kind = opts[i];
            match kind {
                option::END => break,
                option::NOP => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let words = *opts.get(i + 1).ok_or(bad(kind))?;
            let len = usize::from(words) * 4;
            if len == 0 || i + len > opts.len() {
                return Err(bad(kind));
            }
            let o = &opts[i..i + len];
            match kind {
                option::MSS if len == 4 => r.mss = Some(be16(o, 2)),
                option::WINDOW_SCALE if len == 4 => r.window_scale = Some(o[3]),
                option::SACK_PERMITTED if len == 4 => r.sack_permitted = true,
                option::TIMESTAMPS if len == 12 => r.timestamps = Some((be32(o, 4), be32(o, 8))),
                option::SACK if len >= 12 && (len - 4) % 8 == 0 => {
                    let n = (len - 4) / 8;
                    if n > MAX_SACK_BLOCKS {
                        return Err(bad(kind));
                    }
                    let mut blocks = [(0u32, 0u32); MAX_SACK_BLOCKS];
                    for (k, blk) in blocks.iter_mut().take(n).enumerate() {
                        *blk = (be32(o, 4 + 8 * k), be32(o, 8 + 8 * k));
                    }
                    r.sack = SackBlocks { len: n as u8, blocks };
                }
                option::MIGRATE | option::MIGRATE_ACK => {
                    let body_len = usize::from(be16(o, 2));
                    if 4 + body_len > len {
                        return Err(bad(kind));
                    }
                    let body = &b[HEADER_LEN + i + 4..HEADER_LEN + i + 4 + body_len];
                    if kind == option::MIGRATE {
                        r.migrate = Some(body);
                    } else {
                        r.migrate_ack = Some(body);
                    }
                }
                // Verified before parsing, with the XIP addresses ([`super::integrity`]).
                option::CHECK if len == CHECK_OPTION_LEN => {}
                option::MSS
                | option::WINDOW_SCALE
                | option::SACK_PERMITTED
                | option::TIMESTAMPS
                | option::SACK
                | option::CHECK => {
                    return Err(bad(kind));
                }
                _ => {} // unknown: skipped
            }
            i += len;
        }
        Ok(r)
    }

    fn options_len(&self) -> usize {
        let mut n = CHECK_OPTION_LEN;
        n += if self.mss.is_some() { 4 } else { 0 };
        n += if self.window_scale.is_some() { 4 } else { 0 };
        n += if self.sack_permitted { 4 } else { 0 };
        n += if self.timestamps.is_some() { 12 } else { 0 };
        n += if self.sack.is_empty() { 0 } else { 4 + 8 * self.sack.as_slice().len() };
        for body in [self.migrate, self.migrate_ack].into_iter().flatten() {
            n += (4 + body.len()).div_ceil(4) * 4;
        }
        n
    }

    /// Header length with options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes header, options and data into `buf[..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let hlen = self.header_len();
        if hlen > MAX_HEADER_LEN {
            return Err(WireError::HeaderLength(hlen));
        }
        room(buf, self.buffer_len())?;
        buf[0] = 0;
        buf[1] = (hlen / 4) as u8;
        put16(buf, 2, self.flags.0);
        put32(buf, 4, self.seq);
        put32(buf, 8, self.ack);
        put32(buf, 12, self.window);
        // The check, zero until the packet is sealed.
        buf[HEADER_LEN..HEADER_LEN + CHECK_OPTION_LEN].copy_from_slice(&[option::CHECK, 2, 0, 0, 0, 0, 0, 0]);
        let mut i = HEADER_LEN + CHECK_OPTION_LEN;
        if let Some(mss) = self.mss {
            buf[i..i + 2].copy_from_slice(&[option::MSS, 1]);
            put16(buf, i + 2, mss);
            i += 4;
        }
        if let Some(ws) = self.window_scale {
            buf[i..i + 4].copy_from_slice(&[option::WINDOW_SCALE, 1, 0, ws]);
            i += 4;
        }
        if self.sack_permitted {
            buf[i..i + 4].copy_from_slice(&[option::SACK_PERMITTED, 1, 0, 0]);
            i += 4;
        }
        if let Some((val, ecr)) = self.timestamps {
            buf[i..i + 4].copy_from_slice(&[option::TIMESTAMPS, 3, 0, 0]);
            put32(buf, i + 4, val);
            put32(buf, i + 8, ecr);
            i += 12;
        }
        if !self.sack.is_empty() {
            let n = self.sack.as_slice().len();
            buf[i..i + 4].copy_from_slice(&[option::SACK, (1 + 2 * n) as u8, 0, 0]);
            for (k, &(l, r)) in self.sack.as_slice().iter().enumerate() {
                put32(buf, i + 4 + 8 * k, l);
                put32(buf, i + 8 + 8 * k, r);
            }
            i += 4 + 8 * n;
        }
        for (kind, body) in [(option::MIGRATE, self.migrate), (option::MIGRATE_ACK, self.migrate_ack)] {
            if let Some(body) = body {
                let len = (4 + body.len()).div_ceil(4) * 4;
                buf[i] = kind;
                buf[i + 1] = (len / 4) as u8;
                put16(buf, i + 2, body.len() as u16);
                buf[i + 4..i + 4 + body.len()].copy_from_slice(body);
                buf[i + 4 + body.len()..i + len].fill(0);
                i += len;
            }
        }
        debug_assert_eq!(i, hlen);
        buf[hlen..hlen + self.payload.len()].copy_from_slice(self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SYN with MSS 8960, window scale 7, SACK permitted and timestamps, written from the
    /// format description.
    static SYN: [u8; 48] = [
        0, 12, 0x00, 0x02, // next, offset 12 words, SYN
        0x00, 0x00, 0x10, 0x00, // seq 4096
        0, 0, 0, 0, // ack
        0x00, 0x01, 0x00, 0x00, // window 65536
        52, 2, 0, 0, 0, 0, 0, 0, // check (not sealed)
        2, 1, 0x23, 0x00, // MSS 8960
        3, 1, 0, 7, // window scale 7
        4, 1, 0, 0, // SACK permitted
        8, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps 1, 0
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.header_len(), 48);
        assert_eq!(p.flags(), Flags::SYN);
        assert_eq!(p.seq(), 4096);
        assert_eq!(p.window(), 65536);
        assert_eq!(p.payload(), &[]);
    }

    #[test]
    fn test_parse_and_emit() {
        let r = StreamRepr::parse(&Packet::new_checked(&SYN[..]).unwrap()).unwrap();
        assert_eq!(r.mss, Some(8960));
        assert_eq!(r.window_scale, Some(7));
        assert!(r.sack_permitted);
        assert_eq!(r.timestamps, Some((1, 0)));
        let mut buf = [0u8; 48];
        r.emit(&mut buf).unwrap();
        assert_eq!(buf, SYN);
    }

    #[test]
    fn sack_and_migrate_round_trip() {
        let r = StreamRepr {
            flags: Flags::ACK | Flags::PSH,
            seq: 1,
            ack: 2,
            window: 3,
            sack: SackBlocks::new(&[(10, 20), (30, 40)]).unwrap(),
            migrate: Some(b"new dag"),
            migrate_ack: Some(b""),
            payload: b"data",
            ..StreamRepr::default()
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf).unwrap();
        assert_eq!(buf.len(), 16 + 8 + 20 + 12 + 4 + 4);
        assert_eq!(StreamRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        assert_eq!(format!("{:?}", r.flags), "PSH|ACK");
    }

    #[test]
    fn malformed_options_are_typed_errors() {
        let with_opts = |opts: &[u8]| {
            let mut v = vec![0u8, ((16 + opts.len()) / 4) as u8, 0, 0x10];
            v.extend_from_slice(&[0; 12]);
            v.extend_from_slice(opts);
            v
        };
        // Zero length.
        let v = with_opts(&[2, 0, 0, 0]);
        assert_eq!(
            StreamRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::BadOption { kind: 2 }
        );
        // Runs past the header.
        let v = with_opts(&[8, 3, 0, 0]);
        assert_eq!(
            StreamRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::BadOption { kind: 8 }
        );
        // Wrong length for the kind.
        let v = with_opts(&[2, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            StreamRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::BadOption { kind: 2 }
        );
        // Length byte missing at the end.
        let v = with_opts(&[1, 1, 1, 9]);
        assert_eq!(
            StreamRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::BadOption { kind: 9 }
        );
        // MIGRATE body longer than the option.
        let v = with_opts(&[50, 1, 0, 9]);
        assert_eq!(
            StreamRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::BadOption { kind: 50 }
        );
        // Too many SACK blocks.
        let mut sack = vec![5u8, 11, 0, 0];
        sack.extend_from_slice(&[0; 40]);
        let v = with_opts(&sack);
        assert_eq!(
            StreamRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::BadOption { kind: 5 }
        );
        // Unknown options are skipped, END stops.
        let v = with_opts(&[77, 1, 0, 0, 0, 9, 9, 9]);
        assert!(StreamRepr::parse(&Packet::new_unchecked(&v[..])).is_ok());
        // Offset below the fixed header.
        let mut v = with_opts(&[]);
        v[1] = 3;
        assert_eq!(Packet::new_checked(&v[..]).unwrap_err(), WireError::HeaderLength(12));
    }

    #[test]
    fn oversized_options_are_refused() {
        let body = [0u8; 1100];
        let r = StreamRepr { migrate: Some(&body), ..StreamRepr::default() };
        let mut buf = vec![0u8; r.buffer_len()];
        assert!(matches!(r.emit(&mut buf), Err(WireError::HeaderLength(_))));
    }
}
