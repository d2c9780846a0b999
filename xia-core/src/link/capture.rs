//! A link that records every frame it carries, both ways, to a pcap file (what smoltcp's
//! `PcapWriter` middleware does): the cheapest debugging tool there is, on any link.

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Instant;

use super::{Link, LinkState, LinkStats};
use crate::pcap::PcapWriter;
use crate::wire::ethernet::EthernetAddress;

/// `inner`, with every frame received or sent written to a capture.
#[derive(Debug)]
pub struct Capture<L: Link> {
    inner: L,
    pcap: Option<PcapWriter<BufWriter<File>>>,
}

impl<L: Link> Capture<L> {
    /// Wraps `inner`, capturing to `path` (created or truncated); `None` captures nothing.
    pub fn new(inner: L, path: Option<&Path>) -> io::Result<Capture<L>> {
        let pcap = match path {
            Some(p) => Some(PcapWriter::new(BufWriter::new(File::create(p)?))?),
            None => None,
        };
        Ok(Capture { inner, pcap })
    }

    /// The link inside.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.pcap.as_mut() {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }
}

impl<L: Link> Drop for Capture<L> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<L: Link> Link for Capture<L> {
    fn mac(&self) -> EthernetAddress {
        self.inner.mac()
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }
    fn fd(&self) -> RawFd {
        self.inner.fd()
    }
    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
    fn receive(&mut self, budget: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let Some(pcap) = self.pcap.as_mut() else { return self.inner.receive(budget, f) };
        self.inner.receive(budget, &mut |frame| {
            let _ = pcap.write_frame(frame);
            f(frame)
        })
    }
    fn transmit(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool> {
        let Some(pcap) = self.pcap.as_mut() else { return self.inner.transmit(fill) };
        self.inner.transmit(&mut |buf| {
            let n = fill(buf)?;
            let _ = pcap.write_frame(&buf[..n]);
            Some(n)
        })
    }
    fn poll_state(&mut self) -> Option<LinkState> {
        self.inner.poll_state()
    }
    fn is_up(&self) -> bool {
        self.inner.is_up()
    }
    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }
}
