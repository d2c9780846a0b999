//! End-to-end integrity of STREAM, DGRAM and CHUNK packets.
//!
//! Every packet of these transports carries a CRC32C (Castagnoli: iSCSI's and SCTP's, with
//! hardware support on x86 since SSE4.2) over
//! - a pseudo-header: the XIP header without what routers change on the way (the hop limit,
//!   the last node, the visited bits of the edges), that is the version, next header, payload
//!   length, node counts and both DAGs, so a packet delivered to the wrong address or as
//!   another transport fails, as TCP's pseudo-header makes it;
//! - the transport header, its check field counted as zero;
//! - the data.
//!
//! Where the check sits:
//! - STREAM: an option `[CHECK (52), 2 words, 0, 0, crc32c]`, always the first one (bytes 16..24;
//!   an implementation that does not know it skips it as an unknown option);
//! - DGRAM: bytes 4..8 of an 8-byte header (`hlen` 2 words);
//! - CHUNK: bytes 16..20 of a 20-byte header (`hlen` 5 words).
//!
//! The sender fills it in last ([`seal`]), once the whole packet is written; the receiver
//! checks it first ([`verify`]), before the transport sees anything: a packet that fails is
//! dropped and counted, never acted upon. XCMP keeps its own internet checksum; XARP and the
//! signed control messages carry signatures.

use super::xip::{NextHeader, FIXED_HEADER_LEN, NODE_LEN};
use super::{ethernet, stream};
use crate::dag::EDGE_VISITED;

/// Length of the check field.
pub const CHECK_LEN: usize = 4;
/// Where the check sits in a STREAM header (in its first option, [`stream::option::CHECK`]).
pub const STREAM_CHECK_AT: usize = stream::HEADER_LEN + 4;
/// Where the check sits in a DGRAM header.
pub const DGRAM_CHECK_AT: usize = 4;
/// Where the check sits in a CHUNK header.
pub const CHUNK_CHECK_AT: usize = 16;

/// Why a packet failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    /// A STREAM, DGRAM or CHUNK packet without a check field.
    #[error("no integrity check in the transport header")]
    Missing,
    /// The check does not match: the packet was damaged on the way.
    #[error("integrity check failed")]
    Mismatch,
    /// The XIP header's lengths do not fit the packet.
    #[error("XIP lengths do not fit the packet")]
    Malformed,
}

/// Whether a packet's transport is one the check covers, once it has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// STREAM, DGRAM or CHUNK, and its check holds.
    Good,
    /// Another next header (XCMP, control...): nothing to check here.
    NotCovered,
}

/// The offset of the check within a transport header of kind `next`, if it carries one.
fn check_at(next: u8, t: &[u8]) -> Result<Option<usize>, IntegrityError> {
    let hlen = |min: usize| t.len() >= min && t.get(1).is_some_and(|&w| usize::from(w) * 4 >= min);
    let at = match NextHeader::from(next) {
        NextHeader::Stream
            if hlen(STREAM_CHECK_AT + CHECK_LEN) && t[16] == stream::option::CHECK && t[17] == 2 =>
        {
            STREAM_CHECK_AT
        }
        NextHeader::Dgram if hlen(DGRAM_CHECK_AT + CHECK_LEN) => DGRAM_CHECK_AT,
        NextHeader::Chunk if hlen(CHUNK_CHECK_AT + CHECK_LEN) => CHUNK_CHECK_AT,
        NextHeader::Stream | NextHeader::Dgram | NextHeader::Chunk => return Err(IntegrityError::Missing),
        _ => return Ok(None),
    };
    Ok(Some(at))
}

/// Where the transport starts in an XIP packet, after checking the header's lengths.
fn transport_start(xip: &[u8]) -> Result<usize, IntegrityError> {
    if xip.len() < FIXED_HEADER_LEN {
        return Err(IntegrityError::Malformed);
    }
    let nodes = usize::from(xip[5]) + usize::from(xip[6]);
    let start = FIXED_HEADER_LEN + nodes * NODE_LEN;
    let payload = usize::from(u16::from_be_bytes([xip[2], xip[3]]));
    if start + payload != xip.len() {
        return Err(IntegrityError::Malformed);
    }
    Ok(start)
}

