//! A host's port on a Linux interface: what `xiad` runs on.
//!
//! Two AF_PACKET sockets, because where a socket is bound decides what it sees: XIP on one bound
//! to its ethertype, so frames reach it after the ingress hooks like any protocol's (nftables
//! impairments apply to it); XARP and QEMU's RARP announcements on one filtered by ethertype.
//! Everything is sent on the first (by a transmit ring, or `sendmmsg`). A netlink socket reports
//! the interface going down and up. The three are behind one epoll descriptor, which is what the
//! daemon waits on.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::afpacket::{LinkOptions, PacketSocket, RecvBatch};
use super::{Link, LinkState, LinkStats};
use crate::sys::{cvt, Epoll};
use crate::wire::ethernet::{EtherType, EthernetAddress};

const T_XIP: u64 = 0;
const T_AUX: u64 = 1;
const T_NETLINK: u64 = 2;
/// Receives of XIP frames between two looks at the other sockets when XIP never runs dry.
const LOOK_AROUND: u32 = 16;
/// `IFF_RUNNING`: the interface is operationally up (carrier, admin up).
const IFF_RUNNING: u32 = 0x40;

/// A host's port on one interface.
#[derive(Debug)]
pub struct HostPort {
    xip: PacketSocket,
    aux: PacketSocket,
    netlink: Option<Netlink>,
    epoll: Epoll,
    rx: RecvBatch,
    aux_rx: RecvBatch,
    /// Frames built but not yet taken by the socket (without a transmit ring), in order.
    tx: Vec<Vec<u8>>,
    tx_lens: Vec<usize>,
    tx_count: usize,
    /// Writability is watched (the socket or its ring was full).
    wants_out: bool,
    up: bool,
    /// Changes of state not yet reported, in order (a quick flap is two).
    changes: std::collections::VecDeque<LinkState>,
    turns: u32,
}

impl HostPort {
    /// Opens the port on `ifname`; `opts` tunes the XIP socket (the transmit ring defaults to
    /// 1024 frames).
    pub fn open(ifname: &str, opts: &LinkOptions) -> io::Result<HostPort> {
        let xip = PacketSocket::open(
            ifname,
            &LinkOptions {
                ethertypes: vec![EtherType::Xip],
                tx_ring: opts.tx_ring.or(Some(1024)),
                rx_ring: None,
                ..opts.clone()
            },
        )?;
        let aux = PacketSocket::open(
            ifname,
            &LinkOptions {
                ethertypes: vec![EtherType::Xarp, EtherType::Rarp],
                buffer_bytes: 1 << 20,
                tx_ring: None,
                rx_ring: None,
                ..opts.clone()
            },
        )?;
        let epoll = Epoll::new()?;
        epoll.add_readable(xip.as_raw_fd(), T_XIP)?;
        epoll.add_readable(aux.as_raw_fd(), T_AUX)?;
        // Without netlink (a restricted sandbox) the port still works; it only cannot tell
        // when the interface goes down.
        let netlink = match Netlink::open(xip.ifindex()) {
            Ok(n) => {
                epoll.add_readable(n.fd.as_raw_fd(), T_NETLINK)?;
                Some(n)
            }
            Err(e) => {
                tracing::warn!("{ifname}: no netlink ({e}): link state changes go unnoticed");
                None
            }
        };
        let up = xip.interface_flags().map_or(true, |f| f & IFF_RUNNING != 0);
        let frame = xip.max_frame();
        let batch = opts.batch.max(1);
        Ok(HostPort {
            rx: RecvBatch::new(batch, frame),
            aux_rx: RecvBatch::new(16, frame),
            tx: (0..batch).map(|_| vec![0u8; frame]).collect(),
            tx_lens: vec![0; batch],
            tx_count: 0,
            wants_out: false,
            xip,
            aux,
            netlink,
            epoll,
            up,
            changes: std::collections::VecDeque::new(),
            turns: 0,
        })
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        self.xip.ifname()
    }

