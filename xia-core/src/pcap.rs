//! A classic pcap writer (link type Ethernet, nanosecond timestamps), usable on any link: the
//! cheapest debugging tool there is, and how tests hand frames to tshark.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Magic of a nanosecond-resolution pcap file.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame recorded whole (the largest veth MTU plus the Ethernet header fits).
pub const SNAPLEN: u32 = 262_144;

/// Writes frames to a pcap stream.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Records one frame seen at `ts` (time since the Unix epoch); frames longer than
    /// [`SNAPLEN`] are cut, with their original length recorded.
    pub fn write_frame_at(&mut self, ts: Duration, frame: &[u8]) -> io::Result<()> {
        let caplen = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        // pcap's seconds field is 32 bits; saturate rather than wrap.
        let secs = u32::try_from(ts.as_secs()).unwrap_or(u32::MAX);
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&ts.subsec_nanos().to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..caplen])
    }

    /// Records one frame seen now.
    pub fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.write_frame_at(ts, frame)
    }

    /// Writes what the stream buffers.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the stream.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_frame_at(Duration::new(1, 5), &[0xaa; 3]).unwrap();
        let v = w.into_inner().unwrap();
        assert_eq!(v.len(), 24 + 16 + 3);
        assert_eq!(&v[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(&v[20..24], &[1, 0, 0, 0]);
        assert_eq!(&v[24..28], &[1, 0, 0, 0]);
        assert_eq!(&v[28..32], &[5, 0, 0, 0]);
        assert_eq!(&v[32..36], &[3, 0, 0, 0]);
        assert_eq!(&v[40..], &[0xaa; 3]);
    }
}
