//! Links that carry Ethernet frames, behind one trait ([`Link`]) in the spirit of smoltcp's
//! `phy::Device`: the link lends its buffers (frames are read and built in place), and whatever
//! wraps a link is a link too ([`capture::Capture`] records every frame to a pcap file).
//!
//! - [`afpacket`]: Linux AF_PACKET sockets on an interface ([`afpacket::PacketSocket`]), and
//!   [`host_port::HostPort`], a host's port built from them (XIP, XARP and QEMU's RARP, the
//!   interface's state from netlink);
//! - [`sim`]: a simulated link with seeded impairments in virtual time, for sans-IO tests;
//! - [`sim_wire`]: the same in real time, a segment that daemons in one process attach to.

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod capture;
#[cfg(target_os = "linux")]
pub mod host_port;
pub mod sim;
pub mod sim_wire;

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::wire::ethernet::{EthernetAddress, HEADER_LEN};

/// Counters of a link (one naming for every kind of link).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames dropped because they were longer than the buffers (never delivered).
    pub rx_truncated: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the kernel refused (buffer full).
    pub tx_dropped: u64,
    /// Frames not sent because the device failed (down, gone): dropped, as a cut cable would.
    pub tx_errors: u64,
    /// Errors reported on receive (device down, ...); the socket keeps working after them.
    pub rx_errors: u64,
    /// Frames the kernel dropped before we read them (socket buffer full: we were too slow).
    pub rx_kernel_dropped: u64,
}

impl LinkStats {
    /// Every counter with its name (`link_` and the field), as daemons report them.
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("link_rx_frames", self.rx_frames),
            ("link_rx_bytes", self.rx_bytes),
            ("link_rx_truncated", self.rx_truncated),
            ("link_rx_errors", self.rx_errors),
            ("link_rx_kernel_dropped", self.rx_kernel_dropped),
            ("link_tx_frames", self.tx_frames),
            ("link_tx_bytes", self.tx_bytes),
            ("link_tx_dropped", self.tx_dropped),
            ("link_tx_errors", self.tx_errors),
        ]
    }

    /// The sum of two links' counters (a port made of several sockets).
    pub fn sum(&self, o: &LinkStats) -> LinkStats {
        LinkStats {
            rx_frames: self.rx_frames + o.rx_frames,
            rx_bytes: self.rx_bytes + o.rx_bytes,
            rx_truncated: self.rx_truncated + o.rx_truncated,
            tx_frames: self.tx_frames + o.tx_frames,
            tx_bytes: self.tx_bytes + o.tx_bytes,
            tx_dropped: self.tx_dropped + o.tx_dropped,
            tx_errors: self.tx_errors + o.tx_errors,
            rx_errors: self.rx_errors + o.rx_errors,
            rx_kernel_dropped: self.rx_kernel_dropped + o.rx_kernel_dropped,
        }
    }
}

/// Whether a link carries frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Up: frames go through.
    Up,
    /// Down (no carrier, administratively down, gone): frames are lost.
    Down,
}

/// A port on a link: receives and sends whole Ethernet frames.
///
/// A daemon waits for the link's descriptor ([`Link::fd`]) and its deadline
/// ([`Link::poll_at`]), then calls [`Link::receive`] and [`Link::transmit`]; neither blocks.
pub trait Link {
    /// The port's MAC address.
    fn mac(&self) -> EthernetAddress;

    /// The largest Ethernet payload.
    fn mtu(&self) -> usize;

    /// The largest frame, header included.
    fn max_frame(&self) -> usize {
        HEADER_LEN + self.mtu()
    }

    /// A descriptor that becomes readable when the link has something for its owner: frames to
    /// receive, room to send again after [`Link::transmit`] filled it, a change of state.
    fn fd(&self) -> RawFd;

    /// When the link wants [`Link::transmit`] or [`Link::receive`] called with nothing on its
    /// descriptor (a transmit queue to flush, simulated frames due): `None` for never.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Hands up to `budget` received frames to `f`, in order; returns how many.
    fn receive(&mut self, budget: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize>;

    /// Sends the frames `fill` builds: it is lent a buffer of [`Link::max_frame`] bytes and
    /// returns the length of the frame it wrote, or `None` when it has no more. Returns true
    /// when `fill` ran dry, false when the link is full (the descriptor then wakes its owner
    /// when there is room; frames already built are kept and sent first).
    fn transmit(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool>;

    /// The link's state changed since the last call: what it is now.
    fn poll_state(&mut self) -> Option<LinkState> {
        None
    }

    /// Whether the link is up now.
    fn is_up(&self) -> bool {
        true
    }

    /// Counters.
    fn stats(&self) -> LinkStats;
}

impl<L: Link + ?Sized> Link for Box<L> {
    fn mac(&self) -> EthernetAddress {
        (**self).mac()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }
    fn fd(&self) -> RawFd {
        (**self).fd()
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
    fn receive(&mut self, budget: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        (**self).receive(budget, f)
    }
    fn transmit(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool> {
        (**self).transmit(fill)
    }
    fn poll_state(&mut self) -> Option<LinkState> {
        (**self).poll_state()
    }
    fn is_up(&self) -> bool {
        (**self).is_up()
    }
    fn stats(&self) -> LinkStats {
        (**self).stats()
    }
}
