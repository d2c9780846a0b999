//! `xiad`: the host daemon. One per host (network namespace): it owns the interface, runs the
//! [`Host`] state machine and serves applications over a Unix socket ([`crate::ipc`]).
//!
//! A single thread and one epoll loop: frames in and out in batches on the AF_PACKET socket,
//! applications' sockets, timers from the host, signals through a signalfd. No locks, no task
//! switches on the data path; stream bytes move between the application's socket and the
//! STREAM buffers with one copy each way.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::dag::Dag;
use crate::host::{Handle, HandleMap, Host, HostConfig, HostError, HostEvent};
use crate::ipc::{ErrorCode, HostInfo, Msg, FRAME_HEADER};
use crate::keys::Keypair;
use crate::link::afpacket::{LinkOptions, PacketSocket, RecvBatch};
use crate::pcap::PcapWriter;
use crate::transport::chunk::{StoreError, Verify};
use crate::wire::ethernet::EtherType;
use crate::xid::Xid;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The interface to own.
    pub interface: String,
    /// Where applications connect.
    pub socket: PathBuf,
    /// The host key (created if missing).
    pub key_file: PathBuf,
    /// Host tunables (the MTU is taken from the interface).
    pub host: HostConfig,
    /// Link tunables.
    pub link: LinkOptions,
    /// Record every frame in and out to this pcap file.
    pub pcap: Option<PathBuf>,
}

const TOKEN_LINK: u64 = 0;
const TOKEN_LISTENER: u64 = 1;
const TOKEN_SIGNAL: u64 = 2;
const TOKEN_AUX: u64 = 3;
const TOKEN_HASHED: u64 = 4;
const FIRST_CONN: u64 = 16;
/// Frames received per wake-up before other work gets a turn.
const RX_BUDGET: usize = 1024;
/// Bytes moved per stream per loop turn, so one busy stream does not starve the rest.
const PUMP_BUDGET: usize = 4 << 20;
/// Outgoing message bytes buffered for an application before the daemon stops reading its
/// host queue (datagrams then wait, and are dropped by the host's own bounded queue).
const OUTBUF_SOFT_LIMIT: usize = 8 << 20;
/// Outgoing bytes beyond which an application that does not read is cut off (fetched chunks
/// are the only messages that can still pile up past the soft limit).
const OUTBUF_HARD_LIMIT: usize = 64 << 20;
/// Remembered outcomes of finished streams.
const STATUS_MEMORY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Fresh,
    Connecting(Handle),
    Raw(Handle),
    Listener(Handle),
    Dgram(Handle),
    Ping(Handle),
    Chunks(Handle),
}

#[derive(Debug)]
struct Conn {
    sock: UnixStream,
    role: Role,
    inbuf: Vec<u8>,
    out: OutQueue,
    /// The application sent EOF (raw mode) or closed.
    read_closed: bool,
    /// We shut down our writing side (peer FIN delivered).
    write_shut: bool,
    /// Writing to the application failed: it closed its socket.
    write_dead: bool,
    /// Bytes of `inbuf` already consumed.
    in_at: usize,
    /// The socket is in the epoll set (it leaves on HUP, which cannot be masked).
    registered: bool,
    /// Close once `out` is flushed.
    close_after_flush: bool,
    interest: u32,
}

impl Conn {
    fn pending_out(&self) -> usize {
        self.out.len()
    }

    fn queue(&mut self, m: &Msg) {
        self.out.push_small(&m.encode());
    }
}

/// Bytes waiting to be written to an application: small messages share buffers, big payloads
/// (fetched chunks) are queued as they are, without a copy, and written with `writev`.
#[derive(Debug, Default)]
struct OutQueue {
    bufs: VecDeque<Vec<u8>>,
    /// Bytes of the front buffer already written.
    at: usize,
    len: usize,
}

impl OutQueue {
    /// Buffers of small messages grow up to this before a new one starts.
    const SHARE: usize = 64 << 10;

    fn len(&self) -> usize {
        self.len
    }

    fn push_small(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        if let Some(back) = self.bufs.back_mut().filter(|b| b.len() + bytes.len() <= Self::SHARE) {
            back.extend_from_slice(bytes);
            return;
        }
        self.bufs.push_back(bytes.to_vec());
    }