/// The CRC32C of the pseudo-header and the transport packet, its check at `at` (absolute).
fn compute(xip: &[u8], start: usize, at: usize) -> u32 {
    let mut c = Crc32c::new();
    // Version, next header, payload length; node counts. Not the hop limit (4) nor the last node (7).
    c.update(&[xip[0], xip[1], xip[2], xip[3], xip[5], xip[6]]);
    for node in xip[FIXED_HEADER_LEN..start].chunks_exact(NODE_LEN) {
        let (xid, e) = node.split_at(NODE_LEN - 4);
        c.update(xid);
        c.update(&[e[0] & !EDGE_VISITED, e[1] & !EDGE_VISITED, e[2] & !EDGE_VISITED, e[3] & !EDGE_VISITED]);
    }
    c.update(&xip[start..at]);
    c.update(&[0; CHECK_LEN]);
    c.update(&xip[at + CHECK_LEN..]);
    c.finish()
}

/// Fills in the check of the XIP packet `xip` (a whole packet, payload length right). False
/// when its transport carries none (another next header) or its lengths are wrong.
pub fn seal(xip: &mut [u8]) -> bool {
    let Ok(start) = transport_start(xip) else { return false };
    let Ok(Some(at)) = check_at(xip[1], &xip[start..]) else { return false };
    let crc = compute(xip, start, start + at);
    xip[start + at..start + at + CHECK_LEN].copy_from_slice(&crc.to_be_bytes());
    true
}

/// Checks the XIP packet `xip`; never panics, whatever the bytes.
pub fn verify(xip: &[u8]) -> Result<Checked, IntegrityError> {
    let start = transport_start(xip)?;
    let Some(at) = check_at(xip[1], &xip[start..])? else { return Ok(Checked::NotCovered) };
    let at = start + at;
    let got = u32::from_be_bytes([xip[at], xip[at + 1], xip[at + 2], xip[at + 3]]);
    if compute(xip, start, at) == got {
        Ok(Checked::Good)
    } else {
        Err(IntegrityError::Mismatch)
    }
}

/// [`seal`] on the XIP packet in an Ethernet frame; other frames are left alone.
pub fn seal_frame(frame: &mut [u8]) -> bool {
    is_xip(frame) && seal(&mut frame[ethernet::HEADER_LEN..])
}

fn is_xip(frame: &[u8]) -> bool {
    frame.len() > ethernet::HEADER_LEN && frame[12..14] == [0xC0, 0xDE]
}

/// A running CRC32C (reflected polynomial 0x82F63B78, initial value and final XOR all ones).
#[derive(Debug, Clone, Copy)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c::new()
    }
}

impl Crc32c {
    /// A CRC over nothing yet.
    pub fn new() -> Crc32c {
        Crc32c(!0)
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, just checked.
            self.0 = unsafe { update_sse42(self.0, data) };
            return;
        }
        self.0 = update_table(self.0, data);
    }

    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        !self.0
    }

    /// The CRC32C of `data`.
    pub fn of(data: &[u8]) -> u32 {
        let mut c = Crc32c::new();
        c.update(data);
        c.finish()
    }
}

/// Bytes each of the three interleaved lanes of [`update_sse42`] takes per block.
const LANE: usize = 256;

/// The CRC register after [`LANE`] zero bytes from state `s`, as four byte-wise tables (the map
/// is linear over GF(2)): what joins the three lanes' CRCs into the CRC of their concatenation.
fn shift_lane(s: u32) -> u32 {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 4]> = std::sync::OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 4];
        for (j, tj) in t.iter_mut().enumerate() {
            for (v, e) in tj.iter_mut().enumerate() {
                *e = update_table((v as u32) << (8 * j), &[0; LANE]);
            }
        }
        t
    });
    t[0][(s & 0xff) as usize]
        ^ t[1][((s >> 8) & 0xff) as usize]
        ^ t[2][((s >> 16) & 0xff) as usize]
        ^ t[3][(s >> 24) as usize]
}

