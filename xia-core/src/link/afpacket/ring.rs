//! The TPACKET_V2 rings of an AF_PACKET socket: memory shared with the kernel, mapped into ours
//! ([`RingMap`]); a transmit ring ([`TxRing`]) whose frames are built in place and sent without
//! a copy, and a receive ring ([`RxRing`]) whose frames are read (and rewritten) in place.

use std::io;
use std::mem;
use std::os::fd::RawFd;

use super::{setsockopt_int, SOL_PACKET};
use crate::link::LinkStats;
use crate::sys::cvt;

const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const TPACKET_V2: libc::c_int = 1;
/// `sizeof(struct tpacket2_hdr)`; a frame to send starts right after it (TPACKET2_HDRLEN minus
/// the sockaddr_ll the kernel puts there on receive).
const TPACKET2_HDR: usize = 32;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;

/// A TPACKET_V2 ring (receive or transmit) made for a socket and mapped into our memory:
/// `frames` slots of `frame_size` bytes, `frames_per_block` to a block of `block_size`.
#[derive(Debug)]
struct RingMap {
    base: *mut u8,
    map_len: usize,
    frame_size: usize,
    frames_per_block: usize,
    block_size: usize,
    frames: usize,
}

// SAFETY: the mapping belongs to its owner alone; the kernel side is synchronized through the
// status words (volatile accesses and fences).
unsafe impl Send for RingMap {}

impl RingMap {
    /// Asks the kernel for ring `which` (PACKET_RX_RING or PACKET_TX_RING) of at least `frames`
    /// slots and maps it.
    fn new(
        fd: RawFd,
        which: libc::c_int,
        frames: usize,
        frame_size: usize,
        block_size: usize,
    ) -> io::Result<RingMap> {
        let frames_per_block = block_size / frame_size;
        let blocks = frames.max(1).div_ceil(frames_per_block);
        let frames = blocks * frames_per_block;
        setsockopt_int(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        #[repr(C)]
        struct TpacketReq {
            block_size: u32,
            block_nr: u32,
            frame_size: u32,
            frame_nr: u32,
        }
        let req = TpacketReq {
            block_size: block_size as u32,
            block_nr: blocks as u32,
            frame_size: frame_size as u32,
            frame_nr: frames as u32,
        };
        // SAFETY: `req` is a valid tpacket_req for the call.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                SOL_PACKET,
                which,
                (&req as *const TpacketReq).cast(),
                mem::size_of::<TpacketReq>() as libc::socklen_t,
            )
        })?;
        let map_len = block_size * blocks;
        // SAFETY: mapping the ring the kernel just made for this socket.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RingMap { base: base.cast(), map_len, frame_size, frames_per_block, block_size, frames })
    }

    fn frame_ptr(&self, i: usize) -> *mut u8 {
        let off =
            (i / self.frames_per_block) * self.block_size + (i % self.frames_per_block) * self.frame_size;
        // SAFETY: `i < frames`, so the offset is inside the mapping.
        unsafe { self.base.add(off % self.map_len) }
    }

    /// The status word heading slot `i` (the kernel writes it concurrently).
    fn status(&self, i: usize) -> u32 {
        // SAFETY: the status word heads every slot.
        let s = unsafe { std::ptr::read_volatile(self.frame_ptr(i).cast::<u32>()) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        s
    }

    /// Writes slot `i`'s status word after everything written to the slot before.
    fn set_status(&self, i: usize, status: u32) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        // SAFETY: the status word of a slot we own, handed over by this write.
        unsafe { std::ptr::write_volatile(self.frame_ptr(i).cast::<u32>(), status) };
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// A PACKET_TX_RING: frames are built in the next free slot and handed to the kernel.
#[derive(Debug)]
pub(super) struct TxRing {
    map: RingMap,
    next: usize,
    pub(super) queued: usize,
    max_frame: usize,
}

impl TxRing {
    pub(super) fn new(fd: RawFd, frames: usize, max_frame: usize) -> io::Result<TxRing> {
        let frame_size = (TPACKET2_HDR + max_frame).next_multiple_of(16);
        let block_size = frame_size.next_multiple_of(4096);
        // Malformed frames are skipped rather than stopping the ring.
        setsockopt_int(fd, SOL_PACKET, PACKET_LOSS, 1)?;
        let map = RingMap::new(fd, PACKET_TX_RING, frames, frame_size, block_size)?;
        Ok(TxRing { map, next: 0, queued: 0, max_frame })
    }

    pub(super) fn slot(&mut self) -> Option<&mut [u8]> {
        if self.map.status(self.next) != TP_STATUS_AVAILABLE {
            return None;
        }
        // SAFETY: an available frame is ours until we hand it over; the data area follows the
        // header and fits in the frame.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.map.frame_ptr(self.next).add(TPACKET2_HDR), self.max_frame)
        })
    }

    pub(super) fn commit(&mut self, len: usize) {
        let p = self.map.frame_ptr(self.next);
        // SAFETY: header fields of a frame we own: tp_len at 4, tp_snaplen at 8.
        unsafe {
            std::ptr::write_volatile(p.add(4).cast::<u32>(), len as u32);
            std::ptr::write_volatile(p.add(8).cast::<u32>(), len as u32);
        }
        self.map.set_status(self.next, TP_STATUS_SEND_REQUEST);
        self.next = (self.next + 1) % self.map.frames;
        self.queued += 1;
    }
}

