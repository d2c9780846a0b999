//! Raw Ethernet on Linux: an AF_PACKET socket bound to one interface.
//!
//! Batched: `recvmmsg` and `sendmmsg` move up to a batch of frames per system call (one copy
//! each way, like a ring, without its per-block latency at low rates). The kernel filters by
//! ethertype (classic BPF) so the process only wakes for frames it wants; its own outgoing frames
//! are not looped back (`PACKET_IGNORE_OUTGOING`); socket buffers are raised (forced as root)
//! so bursts at 10 Gbit/s are not dropped; frames up to the interface MTU (65535 on veth)
//! arrive whole, and a truncated one is counted and dropped, never delivered.
//!
//! The TPACKET_V2 rings (`PACKET_TX_RING`, `PACKET_RX_RING`) are in `ring`; [`RxRing`] is
//! re-exported here.

mod ring;

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::LinkStats;
use crate::sys::cvt;
use crate::wire::ethernet::{EtherType, EthernetAddress, HEADER_LEN};
use ring::TxRing;

pub use ring::RxRing;

const SOL_PACKET: libc::c_int = 263;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const ETH_P_ALL: u16 = 0x0003;
const PACKET_STATISTICS: libc::c_int = 6;

/// How to open a [`PacketSocket`].
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Ethertypes to receive; empty receives every frame (a relay).
    pub ethertypes: Vec<EtherType>,
    /// Socket buffer sizes, bytes.
    pub buffer_bytes: usize,
    /// Frames per batch.
    pub batch: usize,
    /// Skip the qdisc on transmit (faster; traffic shaping on the interface no longer applies).
    pub qdisc_bypass: bool,
    /// Frames of a transmit ring (PACKET_TX_RING): frames are built in memory shared with the
    /// kernel, which sends them without copying them. `None`: `sendmmsg`.
    pub tx_ring: Option<usize>,
    /// Frames of a receive ring (PACKET_RX_RING): the kernel writes frames into memory shared
    /// with us, no system call per batch ([`PacketSocket::take_rx_ring`]). `None`: `recvmmsg`.
    /// Not together with `tx_ring`. The ring takes at most 64 MiB (fewer frames at large MTUs).
    pub rx_ring: Option<usize>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            ethertypes: vec![EtherType::Xip, EtherType::Xarp, EtherType::Rarp],
            buffer_bytes: 32 << 20,
            batch: 64,
            qdisc_bypass: false,
            tx_ring: None,
            rx_ring: None,
        }
    }
}

/// The descriptors of one `recvmmsg`/`sendmmsg` call, kept between calls so that a batch costs
/// no allocation.
#[derive(Default)]
struct MsgScratch {
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the pointers inside are written just before each call and never read by us; they do
// not own anything.
unsafe impl Send for MsgScratch {}
// SAFETY: as above; shared references give no access to the pointers.
unsafe impl Sync for MsgScratch {}

impl std::fmt::Debug for MsgScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgScratch").field("capacity", &self.hdrs.capacity()).finish()
    }
}

impl MsgScratch {
    /// Descriptors for `bufs`, one buffer per message.
    fn prepare<'a>(&mut self, bufs: impl Iterator<Item = (*mut u8, usize)> + 'a) -> &mut [libc::mmsghdr] {
        self.iovs.clear();
        self.iovs.extend(bufs.map(|(p, len)| libc::iovec { iov_base: p.cast(), iov_len: len }));
        let n = self.iovs.len();
        // SAFETY: an all-zero mmsghdr is valid.
        self.hdrs.resize_with(n, || unsafe { mem::zeroed() });
        for (h, iov) in self.hdrs.iter_mut().zip(self.iovs.iter_mut()) {
            // SAFETY: as above; every field is then set or left zero.
            *h = unsafe { mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        &mut self.hdrs[..n]
    }
}

/// True for errors of the device rather than of our use of the socket: the interface went down
/// or away, or the frame does not fit it. They cost the frame, not the daemon.
fn is_device_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV | libc::EMSGSIZE | libc::ENETUNREACH | libc::EPERM)
    )
}

/// Receive buffers for one batch.
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    count: usize,
    scratch: MsgScratch,
}

impl RecvBatch {
    /// `n` buffers for frames of up to `frame_len` bytes.
    pub fn new(n: usize, frame_len: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..n.max(1)).map(|_| vec![0u8; frame_len]).collect(),
            lens: vec![0; n.max(1)],
            count: 0,
            scratch: MsgScratch::default(),
        }
    }

    /// Frames of the last receive.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs.iter().zip(&self.lens).take(self.count).map(|(b, &l)| &b[..l])
    }

    /// Frames of the last receive, writable (in-place forwarding).
    pub fn frames_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let count = self.count;
        self.bufs.iter_mut().zip(&self.lens).take(count).map(|(b, &l)| &mut b[..l])
    }

    /// Number of frames of the last receive.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frames one receive can take.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }
}