    fn push_owned(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.bufs.push_back(bytes);
        }
    }

    fn clear(&mut self) {
        *self = OutQueue::default();
    }

    /// Writes as much as the socket takes.
    fn write_to(&mut self, sock: &mut UnixStream) -> io::Result<()> {
        while self.len > 0 {
            let mut iov = [io::IoSlice::new(&[]); 16];
            let mut k = 0;
            for (i, b) in self.bufs.iter().take(iov.len()).enumerate() {
                iov[i] = io::IoSlice::new(if i == 0 { &b[self.at..] } else { b });
                k = i + 1;
            }
            let mut n = match sock.write_vectored(&iov[..k]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.len -= n;
            while n > 0 {
                let front = self.bufs.front().map_or(0, |b| b.len() - self.at);
                if n >= front {
                    n -= front;
                    self.bufs.pop_front();
                    self.at = 0;
                } else {
                    self.at += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is valid for the call.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: `events` is a valid buffer of its length.
        let r = unsafe {
            libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }
}

/// Blocks SIGTERM and SIGINT and returns a signalfd that reports them (for the project's
/// daemons: call it before any thread starts, so that none of them takes the signals).
pub fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local, then signalfd on it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        cvt(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
        let fd = cvt(libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The wall clock in ms since the Unix epoch (what signed control messages carry).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn host_error_code(e: &HostError) -> ErrorCode {
    match e {
        HostError::BadHandle => ErrorCode::BadHandle,
        HostError::AddrInUse => ErrorCode::AddrInUse,
        HostError::TooLarge { .. } => ErrorCode::TooLarge,
        HostError::Unreachable => ErrorCode::Unreachable,
        HostError::Store(StoreError::TooLarge(_)) => ErrorCode::TooLarge,
        HostError::Store(StoreError::Full { .. }) => ErrorCode::NoSpace,
        HostError::NotAService => ErrorCode::NotAService,
        HostError::NotRegistered => ErrorCode::NotRegistered,
        HostError::NotAPath => ErrorCode::BadRequest,
    }
}

fn error_msg(e: HostError) -> Msg {
    Msg::Error { code: host_error_code(&e), message: e.to_string() }
}

/// The running daemon.
struct Daemon {
    host: Host,
    link: PacketSocket,
    aux: PacketSocket,
    aux_rx: RecvBatch,
    epoll: Epoll,
    listener: UnixListener,
    conns: HandleMap<Conn>,
    next_conn: u64,
    /// Which connection owns a host handle.
    owners: HandleMap<u64>,
    /// Accepted streams waiting for an application to attach: handle -> (listener connection,
    /// attach token).
    unclaimed: HandleMap<(u64, u64)>,
    /// Applications cut off for not reading their messages.
    apps_overflowed: u64,
    /// Echo replies and errors not delivered to a ping application that did not read.
    echo_dropped: u64,
    /// Attach tokens -> handle. Tokens are random, so that only the application told of an
    /// incoming stream (its listener) can take it over.
    tokens: HandleMap<Handle>,
    status: HandleMap<Option<ErrorCode>>,
    status_order: VecDeque<u64>,
    rx: RecvBatch,
    tx: Vec<Vec<u8>>,
    tx_lens: Vec<usize>,
    tx_count: usize,
    tx_blocked: bool,
    /// EPOLLOUT is registered on the link (while blocked).
    link_wants_out: bool,
    pcap: Option<PcapWriter<io::BufWriter<std::fs::File>>>,
    /// Connections whose raw stream may have bytes to move.
    dirty: HashSet<u64, std::hash::BuildHasherDefault<crate::host::HandleHasher>>,
    hasher: Hasher,
}

/// A thread that hashes fetched chunks (SHA-1 at ~1.6 GB/s: 0.6 ms a MiB the event loop would
/// otherwise spend not receiving), answering through a channel and an eventfd in the epoll set.
struct Hasher {
    jobs: std::sync::mpsc::Sender<Verify>,
    done: std::sync::mpsc::Receiver<(Verify, bool)>,
    wake: OwnedFd,
}

impl Hasher {
    fn start() -> io::Result<Hasher> {
        // SAFETY: plain eventfd; the descriptor is ours.
        let wake =
            unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?) };
        // SAFETY: dup of a descriptor we own.
        let wake2 = unsafe { OwnedFd::from_raw_fd(cvt(libc::dup(wake.as_raw_fd()))?) };
        let (jobs, rx) = std::sync::mpsc::channel::<Verify>();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("xiad-hash".into()).spawn(move || {
            // Ends when the daemon drops its sender.
            for v in rx {
                let ok = v.check();
                if tx.send((v, ok)).is_err() {
                    return;
                }
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer to our eventfd.
                unsafe { libc::write(wake2.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            }
        })?;
        Ok(Hasher { jobs, done, wake })
    }

    /// Clears the wake-up count.
    fn ack(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer.
        unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
    }
}

/// Runs the daemon until SIGTERM or SIGINT. `ready` is called once with the host's HID and
/// DAG when it is listening (the binary prints them; tests wait for them).
pub fn run(cfg: DaemonConfig, ready: impl FnOnce(&Xid, &Dag, &PacketSocket)) -> io::Result<()> {
    let key = Keypair::load_or_generate(&cfg.key_file).map_err(|e| io::Error::other(e.to_string()))?;
    // XIP on a socket bound to its ethertype (it sees frames after the ingress hooks, so
    // nftables impairments apply to it); XARP and QEMU's RARP announcements on a second one.
    let link = PacketSocket::open(
        &cfg.interface,
        &LinkOptions {
            ethertypes: vec![EtherType::Xip],
            tx_ring: cfg.link.tx_ring.or(Some(1024)),
            ..cfg.link.clone()
        },
    )?;
    let aux = PacketSocket::open(
        &cfg.interface,
        &LinkOptions {
            ethertypes: vec![EtherType::Xarp, EtherType::Rarp],
            buffer_bytes: 1 << 20,
            ..cfg.link.clone()
        },
    )?;
    let mut host_cfg = cfg.host.clone();
    host_cfg.mtu = link.mtu();
    // Fetched chunks are hashed on a thread of their own.
    host_cfg.fetch.defer_verify = true;
    let now = Instant::now();
    let host = Host::new(host_cfg, key, link.mac(), now, wall_ms());
    if let Some(parent) = cfg.socket.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(&cfg.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&cfg.socket)?;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    let sig = signal_fd()?;
    // After the signals are blocked: the thread inherits the mask, so SIGTERM reaches the
    // signalfd (and the pcap is flushed) instead of killing the process from that thread.
    let hasher = Hasher::start()?;
    epoll.ctl(libc::EPOLL_CTL_ADD, link.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_LINK)?;
    epoll.ctl(libc::EPOLL_CTL_ADD, listener.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_LISTENER)?;
    epoll.ctl(libc::EPOLL_CTL_ADD, sig.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_SIGNAL)?;
    epoll.ctl(libc::EPOLL_CTL_ADD, aux.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_AUX)?;
    epoll.ctl(libc::EPOLL_CTL_ADD, hasher.wake.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_HASHED)?;
    let frame = link.max_frame();
    let batch = cfg.link.batch.max(1);
    let pcap = match &cfg.pcap {
        Some(p) => Some(PcapWriter::new(io::BufWriter::new(std::fs::File::create(p)?))?),
        None => None,
    };
    let mut d = Daemon {
        host,
        link,
        aux,
        aux_rx: RecvBatch::new(16, frame),
        epoll,
        listener,
        conns: Default::default(),
        next_conn: FIRST_CONN,
        owners: Default::default(),
        unclaimed: Default::default(),
        tokens: Default::default(),
        apps_overflowed: 0,
        echo_dropped: 0,
        status: Default::default(),
        status_order: VecDeque::new(),
        rx: RecvBatch::new(batch, frame),
        tx: (0..batch).map(|_| vec![0u8; frame]).collect(),
        tx_lens: vec![0; batch],
        tx_count: 0,
        tx_blocked: false,
        link_wants_out: false,
        pcap,
        dirty: Default::default(),
        hasher,
    };
    ready(&d.host.hid(), &d.host.dag(), &d.link);
    let result = d.event_loop();
    if let Some(p) = d.pcap.take() {
        let _ = p.into_inner().and_then(|mut w| w.flush());
    }
    let _ = std::fs::remove_file(&cfg.socket);
    result
}

impl Daemon {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let now = Instant::now();
            let timeout = if !self.dirty.is_empty() {
                0
            } else if self.link.tx_needs_flush() {
                // Frames wait in the transmit ring for room in the socket buffer.
                1
            } else {
                match self.host.poll_timeout() {
                    Some(t) if t <= now => 0,
                    // Round up so we do not wake a hair early and spin.
                    Some(t) => (t - now).as_micros().div_ceil(1000).min(1000) as i32,
                    None => 1000,
                }
            };
            let n = self.epoll.wait(&mut events, timeout)?;
            for ev in &events[..n] {
                let (token, flags) = (ev.u64, ev.events);
                match token {
                    TOKEN_LINK => {
                        if flags & libc::EPOLLERR as u32 != 0 {
                            // Device down or similar: counted and logged; the link goes on.
                            let _ = self.link.take_error();
                        }
                        if flags & libc::EPOLLOUT as u32 != 0 {
                            self.tx_blocked = false;
                        }
                        if flags & libc::EPOLLIN as u32 != 0 {
                            self.receive()?;
                        }
                    }
                    TOKEN_AUX => self.receive_aux()?,
                    TOKEN_HASHED => {
                        self.hasher.ack();
                        let now = Instant::now();
                        while let Ok((v, ok)) = self.hasher.done.try_recv() {
                            self.host.chunk_verified(now, v, ok);
                        }
                    }
                    TOKEN_LISTENER => self.accept_apps(),
                    TOKEN_SIGNAL => {
                        tracing::info!("signal received, exiting");
                        return Ok(());
                    }
                    id => self.conn_ready(id, flags),
                }
            }
            let now = Instant::now();
            if self.host.poll_timeout().is_some_and(|t| t <= now) {
                self.host.handle_timeout(now);
            }
            self.route_events(now);
            self.pump_dirty(now);
            self.route_events(now);
            self.transmit(now)?;
            self.flush_conns();
        }
    }

    // ------------------------------------------------------------------ link

    fn receive(&mut self) -> io::Result<()> {
        let mut taken = 0;
        while taken < RX_BUDGET {
            let n = self.link.recv_batch(&mut self.rx)?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            for f in self.rx.frames() {
                if let Some(p) = self.pcap.as_mut() {
                    let _ = p.write_frame(f);
                }
                self.host.handle_frame(now, f);
            }
            taken += n;
            // Transmit between batches: ACKs and replies go out while data keeps coming.
            self.route_events(now);
            self.transmit(now)?;
        }
        Ok(())
    }

    fn receive_aux(&mut self) -> io::Result<()> {
        for _ in 0..16 {
            if self.aux.recv_batch(&mut self.aux_rx)? == 0 {
                break;
            }
            let now = Instant::now();
            for f in self.aux_rx.frames() {
                if let Some(p) = self.pcap.as_mut() {
                    let _ = p.write_frame(f);
                }
                self.host.handle_frame(now, f);
            }
        }
        Ok(())
    }

    fn transmit(&mut self, now: Instant) -> io::Result<()> {
        if self.link.has_tx_ring() {
            return self.transmit_ring(now);
        }
        loop {
            if self.tx_blocked {
                return Ok(());
            }
            while self.tx_count < self.tx.len() {
                match self.host.poll_transmit(now, &mut self.tx[self.tx_count]) {
                    Some(n) => {
                        self.tx_lens[self.tx_count] = n;
                        self.tx_count += 1;
                    }
                    None => break,
                }
            }
            if self.tx_count == 0 {
                return Ok(());
            }
            let frames: Vec<&[u8]> =
                self.tx[..self.tx_count].iter().zip(&self.tx_lens).map(|(b, &l)| &b[..l]).collect();
            let sent = self.link.send_batch(&frames)?;
            if let Some(p) = self.pcap.as_mut() {
                for f in &frames[..sent] {
                    let _ = p.write_frame(f);
                }
            }
            drop(frames);
            if sent < self.tx_count {
                // Keep the unsent frames in order at the front and wait for room.
                self.tx.rotate_left(sent);
                self.tx_lens.rotate_left(sent);
                self.tx_count -= sent;
                self.tx_blocked = true;
                self.link_wants_out = true;
                self.epoll.ctl(
                    libc::EPOLL_CTL_MOD,
                    self.link.as_raw_fd(),
                    (libc::EPOLLIN | libc::EPOLLOUT) as u32,
                    TOKEN_LINK,
                )?;
                return Ok(());
            }
            self.tx_count = 0;
            if self.link_wants_out {
                self.link_wants_out = false;
                self.epoll.ctl(
                    libc::EPOLL_CTL_MOD,
                    self.link.as_raw_fd(),
                    libc::EPOLLIN as u32,
                    TOKEN_LINK,
                )?;
            }
        }
    }

    /// Frames are built straight in the kernel's transmit ring, which sends them without a copy.
    fn transmit_ring(&mut self, now: Instant) -> io::Result<()> {
        let mut queued = 0;
        loop {
            let Some(slot) = self.link.tx_slot() else {
                // Ring full: the kernel frees frames as they are delivered; wait for that.
                self.link.tx_flush()?;
                if !self.link_wants_out {
                    self.link_wants_out = true;
                    self.epoll.ctl(
                        libc::EPOLL_CTL_MOD,
                        self.link.as_raw_fd(),
                        (libc::EPOLLIN | libc::EPOLLOUT) as u32,
                        TOKEN_LINK,
                    )?;
                }
                return Ok(());
            };
            let Some(n) = self.host.poll_transmit(now, slot) else { break };
            if let Some(p) = self.pcap.as_mut() {
                let _ = p.write_frame(&slot[..n]);
            }
            self.link.tx_commit(n);
            queued += 1;
            if queued % 64 == 0 {
                self.link.tx_flush()?;
            }
        }
        self.link.tx_flush()?;
        if self.link_wants_out {
            self.link_wants_out = false;
            self.epoll.ctl(libc::EPOLL_CTL_MOD, self.link.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_LINK)?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ applications

    fn accept_apps(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    let interest = libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
                    if self.epoll.ctl(libc::EPOLL_CTL_ADD, sock.as_raw_fd(), interest, id).is_err() {
                        continue;
                    }
                    self.conns.insert(
                        id,
                        Conn {
                            sock,
                            role: Role::Fresh,
                            inbuf: Vec::new(),
                            out: OutQueue::default(),
                            read_closed: false,
                            write_shut: false,
                            write_dead: false,
                            in_at: 0,
                            registered: true,
                            close_after_flush: false,
                            interest,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn conn_ready(&mut self, id: u64, flags: u32) {
        let Some(c) = self.conns.get(&id) else { return };
        if flags & libc::EPOLLERR as u32 != 0 {
            // The socket broke: whatever it carried is aborted.
            self.drop_conn(id, true);
            return;
        }
        if let Role::Raw(_) = c.role {
            if flags & libc::EPOLLHUP as u32 != 0 {
                // The application closed its socket. What it wrote before is still to be read
                // and sent (a close is a FIN after the data, not an abort); HUP cannot be
                // masked, so the socket leaves epoll and the stream's own events drive the
                // rest.
                self.deregister(id);
            }
            // Raw streams move bytes in the pump.
            self.dirty.insert(id);
            return;
        }
        if flags & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | libc::EPOLLHUP as u32) != 0 {
            self.read_messages(id);
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.flush_conn(id);
        }
        if flags & libc::EPOLLHUP as u32 != 0
            && self.conns.get(&id).is_some_and(|c| !matches!(c.role, Role::Raw(_)))
        {
            self.drop_conn(id, false);
        }
    }

    fn read_messages(&mut self, id: u64) {
        let mut eof = false;
        {
            let Some(c) = self.conns.get_mut(&id) else { return };
            if c.in_at > 0 {
                c.inbuf.drain(..c.in_at);
                c.in_at = 0;
            }
            while c.inbuf.len() <= crate::ipc::MAX_MESSAGE + FRAME_HEADER {
                let at = c.inbuf.len();
                c.inbuf.resize(at + 64 * 1024, 0);
                match c.sock.read(&mut c.inbuf[at..]) {
                    Ok(0) => {
                        c.inbuf.truncate(at);
                        eof = true;
                        break;
                    }
                    Ok(n) => c.inbuf.truncate(at + n),
                    Err(e) => {
                        c.inbuf.truncate(at);
                        eof = e.kind() != io::ErrorKind::WouldBlock;
                        break;
                    }
                }
            }
        }
        // Every complete message, in order (a switch to raw mode stops there: the bytes after
        // it belong to the stream).
        loop {
            let Some(c) = self.conns.get_mut(&id) else { return };
            if matches!(c.role, Role::Raw(_) | Role::Connecting(_)) {
                break;
            }
            let rest = &c.inbuf[c.in_at..];
            let len = match Msg::frame_len(rest) {
                Ok(Some(l)) if rest.len() >= l => l,
                Ok(_) => break,
                Err(e) => {
                    c.queue(&Msg::Error { code: ErrorCode::BadRequest, message: e.to_string() });
                    c.close_after_flush = true;
                    c.inbuf.clear();
                    c.in_at = 0;
                    break;
                }
            };
            let decoded = Msg::decode(&rest[4..len]);
            c.in_at += len;
            match decoded {
                Ok(m) => self.request(id, m),
                Err(e) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.queue(&Msg::Error { code: ErrorCode::BadRequest, message: e.to_string() });
                        c.close_after_flush = true;
                    }
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            if c.in_at == c.inbuf.len() {
                c.inbuf.clear();
                c.in_at = 0;
            }
        }
        if eof {
            match self.conns.get(&id).map(|c| c.role) {
                // The stream's pump sends what came with the request, then FIN.
                Some(Role::Raw(_)) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.read_closed = true;
                    }
                    self.dirty.insert(id);
                }
                Some(_) => self.drop_conn(id, false),
                None => {}
            }
        }
    }

    fn reply(&mut self, id: u64, m: Msg) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.queue(&m);
        }
    }

    fn set_role(&mut self, id: u64, role: Role) -> bool {
        let Some(c) = self.conns.get_mut(&id) else { return false };
        if c.role != Role::Fresh {
            c.queue(&Msg::Error {
                code: ErrorCode::BadRequest,
                message: "connection already has a role".into(),
            });
            return false;
        }
        c.role = role;
        true
    }

    fn request(&mut self, id: u64, m: Msg) {
        let now = Instant::now();
        let role = self.conns.get(&id).map(|c| c.role);
        match m {
            Msg::Connect { dst } => match self.host.connect(now, dst) {
                Ok(h) => {
                    if self.set_role(id, Role::Connecting(h)) {
                        self.owners.insert(h, id);
                    } else {
                        self.host.abort(h);
                        self.host.close(h);
                    }
                }
                Err(e) => self.reply(id, error_msg(e)),
            },
            Msg::Listen { sid } => {
                let sid = sid.unwrap_or_else(|| {
                    let mut b = [0u8; 20];
                    let _ = getrandom::getrandom(&mut b);
                    Xid::new(crate::xid::Principal::Sid, b)
                });
                match self.host.listen(sid) {
                    Ok(h) => {
                        if self.set_role(id, Role::Listener(h)) {
                            self.owners.insert(h, id);
                            let dag = self.host.service_dag(sid);
                            self.reply(id, Msg::Listening { dag });
                        } else {
                            self.host.close(h);
                        }
                    }
                    Err(e) => self.reply(id, error_msg(e)),
                }
            }
            Msg::Attach { id: token } => {
                let Some(&h) = self.tokens.get(&token) else {
                    self.reply(
                        id,
                        Msg::Error { code: ErrorCode::BadHandle, message: "no such incoming stream".into() },
                    );
                    return;
                };
                // A connection with a role already cannot take it: the stream stays unclaimed.
                if self.set_role(id, Role::Raw(h)) {
                    self.unclaim(h);
                    self.owners.insert(h, id);
                    let local = self.stream_local(h);
                    let peer = self.host.stream_peer(h).cloned().unwrap_or_else(|| local.clone());
                    self.reply(id, Msg::Connected { id: h, local, peer });
                    self.dirty.insert(id);
                }
            }
            Msg::DgramBind { sid } => match self.host.dgram_bind(sid) {
                Ok((h, sid)) => {
                    if self.set_role(id, Role::Dgram(h)) {
                        self.owners.insert(h, id);
                        let dag = self.host.service_dag(sid);
                        let max = self.host.dgram_max(h, &dag).unwrap_or(0) as u32;
                        self.reply(id, Msg::Bound { dag, max });
                    } else {
                        self.host.close(h);
                    }
                }
                Err(e) => self.reply(id, error_msg(e)),
            },
            Msg::SendTo { dst, data } => match role {
                Some(Role::Dgram(h)) => {
                    if let Err(e) = self.host.dgram_send(now, h, &dst, &data) {
                        self.reply(id, error_msg(e));
                    }
                }
                _ => self.reply(
                    id,
                    Msg::Error { code: ErrorCode::BadRequest, message: "not a datagram socket".into() },
                ),
            },
            Msg::ChunkPut { data } => match self.host.chunk_put(Arc::from(data)) {
                Ok(cid) => {
                    let dag = self.host.content_dag(cid);
                    self.reply(id, Msg::Put { cid, dag });
                }
                Err(e) => self.reply(id, error_msg(e)),
            },
            Msg::ChunkRemove { cid } => {
                self.host.chunk_remove(&cid);
                self.reply(id, Msg::Ok);
            }
            Msg::ChunkFetch { tag, cid, dag, len } => {
                let owner = match role {
                    Some(Role::Chunks(o)) => Some(o),
                    Some(Role::Fresh) => {
                        let o = self.host.fetch_owner();
                        self.set_role(id, Role::Chunks(o)).then_some(o)
                    }
                    _ => None,
                };
                match owner {
                    Some(o) => {
                        self.owners.insert(o, id);
                        let len = (len > 0).then_some(len as usize);
                        self.host.chunk_fetch(now, o, cid, dag, len, tag);
                    }
                    None => self.reply(
                        id,
                        Msg::Error { code: ErrorCode::BadRequest, message: "not a chunk client".into() },
                    ),
                }
            }
            Msg::PingOpen => {
                let h = self.host.ping_open();
                if self.set_role(id, Role::Ping(h)) {
                    self.owners.insert(h, id);
                    self.reply(id, Msg::PingReady);
                } else {
                    self.host.close(h);
                }
            }
            Msg::PingSend { dst, seq, data } => match role {
                Some(Role::Ping(h)) => {
                    if let Err(e) = self.host.ping_send(now, h, &dst, seq, &data) {
                        self.reply(id, error_msg(e));
                    }
                }
                _ => self.reply(id, Msg::Error { code: ErrorCode::BadRequest, message: "not a ping".into() }),
            },
            Msg::PatchRoute { router, lifetime_ms } => {
                let lifetime = Duration::from_millis(u64::from(lifetime_ms));
                match self.host.send_route_patch(Instant::now(), &router, lifetime) {
                    Ok(()) => self.reply(id, Msg::Ok),
                    Err(e) => self.reply(id, error_msg(e)),
                }
            }
            Msg::Info => {
                let info = HostInfo {
                    hid: self.host.hid(),
                    dag: self.host.dag(),
                    ad: self.host.ad(),
                    gateway: self.host.gateway(),
                    name_server: self.host.name_server(),
                    mtu: self.link.mtu() as u32,
                };
                self.reply(id, Msg::Info2(Box::new(info)));
            }
            Msg::Stats => {
                let mut text = String::new();
                let (fetch, window, in_flight) = self.host.fetch_stats();
                for (k, v) in self.host.stats().fields().into_iter().chain(fetch.fields()) {
                    text.push_str(&format!("{k} {v}\n"));
                }
                text.push_str(&format!("fetch_window {window}\nfetch_in_flight {in_flight}\n"));
                let l = self.link.stats();
                for (k, v) in [
                    ("link_rx_frames", l.rx_frames),
                    ("link_rx_bytes", l.rx_bytes),
                    ("link_rx_truncated", l.rx_truncated),
                    ("link_tx_frames", l.tx_frames),
                    ("link_tx_bytes", l.tx_bytes),
                    ("link_tx_dropped", l.tx_dropped),
                    ("link_tx_errors", l.tx_errors),
                    ("link_rx_errors", l.rx_errors),
                    ("link_rx_kernel_dropped", l.rx_kernel_dropped),
                    ("apps", self.conns.len() as u64),
                    ("apps_overflowed", self.apps_overflowed),
                    ("echo_dropped", self.echo_dropped),
                ] {
                    text.push_str(&format!("{k} {v}\n"));
                }
                self.reply(id, Msg::StatsText(text));
            }
            Msg::StreamStatus { id: h } => {
                let code = self.status.get(&h).copied().flatten();
                self.reply(id, Msg::Status { code });
            }
            _ => self.reply(id, Msg::Error { code: ErrorCode::BadRequest, message: "not a request".into() }),
        }
    }

    fn stream_local(&self, h: Handle) -> Dag {
        self.host.stream_local(h).unwrap_or_else(|| self.host.dag())
    }

    fn remember_status(&mut self, h: Handle, code: Option<ErrorCode>) {
        if self.status.insert(h, code).is_none() {
            self.status_order.push_back(h);
            while self.status_order.len() > STATUS_MEMORY {
                if let Some(old) = self.status_order.pop_front() {
                    self.status.remove(&old);
                }
            }
        }
    }

    /// Host events to the applications they concern.
    fn route_events(&mut self, now: Instant) {
        while let Some(v) = self.host.poll_verify() {
            if let Err(std::sync::mpsc::SendError(v)) = self.hasher.jobs.send(v) {
                // No hashing thread (it cannot end while we hold its sender): hash here.
                let ok = v.check();
                self.host.chunk_verified(now, v, ok);
            }
        }
        while let Some(e) = self.host.poll_event() {
            match e {
                HostEvent::StreamConnected(h) => {
                    let Some(&id) = self.owners.get(&h) else { continue };
                    let local = self.stream_local(h);
                    let peer = self.host.stream_peer(h).cloned().unwrap_or_else(|| local.clone());
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.queue(&Msg::Connected { id: h, local, peer });
                        c.role = Role::Raw(h);
                        self.dirty.insert(id);
                    }
                }
                HostEvent::StreamReadable(h)
                | HostEvent::StreamWritable(h)
                | HostEvent::StreamPeerClosed(h) => {
                    if let Some(&id) = self.owners.get(&h) {
                        self.dirty.insert(id);
                    }
                }
                HostEvent::StreamClosed(h, err) => {
                    self.remember_status(h, err.map(ErrorCode::from));
                    let Some(&id) = self.owners.get(&h) else {
                        self.unclaim(h);
                        self.host.close(h);
                        continue;
                    };
                    match (self.conns.get(&id).map(|c| c.role), err) {
                        (Some(Role::Connecting(_)), e) => {
                            let code = e.map_or(ErrorCode::Closed, ErrorCode::from);
                            if let Some(c) = self.conns.get_mut(&id) {
                                c.queue(&Msg::Error { code, message: format!("connect: {code:?}") });
                                c.close_after_flush = true;
                                c.role = Role::Fresh;
                            }
                            self.owners.remove(&h);
                            self.host.close(h);
                        }
                        (_, Some(_)) => {
                            // Reset the application's socket: its next read or write fails,
                            // and StreamStatus says why.
                            self.drop_conn(id, true);
                        }
                        _ => {
                            self.dirty.insert(id);
                        }
                    }
                }
                HostEvent::StreamIncoming(l) => {
                    let Some(&id) = self.owners.get(&l) else { continue };
                    while let Some((h, peer)) = self.host.accept(l) {
                        let token = loop {
                            let mut b = [0u8; 8];
                            let _ = getrandom::getrandom(&mut b);
                            let t = u64::from_le_bytes(b);
                            if t != 0 && !self.tokens.contains_key(&t) {
                                break t;
                            }
                        };
                        self.unclaimed.insert(h, (id, token));
                        self.tokens.insert(token, h);
                        self.reply(id, Msg::Incoming { id: token, peer });
                    }
                }
                HostEvent::DgramReadable(h) => {
                    if let Some(&id) = self.owners.get(&h) {
                        self.dirty.insert(id);
                    }
                }
                HostEvent::ChunkDone { owner, tag, result, .. } => {
                    let Some(&id) = self.owners.get(&owner) else { continue };
                    match result {
                        Ok(data) => {
                            if let Some(c) = self.conns.get_mut(&id) {
                                // The header, then the chunk's own buffer: no copy.
                                c.out.push_small(&Msg::chunk_data_header(tag, data.len()));
                                c.out.push_owned(data);
                            }
                        }
                        Err(e) => self.reply(id, Msg::ChunkFailed { tag, code: e.into() }),
                    }
                }
                HostEvent::EchoReply { owner, seq, from, data } => {
                    if let Some(id) = self.echo_owner(owner) {
                        self.reply(id, Msg::EchoReply { seq, from, data });
                    }
                }
                HostEvent::EchoError { owner, seq, from, kind, code } => {
                    if let Some(id) = self.echo_owner(owner) {
                        self.reply(id, Msg::EchoError { seq, from, kind, code });
                    }
                }
                HostEvent::Attached { ad, router } => tracing::info!("attached to {ad} via router {router}"),
                HostEvent::Registered { ad, router } => {
                    tracing::info!("registered in {ad} with {router}");
                    // For scripts and tests to wait on, like the ready line.
                    println!(
                        "xiad registered ad={ad} router={router} dag={}",
                        self.host.dag().to_dag_string().replace('\n', "")
                    );
                }
            }
        }
    }

    /// Moves bytes of raw streams and queued datagrams to their applications.
    fn pump_dirty(&mut self, _now: Instant) {
        let ids: Vec<u64> = self.dirty.drain().collect();
        for id in ids {
            let Some(role) = self.conns.get(&id).map(|c| c.role) else { continue };
            match role {
                Role::Raw(h) => {
                    let again = self.pump_stream(id, h);
                    if again {
                        self.dirty.insert(id);
                    }
                }
                Role::Dgram(h) => {
                    while self.conns.get(&id).is_some_and(|c| c.pending_out() < OUTBUF_SOFT_LIMIT) {
                        let Some((src, data)) = self.host.dgram_recv(h) else { break };
                        self.reply(id, Msg::RecvFrom { src, data });
                    }
                }
                _ => {}
            }
        }
    }

    /// One turn of a raw stream; true if it should get another turn right away.
    fn pump_stream(&mut self, id: u64, h: Handle) -> bool {
        let mut again = false;
        // Earlier message bytes (the Connected answer) go first.
        self.flush_conn(id);
        let Some(c) = self.conns.get_mut(&id) else { return false };
        if c.pending_out() > 0 {
            return false;
        }
        let Some(conn) = self.host.stream(h) else { return false };
        // Network -> application.
        let mut moved = 0;
        while moved < PUMP_BUDGET && !c.write_dead {
            let (a, b) = conn.peek();
            if a.is_empty() {
                break;
            }
            let iov = [io::IoSlice::new(a), io::IoSlice::new(b)];
            match c.sock.write_vectored(&iov) {
                Ok(0) => break,
                Ok(n) => {
                    conn.consume(n);
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => c.write_dead = true,
            }
        }
        if moved >= PUMP_BUDGET {
            again = true;
        }
        if conn.is_read_closed() && !c.write_shut && !c.write_dead {
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            c.write_shut = true;
        }
        // Application -> network: bytes that came with the attach request first.
        if c.in_at < c.inbuf.len() {
            let w = conn.write(&c.inbuf[c.in_at..]).unwrap_or(c.inbuf.len() - c.in_at);
            c.in_at += w;
            if c.in_at == c.inbuf.len() {
                c.inbuf = Vec::new();
                c.in_at = 0;
            }
        }
        // The application's end of file may have been read with those bytes.
        if c.read_closed && c.inbuf.is_empty() {
            conn.close();
        }
        let mut taken = 0;
        while !c.read_closed && c.inbuf.is_empty() && taken < PUMP_BUDGET && conn.send_space() > 0 {
            // Straight from the application's socket into the send buffer: no bounce copy.
            let (a, b) = conn.write_slices();
            let mut iov = [io::IoSliceMut::new(a), io::IoSliceMut::new(b)];
            match c.sock.read_vectored(&mut iov) {
                Ok(0) => {
                    c.read_closed = true;
                    conn.close();
                }
                Ok(n) => {
                    conn.commit_write(n);
                    taken += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The application went away: what it wrote is sent, then FIN.
                Err(_) => {
                    c.read_closed = true;
                    conn.close();
                }
            }
        }
        if taken >= PUMP_BUDGET {
            again = true;
        }
        let want_read = !c.read_closed && c.inbuf.is_empty() && conn.send_space() > 0;
        let want_write = !c.write_dead && conn.readable() > 0;
        if c.registered {
            set_interest(&self.epoll, c, id, want_read, want_write);
        }
        // Data for an application that can no longer read it: reset, as TCP does when data
        // reaches a closed socket.
        let unwanted = c.write_dead && conn.readable() > 0;
        let finished = c.read_closed && (c.write_shut || c.write_dead);
        self.host.stream_touched(h);
        if unwanted {
            self.owners.remove(&h);
            self.host.abort(h);
            self.host.close(h);
            self.remove_conn(id);
            return false;
        }
        if finished {
            // Both directions done: the stream finishes on its own (FIN after the data) and the
            // host forgets it then.
            self.owners.remove(&h);
            self.host.close(h);
            self.remove_conn(id);
            return false;
        }
        again
    }

    /// The connection to give an echo answer to, unless it is not reading (the answer is then
    /// dropped and counted, as a lost reply would be).
    fn echo_owner(&mut self, owner: Handle) -> Option<u64> {
        let id = *self.owners.get(&owner)?;
        if self.conns.get(&id)?.pending_out() >= OUTBUF_SOFT_LIMIT {
            self.echo_dropped += 1;
            return None;
        }
        Some(id)
    }

    fn flush_conns(&mut self) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pending_out() > 0 || c.close_after_flush)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.flush_conn(id);
        }
    }

    fn flush_conn(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let had = c.pending_out() > 0;
        if c.out.write_to(&mut c.sock).is_err() {
            c.out.clear();
            c.close_after_flush = true;
        }
        if c.pending_out() == 0 {
            if c.close_after_flush {
                self.drop_conn(id, false);
                return;
            }
        } else if c.pending_out() > OUTBUF_HARD_LIMIT {
            tracing::warn!("application connection {id} does not read its messages: dropped");
            self.apps_overflowed += 1;
            self.drop_conn(id, true);
            return;
        }
        // Only a buffer that just drained gives the pump more to do (marking a connection dirty
        // on every flush would keep the loop from ever sleeping).
        let drained = had && c.pending_out() == 0;
        match c.role {
            Role::Raw(_) => {
                // The pump decides a raw stream's interest.
                if drained {
                    self.dirty.insert(id);
                } else if c.pending_out() > 0 {
                    let want_read = c.interest & libc::EPOLLIN as u32 != 0;
                    set_interest(&self.epoll, c, id, want_read, true);
                }
            }
            Role::Connecting(_) => set_interest(&self.epoll, c, id, false, c.pending_out() > 0),
            role => {
                let want_read = !c.close_after_flush;
                set_interest(&self.epoll, c, id, want_read, c.pending_out() > 0);
                if drained && matches!(role, Role::Dgram(_)) {
                    self.dirty.insert(id);
                }
            }
        }
    }

    /// Forgets an application connection and what it owned. `reset`: the socket is closed
    /// with an RST (SO_LINGER 0) so the application sees an error, not an end of file.
    fn drop_conn(&mut self, id: u64, reset: bool) {
        let Some(c) = self.conns.get(&id) else { return };
        if reset {
            let lg = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: setsockopt with a valid linger struct on our own descriptor.
            unsafe {
                libc::setsockopt(
                    c.sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&lg as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        match c.role {
            Role::Raw(h) | Role::Connecting(h) => {
                if !reset {
                    self.host.close(h);
                } else if self.host.stream(h).is_some_and(|s| s.closed().is_none()) {
                    // The application went away abruptly: tell the peer.
                    self.host.abort(h);
                    self.host.close(h);
                } else {
                    self.host.close(h);
                }
                self.owners.remove(&h);
            }
            Role::Listener(h) => {
                let orphans: Vec<Handle> =
                    self.unclaimed.iter().filter(|(_, &(o, _))| o == id).map(|(&s, _)| s).collect();
                for s in orphans {
                    self.unclaim(s);
                    self.host.close(s);
                }
                self.host.close(h);
                self.owners.remove(&h);
            }
            Role::Dgram(h) | Role::Ping(h) | Role::Chunks(h) => {
                self.host.close(h);
                self.owners.remove(&h);
            }
            Role::Fresh => {}
        }
        self.remove_conn(id);
    }

    /// Forgets an incoming stream's attach token.
    fn unclaim(&mut self, h: Handle) {
        if let Some((_, token)) = self.unclaimed.remove(&h) {
            self.tokens.remove(&token);
        }
    }

    fn remove_conn(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            if c.registered {
                let _ = self.epoll.ctl(libc::EPOLL_CTL_DEL, c.sock.as_raw_fd(), 0, id);
            }
        }
        self.dirty.remove(&id);
    }

    /// Takes a connection's socket out of epoll (after HUP).
    fn deregister(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.registered {
                let _ = self.epoll.ctl(libc::EPOLL_CTL_DEL, c.sock.as_raw_fd(), 0, id);
                c.registered = false;
            }
        }
    }
}

/// What to be woken for on an application socket: readability only while there is room to
/// take its bytes (epoll is level-triggered: a socket we cannot drain would wake us in a loop),
/// writability only while something waits to be written.
fn set_interest(epoll: &Epoll, c: &mut Conn, id: u64, want_read: bool, want_write: bool) {
    let mut ev = 0;
    if want_read {
        ev |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
    }
    if want_write {
        ev |= libc::EPOLLOUT as u32;
    }
    if ev != c.interest && epoll.ctl(libc::EPOLL_CTL_MOD, c.sock.as_raw_fd(), ev, id).is_ok() {
        c.interest = ev;
    }
}

/// How long an idle daemon sleeps at most (it wakes for frames, applications and timers).
pub const MAX_IDLE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_queue_writes_shared_and_owned_buffers_in_order_across_partial_writes() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut q = OutQueue::default();
        let mut want = Vec::new();
        for i in 0..40u32 {
            let small = vec![i as u8; 1000 + i as usize];
            q.push_small(&small);
            want.extend_from_slice(&small);
            if i % 7 == 0 {
                let big: Vec<u8> = (0..(3 << 20) + i as usize).map(|k| (k * 31 + i as usize) as u8).collect();
                want.extend_from_slice(&big);
                q.push_owned(big);
            }
        }
        q.push_owned(Vec::new());
        assert_eq!(q.len(), want.len());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 100_000];
        while q.len() > 0 {
            q.write_to(&mut a).unwrap();
            // The peer reads a little at a time: the queue sees many partial writes.
            let n = b.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        drop(a);
        b.read_to_end(&mut got).unwrap();
        assert!(got == want, "bytes differ or are out of order");
    }
}