const PACKET_RX_RING: libc::c_int = 5;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_COPY: u32 = 2;

/// A PACKET_RX_RING (TPACKET_V2) mapped into our memory: the kernel writes each frame into the
/// next free slot; we read (and may rewrite) frames in place, then hand the slots back.
///
/// Mirrors [`RecvBatch`](super::RecvBatch): [`RxRing::poll`] takes the frames waiting (up to a
/// batch), [`RxRing::frames_mut`] / [`RxRing::frames`] show them, [`RxRing::release`] gives their
/// slots back. Readiness is the socket's (poll it for input).
#[derive(Debug)]
pub struct RxRing {
    map: RingMap,
    next: usize,
    batch: usize,
    /// (slot, data offset, length) of the frames taken by the last poll.
    taken: Vec<(usize, usize, usize)>,
    /// Slots taken by the last poll, frames dropped among them included.
    held: usize,
    stats: LinkStats,
}

impl RxRing {
    pub(super) fn new(fd: RawFd, frames: usize, max_frame: usize, batch: usize) -> io::Result<RxRing> {
        // The kernel puts the frame at TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - 14 = 66 bytes into
        // the slot for an Ethernet header (TPACKET2_HDRLEN: the header and a sockaddr_ll).
        let frame_size = (80 + max_frame).next_power_of_two().max(2048);
        let block_size = frame_size.max(1 << 16);
        // At most 64 MiB of ring, whatever the MTU.
        let frames = frames.min((64 << 20) / frame_size);
        let map = RingMap::new(fd, PACKET_RX_RING, frames, frame_size, block_size)?;
        Ok(RxRing {
            map,
            next: 0,
            batch: batch.max(1),
            taken: Vec::with_capacity(batch.max(1)),
            held: 0,
            stats: LinkStats::default(),
        })
    }

    /// Takes the frames waiting, up to a batch (releasing those of the previous poll first);
    /// returns how many. Frames the slot could not hold whole are counted and skipped.
    pub fn poll(&mut self) -> usize {
        self.release();
        while self.held < self.batch {
            let i = (self.next + self.held) % self.map.frames;
            let status = self.map.status(i);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            let p = self.map.frame_ptr(i);
            // SAFETY: a frame whose status says USER is ours; tp_len at 4, tp_snaplen at 8,
            // tp_mac at 12 (u16).
            let (len, snap, mac) = unsafe {
                (
                    std::ptr::read_volatile(p.add(4).cast::<u32>()) as usize,
                    std::ptr::read_volatile(p.add(8).cast::<u32>()) as usize,
                    std::ptr::read_volatile(p.add(12).cast::<u16>()) as usize,
                )
            };
            self.held += 1;
            if status & TP_STATUS_COPY != 0 || snap < len || mac + snap > self.map.frame_size {
                self.stats.rx_truncated += 1;
                continue;
            }
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += len as u64;
            self.taken.push((i, mac, len));
        }
        self.taken.len()
    }

    /// Gives the slots of the last poll back to the kernel.
    pub fn release(&mut self) {
        for k in 0..self.held {
            self.map.set_status((self.next + k) % self.map.frames, TP_STATUS_KERNEL);
        }
        self.next = (self.next + self.held) % self.map.frames;
        self.held = 0;
        self.taken.clear();
    }

    /// The frames of the last poll, writable (in-place forwarding).
    pub fn frames_mut(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        let map = &self.map;
        self.taken.iter().map(move |&(i, off, len)| {
            // SAFETY: slots taken by the last poll are ours until released; distinct slots do
            // not overlap, and `off + len` fits in the slot (checked by poll). The mutable
            // borrow of `self` keeps every other access out meanwhile.
            unsafe { std::slice::from_raw_parts_mut(map.frame_ptr(i).add(off), len) }
        })
    }

    /// The frames of the last poll.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.taken.iter().map(move |&(i, off, len)| {
            // SAFETY: as in frames_mut, read only.
            unsafe { std::slice::from_raw_parts(self.map.frame_ptr(i).add(off), len) }
        })
    }

    /// Frames the last poll could take, at most.
    pub fn capacity(&self) -> usize {
        self.batch
    }

    /// Counters of what the ring received (frames, bytes, truncated).
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}