/// An AF_PACKET socket on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    ifname: String,
    mac: EthernetAddress,
    mtu: usize,
    stats: LinkStats,
    tx_ring: Option<TxRing>,
    rx_ring: Option<RxRing>,
    tx_scratch: MsgScratch,
    /// The kernel's drop counter resets when read: the sum so far.
    kernel_dropped: std::cell::Cell<u64>,
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

/// `struct ifreq`: the name, then a 24-byte union (index, MTU or hardware address here).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;

/// Interface facts by ioctl on `fd`: index, MAC, MTU. (Not sysfs: after `setns` a thread still
/// sees the sysfs of the namespace it was mounted in.)
fn interface(fd: RawFd, ifname: &str) -> io::Result<(i32, EthernetAddress, usize)> {
    if ifname.is_empty() || ifname.len() >= 16 || ifname.as_bytes().contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name `{ifname}`")));
    }
    let ask = |req: libc::c_ulong| -> io::Result<[u8; 24]> {
        let mut r = IfReq { name: [0; 16], data: [0; 24] };
        r.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        // SAFETY: `r` is a valid ifreq-sized buffer for these three requests.
        let rc = unsafe { libc::ioctl(fd, req as _, &mut r as *mut IfReq) };
        cvt(rc).map_err(|e| io::Error::new(e.kind(), format!("{ifname}: {e}")))?;
        Ok(r.data)
    };
    let i32_at = |d: [u8; 24]| i32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
    let ifindex = i32_at(ask(SIOCGIFINDEX)?);
    let mtu = i32_at(ask(SIOCGIFMTU)?).max(0) as usize;
    let hw = ask(SIOCGIFHWADDR)?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&hw[2..8]);
    Ok((ifindex, EthernetAddress(mac), mtu))
}

/// A classic BPF program accepting frames whose ethertype is one of `types`.
fn ethertype_filter(types: &[EtherType]) -> Vec<libc::sock_filter> {
    let n = types.len();
    let mut prog = vec![libc::sock_filter { code: 0x28, jt: 0, jf: 0, k: 12 }]; // ldh [12]
    for (i, t) in types.iter().enumerate() {
        // jeq #type, accept (the accept is after the remaining n-i-1 tests and the reject).
        let jt = (n - i) as u8;
        prog.push(libc::sock_filter { code: 0x15, jt, jf: 0, k: u32::from(u16::from(*t)) });
    }
    prog.push(libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }); // ret #0
    prog.push(libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x0004_0000 }); // ret #262144
    prog
}