/// The `crc32` instruction has a latency of three cycles and takes one per cycle: three lanes
/// of [`LANE`] bytes run side by side and are joined, then the rest goes through one lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn update_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let word = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let mut crc = crc;
    let mut blocks = data.chunks_exact(3 * LANE);
    for block in &mut blocks {
        let (a, rest) = block.split_at(LANE);
        let (b, c) = rest.split_at(LANE);
        let (mut ca, mut cb, mut cc) = (u64::from(crc), 0u64, 0u64);
        for ((wa, wb), wc) in a.chunks_exact(8).zip(b.chunks_exact(8)).zip(c.chunks_exact(8)) {
            ca = _mm_crc32_u64(ca, word(wa));
            cb = _mm_crc32_u64(cb, word(wb));
            cc = _mm_crc32_u64(cc, word(wc));
        }
        // The register is linear in its start: lane b started from 0 instead of a's end, c
        // from 0 instead of b's.
        crc = shift_lane(shift_lane(ca as u32) ^ cb as u32) ^ cc as u32;
    }
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(8);
    let mut c = u64::from(crc);
    for w in &mut words {
        c = _mm_crc32_u64(c, word(w));
    }
    let mut crc = c as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn update_table(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::Dag;
    use crate::wire::dgram::DgramRepr;
    use crate::wire::xip::XipRepr;
    use crate::xid::{Principal, Xid};

    #[test]
    fn crc32c_known_answers() {
        // RFC 3720, B.4, and the usual check value.
        assert_eq!(Crc32c::of(b"123456789"), 0xE306_9283);
        assert_eq!(Crc32c::of(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(Crc32c::of(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(Crc32c::of(&inc), 0x46DD_794E);
        // The table and the instruction agree on every length and split.
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 767, 768, 769, 999, 1000, 1536, 2303, 2304, 8999, 9000, 10_000] {
            let mut c = Crc32c::new();
            c.update(&data[..n / 3]);
            c.update(&data[n / 3..n]);
            assert_eq!(c.finish(), !update_table(!0, &data[..n]), "{n}");
        }
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let x = |p, b| Xid::new(p, [b; 20]);
        let dst = Dag::service(x(Principal::Ad, 1), x(Principal::Hid, 2), x(Principal::Sid, 3)).unwrap();
        let src = Dag::service(x(Principal::Ad, 4), x(Principal::Hid, 5), x(Principal::Sid, 6)).unwrap();
        let d = DgramRepr { payload };
        let xr = XipRepr::new(NextHeader::Dgram, dst, src, d.buffer_len());
        let mut p = vec![0u8; xr.buffer_len()];
        xr.emit(&mut p).unwrap();
        let h = xr.header_len();
        d.emit(&mut p[h..]).unwrap();
        p
    }

    #[test]
    fn a_sealed_packet_passes_and_any_flipped_bit_it_covers_fails() {
        let mut p = packet(b"hello, integrity");
        assert_eq!(verify(&p), Err(IntegrityError::Mismatch), "not sealed yet");
        assert!(seal(&mut p));
        assert_eq!(verify(&p), Ok(Checked::Good));
        let edges_of = |n: usize| FIXED_HEADER_LEN + (n + 1) * NODE_LEN - 4;
        for bit in 0..p.len() * 8 {
            let (i, m) = (bit / 8, 1u8 << (bit % 8));
            let mut q = p.clone();
            q[i] ^= m;
            // What routers change: the hop limit, the last node, visited bits.
            let routers = i == 4
                || i == 7
                || ((FIXED_HEADER_LEN..FIXED_HEADER_LEN + 6 * NODE_LEN).contains(&i)
                    && (0..6).any(|n| (edges_of(n)..edges_of(n) + 4).contains(&i))
                    && m == EDGE_VISITED);
            match verify(&q) {
                Ok(Checked::Good) => assert!(routers, "byte {i} mask {m:#x} not covered"),
                Err(_) => assert!(!routers, "byte {i} mask {m:#x}: a router's change refused"),
                Ok(Checked::NotCovered) => assert_eq!(i, 1, "only a changed next header leaves the check"),
            }
        }
    }

    #[test]
    fn short_or_lying_packets_are_errors_not_panics() {
        let mut p = packet(b"x");
        seal(&mut p);
        for n in 0..p.len() {
            assert!(verify(&p[..n]).is_err(), "{n} bytes");
        }
        // A DGRAM header of one word (the prototype's) carries no check.
        let mut q = p.clone();
        let start = q.len() - 9;
        q[start + 1] = 1;
        assert_eq!(verify(&q), Err(IntegrityError::Missing));
    }
}