    fn watch_out(&mut self, on: bool) -> io::Result<()> {
        if self.wants_out != on {
            let ev = libc::EPOLLIN as u32 | if on { libc::EPOLLOUT as u32 } else { 0 };
            self.epoll.ctl(libc::EPOLL_CTL_MOD, self.xip.as_raw_fd(), ev, T_XIP)?;
            self.wants_out = on;
        }
        Ok(())
    }

    /// Serves the other sockets and the XIP socket's errors and writability.
    fn look_around(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = self.epoll.wait(&mut events, 0)?;
        for ev in &events[..n] {
            let flags = ev.events;
            match ev.u64 {
                T_XIP => {
                    if flags & libc::EPOLLERR as u32 != 0 {
                        // Device down or similar: counted and logged; the port goes on.
                        let _ = self.xip.take_error();
                    }
                    if flags & libc::EPOLLOUT as u32 != 0 {
                        self.watch_out(false)?;
                    }
                }
                T_AUX => {
                    if flags & libc::EPOLLERR as u32 != 0 {
                        let _ = self.aux.take_error();
                    }
                    for _ in 0..16 {
                        if self.aux.recv_batch(&mut self.aux_rx)? == 0 {
                            break;
                        }
                        self.aux_rx.frames().for_each(&mut *f);
                    }
                }
                T_NETLINK => {
                    let states = self.netlink.as_mut().map(Netlink::drain).unwrap_or_default();
                    for up in states {
                        if up != self.up {
                            self.up = up;
                            self.changes.push_back(if up { LinkState::Up } else { LinkState::Down });
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Without a transmit ring: frames are built in our buffers and handed over by `sendmmsg`.
    fn transmit_mmsg(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool> {
        loop {
            let mut dry = false;
            while self.tx_count < self.tx.len() {
                match fill(&mut self.tx[self.tx_count]) {
                    Some(n) => {
                        self.tx_lens[self.tx_count] = n;
                        self.tx_count += 1;
                    }
                    None => {
                        dry = true;
                        break;
                    }
                }
            }
            if self.tx_count == 0 {
                return Ok(true);
            }
            let frames: Vec<&[u8]> =
                self.tx[..self.tx_count].iter().zip(&self.tx_lens).map(|(b, &l)| &b[..l]).collect();
            let sent = self.xip.send_batch(&frames)?;
            if sent < self.tx_count {
                // Keep the unsent frames in order at the front and wait for room.
                self.tx[..self.tx_count].rotate_left(sent);
                self.tx_lens[..self.tx_count].rotate_left(sent);
                self.tx_count -= sent;
                self.watch_out(true)?;
                return Ok(false);
            }
            self.tx_count = 0;
            if dry {
                return Ok(true);
            }
        }
    }

    /// With a transmit ring: frames are built in the kernel's ring, which sends them without a
    /// copy.
    fn transmit_ring(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool> {
        let mut queued = 0;
        loop {
            let Some(slot) = self.xip.tx_slot() else {
                // Ring full: the kernel frees slots as it sends; wait for that.
                self.xip.tx_flush()?;
                self.watch_out(true)?;
                return Ok(false);
            };
            let Some(n) = fill(slot) else { break };
            self.xip.tx_commit(n);
            queued += 1;
            if queued % 64 == 0 {
                self.xip.tx_flush()?;
            }
        }
        self.xip.tx_flush()?;
        Ok(true)
    }
}

impl Link for HostPort {
    fn mac(&self) -> EthernetAddress {
        self.xip.mac()
    }

    fn mtu(&self) -> usize {
        self.xip.mtu()
    }

    fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn poll_at(&self) -> Option<Instant> {
        // Frames wait in the transmit ring for room in the socket buffer: flush again soon.
        self.xip.tx_needs_flush().then(|| Instant::now() + Duration::from_millis(1))
    }

    fn receive(&mut self, budget: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut taken = 0;
        while taken < budget {
            let n = self.xip.recv_batch(&mut self.rx)?;
            self.rx.frames().for_each(&mut *f);
            taken += n;
            if n < self.rx.capacity() {
                break;
            }
        }
        // The other sockets (and the XIP socket's errors and writability) are looked at when the
        // wake-up was not for XIP frames, and now and then while XIP frames keep coming: a
        // look costs a system call, which every busy wake-up would pay otherwise.
        self.turns += 1;
        if taken == 0 || self.turns.is_multiple_of(LOOK_AROUND) {
            self.look_around(f)?;
        }
        Ok(taken)
    }

    fn transmit(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> io::Result<bool> {
        let done = if self.xip.has_tx_ring() { self.transmit_ring(fill)? } else { self.transmit_mmsg(fill)? };
        if done {
            self.watch_out(false)?;
        }
        Ok(done)
    }

    fn poll_state(&mut self) -> Option<LinkState> {
        self.changes.pop_front()
    }

    fn is_up(&self) -> bool {
        self.up
    }

    fn stats(&self) -> LinkStats {
        self.xip.stats().sum(&self.aux.stats())
    }
}

/// A NETLINK_ROUTE socket listening to link changes of one interface.
#[derive(Debug)]
struct Netlink {
    fd: OwnedFd,
    ifindex: i32,
}

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

impl Netlink {
    fn open(ifindex: i32) -> io::Result<Netlink> {
        // SAFETY: plain socket(2).
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; family and groups set below.
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_LINK;
        // SAFETY: `sa` is a valid sockaddr_nl of the size passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(Netlink { fd, ifindex })
    }

    /// Reads every waiting message; the interface's states in them, in order.
    fn drain(&mut self) -> Vec<bool> {
        let mut states = Vec::new();
        // Large enough for any link message (they carry the interface's statistics and more).
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: reads into a live buffer of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                // Would block, or an overrun (ENOBUFS: messages were lost; the next ones tell).
                return states;
            }
            states.extend(link_states(&buf[..n as usize], self.ifindex));
        }
    }
}

/// The states of interface `ifindex` in a batch of netlink messages, in order.
fn link_states(mut msgs: &[u8], ifindex: i32) -> Vec<bool> {
    let mut states = Vec::new();
    while msgs.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
        if len < NLMSG_HDR || len > msgs.len() {
            break;
        }
        let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
        if (kind == RTM_NEWLINK || kind == RTM_DELLINK) && len >= NLMSG_HDR + IFINFOMSG {
            let i = &msgs[NLMSG_HDR..NLMSG_HDR + IFINFOMSG];
            let index = i32::from_ne_bytes([i[4], i[5], i[6], i[7]]);
            let flags = u32::from_ne_bytes([i[8], i[9], i[10], i[11]]);
            if index == ifindex {
                states.push(kind == RTM_NEWLINK && flags & IFF_RUNNING != 0);
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        msgs = msgs.get(next..).unwrap_or(&[]);
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, index: i32, flags: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + IFINFOMSG + 3];
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&index.to_ne_bytes());
        m[NLMSG_HDR + 8..NLMSG_HDR + 12].copy_from_slice(&flags.to_ne_bytes());
        m.push(0); // padding to 4 bytes
        m
    }

    #[test]
    fn link_messages_are_read_for_our_interface_only() {
        let mut b = msg(RTM_NEWLINK, 3, IFF_RUNNING | 1);
        b.extend(msg(RTM_NEWLINK, 4, 1));
        assert_eq!(link_states(&b, 3), vec![true]);
        assert_eq!(link_states(&b, 4), vec![false]);
        assert!(link_states(&b, 5).is_empty());
        b.extend(msg(RTM_DELLINK, 3, IFF_RUNNING));
        assert_eq!(link_states(&b, 3), vec![true, false]);
        // Truncated or lying lengths end the walk.
        assert!(link_states(&b[..10], 3).is_empty());
        let mut lie = msg(RTM_NEWLINK, 3, IFF_RUNNING);
        lie[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(link_states(&lie, 3).is_empty());
    }
}