impl PacketSocket {
    /// Opens a non-blocking socket on `ifname`.
    pub fn open(ifname: &str, opts: &LinkOptions) -> io::Result<PacketSocket> {
        // Protocol 0: receive nothing until the filter is in place and the socket bound.
        // SAFETY: plain socket(2) call.
        let raw = cvt(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let (ifindex, mac, mtu) = interface(raw, ifname)?;
        // One ethertype: bind to it, so frames reach us after the ingress hooks (nftables
        // netdev rules, tc ingress) like any protocol's, and no filter is needed. Several, or
        // all: bind to every protocol (taps see frames before ingress) with a filter.
        let single = match opts.ethertypes.as_slice() {
            [one] => Some(u16::from(*one)),
            _ => None,
        };
        if single.is_none() && !opts.ethertypes.is_empty() {
            let prog = ethertype_filter(&opts.ethertypes);
            let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut _ };
            // SAFETY: `fprog` points to `prog`, alive across the call; the kernel copies it.
            cvt(unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    (&fprog as *const libc::sock_fprog).cast(),
                    mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                )
            })?;
        }
        setsockopt_int(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        let buf = opts.buffer_bytes.min(i32::MAX as usize) as libc::c_int;
        for (force, plain) in
            [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
        {
            if setsockopt_int(raw, libc::SOL_SOCKET, force, buf).is_err() {
                setsockopt_int(raw, libc::SOL_SOCKET, plain, buf)?;
            }
        }
        if opts.qdisc_bypass {
            setsockopt_int(raw, SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
        }
        if opts.tx_ring.is_some() && opts.rx_ring.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a receive and a transmit ring together",
            ));
        }
        let tx_ring = match opts.tx_ring {
            Some(frames) => Some(TxRing::new(raw, frames, mtu + HEADER_LEN)?),
            None => None,
        };
        let rx_ring = match opts.rx_ring {
            Some(frames) => Some(RxRing::new(raw, frames, mtu + HEADER_LEN, opts.batch)?),
            None => None,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = single.unwrap_or(ETH_P_ALL).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket {
            fd,
            ifindex,
            ifname: ifname.to_string(),
            mac,
            mtu,
            stats: LinkStats::default(),
            tx_scratch: MsgScratch::default(),
            kernel_dropped: std::cell::Cell::new(0),
            tx_ring,
            rx_ring,
        })
    }

    /// The interface's flags now (`IFF_UP`, `IFF_RUNNING`, ...), by ioctl.
    pub fn interface_flags(&self) -> io::Result<u32> {
        let mut r = IfReq { name: [0; 16], data: [0; 24] };
        r.name[..self.ifname.len()].copy_from_slice(self.ifname.as_bytes());
        // SAFETY: `r` is a valid ifreq-sized buffer for SIOCGIFFLAGS.
        cvt(unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCGIFFLAGS as _, &mut r as *mut IfReq) })?;
        Ok(u32::from(u16::from_ne_bytes([r.data[0], r.data[1]])))
    }

    /// The receive ring ([`LinkOptions::rx_ring`]), to read frames from in place while the
    /// socket is used to send (its counters are its own: [`RxRing::stats`]).
    pub fn take_rx_ring(&mut self) -> Option<RxRing> {
        self.rx_ring.take()
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// The interface's MTU (largest Ethernet payload).
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Largest frame: MTU plus the Ethernet header.
    pub fn max_frame(&self) -> usize {
        self.mtu + HEADER_LEN
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Counters (the kernel's drop count is fetched, and reset there, on each call).
    pub fn stats(&self) -> LinkStats {
        #[repr(C)]
        struct TpacketStats {
            packets: u32,
            drops: u32,
        }
        let mut st = TpacketStats { packets: 0, drops: 0 };
        let mut len = mem::size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` and `len` live across the call and `len` is st's size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStats).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.kernel_dropped.set(self.kernel_dropped.get() + u64::from(st.drops));
        }
        LinkStats { rx_kernel_dropped: self.kernel_dropped.get(), ..self.stats }
    }

    /// Receives up to a batch of frames without blocking; 0 when none is waiting.
    pub fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let n = batch.bufs.len();
        let hdrs = batch.scratch.prepare(batch.bufs.iter_mut().map(|b| (b.as_mut_ptr(), b.len())));
        // SAFETY: `hdrs` and the buffers they point to outlive the call; `n` is their count.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            batch.count = 0;
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            if is_device_error(&e) {
                // Reported once (the socket's pending error is cleared by reading it).
                self.stats.rx_errors += 1;
                tracing::warn!("{}: receive: {e}", self.ifname);
                return Ok(0);
            }
            return Err(e);
        }
        let hdrs = &batch.scratch.hdrs[..n];
        // Keep only whole frames, packed at the front.
        let mut kept = 0;
        for (i, h) in hdrs.iter().enumerate().take(r as usize) {
            let len = h.msg_len as usize;
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > batch.bufs[i].len() {
                self.stats.rx_truncated += 1;
                continue;
            }
            if kept != i {
                batch.bufs.swap(kept, i);
            }
            batch.lens[kept] = len;
            kept += 1;
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += len as u64;
        }
        batch.count = kept;
        Ok(kept)
    }

    /// Sends frames (complete Ethernet frames) without blocking; returns how many were
    /// consumed: sent, or dropped because the device refused them (ENOBUFS, as a full queue on
    /// a wire would; counted) or because the device could not take them (down, gone, or a frame
    /// over an MTU lowered since the socket was opened; counted in `tx_errors`). The rest did not
    /// fit in the socket buffer: wait for writability.
    pub fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut done = 0;
        while done < frames.len() {
            let rest = &frames[done..];
            // The kernel only reads through these pointers.
            let hdrs = self.tx_scratch.prepare(rest.iter().map(|f| (f.as_ptr() as *mut u8, f.len())));
            // SAFETY: `hdrs` and the frames outlive the call; the kernel only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let sent = r as usize;
                self.stats.tx_frames += sent as u64;
                self.stats.tx_bytes += rest[..sent].iter().map(|f| f.len() as u64).sum::<u64>();
                done += sent;
                continue;
            }
            // The first frame of `rest` failed: sendmmsg reports an error only when nothing went.
            let e =
                if r < 0 { io::Error::last_os_error() } else { io::Error::from(io::ErrorKind::WouldBlock) };
            match e.kind() {
                io::ErrorKind::WouldBlock => break,
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.stats.tx_dropped += 1;
                    done += 1;
                }
                _ if is_device_error(&e) => {
                    self.device_error("send", &e);
                    done += 1;
                }
                _ => return Err(e),
            }
        }
        Ok(done)
    }

    /// Sends one frame; false if the socket buffer (or ring) is full. A frame longer than
    /// [`PacketSocket::max_frame`] is refused (`InvalidInput`), whatever the path.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<bool> {
        if frame.len() > self.max_frame() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame larger than the MTU"));
        }
        if self.tx_ring.is_some() {
            let Some(slot) = self.tx_slot() else { return Ok(false) };
            let Some(dst) = slot.get_mut(..frame.len()) else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame larger than the MTU"));
            };
            dst.copy_from_slice(frame);
            self.tx_commit(frame.len());
            self.tx_flush()?;
            return Ok(true);
        }
        Ok(self.send_batch(&[frame])? == 1)
    }

    /// True when frames are sent through a transmit ring ([`PacketSocket::tx_slot`]).
    pub fn has_tx_ring(&self) -> bool {
        self.tx_ring.is_some()
    }

    /// The next free frame of the transmit ring, `max_frame()` bytes to build a frame in; `None`
    /// when the ring is full (wait for writability) or there is no ring.
    pub fn tx_slot(&mut self) -> Option<&mut [u8]> {
        self.tx_ring.as_mut()?.slot()
    }

    /// Queues the frame built in the slot from [`PacketSocket::tx_slot`] (`len` bytes).
    pub fn tx_commit(&mut self, len: usize) {
        if let Some(r) = self.tx_ring.as_mut() {
            r.commit(len);
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += len as u64;
        }
    }

    /// Hands the queued frames to the kernel.
    pub fn tx_flush(&mut self) -> io::Result<()> {
        let Some(r) = self.tx_ring.as_mut() else { return Ok(()) };
        if r.queued == 0 {
            return Ok(());
        }
        // SAFETY: send(2) with no data: "send what the ring holds".
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if rc >= 0 {
            r.queued = 0;
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            // The socket's buffer is full: the kernel took what it could and the rest stays
            // queued in the ring; `queued` stays set so that the owner flushes again soon
            // ([`PacketSocket::tx_needs_flush`]).
            io::ErrorKind::WouldBlock => {}
            _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                r.queued = 0;
                self.stats.tx_dropped += 1;
            }
            _ if is_device_error(&e) => {
                r.queued = 0;
                self.device_error("send", &e);
            }
            _ => return Err(e),
        }
        Ok(())
    }

    /// True when frames wait in the transmit ring for a flush the kernel refused (socket buffer
    /// full): call [`PacketSocket::tx_flush`] again shortly.
    pub fn tx_needs_flush(&self) -> bool {
        self.tx_ring.as_ref().is_some_and(|r| r.queued > 0)
    }

    /// Takes the socket's pending error (reported by epoll as EPOLLERR), counting it.
    pub fn take_error(&mut self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` live across the call and `len` is err's size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r < 0 || err == 0 {
            return None;
        }
        self.stats.rx_errors += 1;
        let e = io::Error::from_raw_os_error(err);
        tracing::warn!("{}: {e}", self.ifname);
        Some(e)
    }

    fn device_error(&mut self, what: &str, e: &io::Error) {
        self.stats.tx_errors += 1;
        // The first of a run and then every 1024th, so that a dead link does not flood the log.
        if self.stats.tx_errors % 1024 == 1 {
            tracing::warn!("{}: {what}: {e} ({} frames lost so far)", self.ifname, self.stats.tx_errors);
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Runs `f` inside network namespace `netns` (a file under /var/run/netns) on a fresh thread,
/// so the caller's thread keeps its namespace. Sockets created inside stay in that namespace.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let path = CString::new(format!("/var/run/netns/{netns}")).map_err(|_| io::ErrorKind::InvalidInput)?;
    std::thread::spawn(move || -> io::Result<T> {
        // SAFETY: open(2) on a valid C string.
        let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` is ours; setns only affects this thread.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("netns thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_program_shape() {
        let p = ethertype_filter(&[EtherType::Xip, EtherType::Xarp]);
        assert_eq!(p.len(), 5);
        assert_eq!((p[1].jt, p[1].k), (2, 0xC0DE));
        assert_eq!((p[2].jt, p[2].k), (1, 0x9990));
        assert_eq!(p[3].k, 0, "reject");
        assert_eq!(p[4].k, 0x40000, "accept");
    }

    #[test]
    fn missing_interface_is_an_error() {
        assert!(PacketSocket::open("no-such-if0", &LinkOptions::default()).is_err());
    }
}
