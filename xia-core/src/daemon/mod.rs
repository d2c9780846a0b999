//! `xiad`: the host daemon. One per host (network namespace, VM): it owns a link, runs the
//! [`Host`] state machine and serves applications over a Unix socket ([`crate::ipc`]).
//!
//! A single thread and one epoll loop: frames in and out in batches on the link, applications'
//! sockets, timers from the host, a stop descriptor (the binary's signalfd). No locks, no task
//! switches on the data path; stream bytes move between the application's socket and the
//! STREAM buffers with one copy each way. Chunks are hashed on a thread of their own.
//!
//! The link is any [`Link`]: the binary runs on an interface ([`crate::link::host_port`]);
//! tests run daemons on a simulated wire in one process ([`spawn`]), without root.
//!
//! - `conn.rs`: one application connection (role, framing, what waits to be written);
//! - `inbound.rs`: the storage of what an application sent that is not yet a whole request;
//! - `budget.rs`: the memory applications' unfinished messages may hold, all together;
//! - `apps.rs`: applications' requests, and host events to the applications they concern;
//! - `pump.rs`: stream bytes between applications' sockets and the host's streams;
//! - `hasher.rs`: the hashing thread.

mod apps;
mod budget;
mod conn;
mod hasher;
mod inbound;
mod pump;

use std::collections::{HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::dag::Dag;
use crate::host::{Handle, HandleMap, Host, HostConfig};
use crate::ipc::ErrorCode;
use crate::keys::Keypair;
use crate::link::{Link, LinkState};
use crate::sys::{wall_ms, Epoll, EventFd};
use crate::xid::Xid;

use budget::InBudget;
use conn::Conn;
use hasher::Hasher;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where applications connect.
    pub socket: PathBuf,
    /// Host tunables (the MTU is taken from the link).
    pub host: HostConfig,
}

/// Bounds on what applications' connections may make the daemon hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcLimits {
    /// Bytes buffered for applications' messages not handled yet, across all connections:
    /// read-ahead, big payloads as they come, published chunks while they are named. A
    /// connection that finds no room is not read until room frees; one connection at a time may
    /// go past it by one message. At least twice the largest chunk (one being received, one
    /// being named).
    pub buffer_bytes: usize,
    /// A connection whose unfinished message (a frame begun) gains nothing for this long
    /// (64 KiB of it, or its end) is closed, and counted (`ipc_evicted_idle`); so is one that
    /// holds requests it sent while it takes none of its answers (past the point where the
    /// daemon stops reading it) for this long. While others wait for room, [`PRESSED_IDLE`] if
    /// that is shorter. Time a connection spends waiting for the daemon (room, a chunk being
    /// named) does not count.
    pub idle: Duration,
}

impl Default for IpcLimits {
    fn default() -> Self {
        IpcLimits { buffer_bytes: 256 << 20, idle: Duration::from_secs(10) }
    }
}

/// How long an unfinished message may make no progress while other connections wait for room
/// in the budget (a local application that is sending does not pause mid-message that long).
pub const PRESSED_IDLE: Duration = Duration::from_secs(2);
/// How often connections are checked for unfinished messages that make no progress.
const IDLE_CHECK: Duration = Duration::from_millis(250);

const TOKEN_LINK: u64 = 0;
const TOKEN_LISTENER: u64 = 1;
const TOKEN_STOP: u64 = 2;
const TOKEN_HASHED: u64 = 4;
const FIRST_CONN: u64 = 16;
/// Frames received per wake-up before other work gets a turn.
const RX_BUDGET: usize = 1024;
/// Frames received between two turns of transmitting (ACKs and replies go out while data keeps
/// coming).
const RX_BATCH: usize = 64;
/// How long an idle daemon sleeps at most (it wakes for frames, applications and timers).
pub const MAX_IDLE: Duration = Duration::from_secs(1);

/// What the daemon is, once it serves: what the binary prints and tests wait for.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The host's HID.
    pub hid: Xid,
    /// Its DAG now.
    pub dag: Dag,
    /// The link's MAC.
    pub mac: crate::wire::ethernet::EthernetAddress,
    /// The link's MTU.
    pub mtu: usize,
    /// Where applications connect.
    pub socket: PathBuf,
}

/// The running daemon.
struct Daemon<L: Link> {
    host: Host,
    link: L,
    epoll: Epoll,
    listener: UnixListener,
    conns: HandleMap<Conn>,
    next_conn: u64,
    /// Which connection owns a host handle.
    owners: HandleMap<u64>,
    /// Accepted streams waiting for an application to attach: handle -> (listener connection,
    /// attach token).
    unclaimed: HandleMap<(u64, u64)>,
    /// Attach tokens -> handle. Tokens are random, so that only the application told of an
    /// incoming stream (its listener) can take it over.
    tokens: HandleMap<Handle>,
    /// Datagram sockets: tokens for their sending halves, and how many connections hold each.
    dgram_tokens: HandleMap<Handle>,
    dgram_holders: HandleMap<u32>,
    /// Connections that asked for events.
    subscribers: Vec<u64>,
    /// The DAG applications were last told of.
    told_dag: Dag,
    /// Applications cut off for not reading their messages.
    apps_overflowed: u64,
    /// Echo replies and errors not delivered to a ping application that did not read.
    echo_dropped: u64,
    /// How streams ended, for [`crate::ipc::Request::StreamStatus`].
    status: HandleMap<Option<ErrorCode>>,
    status_order: VecDeque<u64>,
    /// Connections whose raw stream or datagram queue may have bytes to move, or whose
    /// buffer holds requests not yet handled.
    dirty: HashSet<u64, std::hash::BuildHasherDefault<crate::host::HandleHasher>>,
    hasher: Hasher,
    /// Random, per run: stream ids carry it, so a daemon restarted on the same socket is not
    /// asked about streams it never had.
    instance: u64,
    /// For tokens when the OS has no randomness to give.
    rng: crate::rng::Rng,
    /// Accepting applications resumes then (after accept failed).
    listener_paused_until: Option<Instant>,
    /// Leased connections that closed while a chunk of theirs was being named.
    leased_gone: HashSet<u64>,
    /// What applications' unfinished messages hold.
    budget: InBudget,
    limits: IpcLimits,
    /// When connections are next checked for unfinished messages that make no progress.
    idle_check_at: Instant,
}

/// Runs the daemon on `link` until `stop` becomes readable (the binary passes its signalfd).
/// `ready` is called once, when applications can connect.
pub fn run<L: Link>(
    cfg: DaemonConfig,
    key: Keypair,
    link: L,
    stop: RawFd,
    ready: impl FnOnce(&Ready),
) -> io::Result<()> {
    run_with(cfg, IpcLimits::default(), key, link, stop, ready)
}

/// [`run`] with `limits` on what applications may make it hold.
pub fn run_with<L: Link>(
    cfg: DaemonConfig,
    limits: IpcLimits,
    key: Keypair,
    link: L,
    stop: RawFd,
    ready: impl FnOnce(&Ready),
) -> io::Result<()> {
    if cfg.host.max_chunk > crate::ipc::codec::MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("chunks of {} bytes exceed what the local protocol carries", cfg.host.max_chunk),
        ));
    }
    if limits.buffer_bytes < 2 * cfg.host.max_chunk {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a buffer budget of {} bytes for applications' messages holds less than two of the \
                 largest chunks ({} bytes each: one being received, one being named)",
                limits.buffer_bytes, cfg.host.max_chunk
            ),
        ));
    }
    if limits.idle.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the idle time of messages must not be zero",
        ));
    }
    let mut host_cfg = cfg.host.clone();
    host_cfg.mtu = link.mtu();
    // Fetched chunks are hashed on a thread of their own.
    host_cfg.fetch.defer_verify = true;
    let host = Host::new(host_cfg, key, link.mac(), Instant::now(), wall_ms());
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
    let ours = socket_identity(&cfg.socket);
    let epoll = Epoll::new()?;
    let hasher = Hasher::start()?;
    epoll.add_readable(link.fd(), TOKEN_LINK)?;
    epoll.add_readable(listener.as_raw_fd(), TOKEN_LISTENER)?;
    epoll.add_readable(stop, TOKEN_STOP)?;
    epoll.add_readable(hasher.wake.as_raw_fd(), TOKEN_HASHED)?;
    let told_dag = host.dag();
    let mut seed = [0u8; 8];
    if getrandom::getrandom(&mut seed).is_err() {
        seed = (wall_ms() ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    let mut rng = crate::rng::Rng::new(u64::from_le_bytes(seed));
    let instance = rng.next_u64();
    let mut d = Daemon {
        host,
        link,
        epoll,
        listener,
        conns: Default::default(),
        next_conn: FIRST_CONN,
        owners: Default::default(),
        unclaimed: Default::default(),
        tokens: Default::default(),
        dgram_tokens: Default::default(),
        dgram_holders: Default::default(),
        subscribers: Vec::new(),
        told_dag,
        apps_overflowed: 0,
        echo_dropped: 0,
        status: Default::default(),
        status_order: VecDeque::new(),
        dirty: Default::default(),
        hasher,
        instance,
        rng,
        listener_paused_until: None,
        leased_gone: HashSet::new(),
        budget: InBudget::new(limits.buffer_bytes),
        limits,
        idle_check_at: Instant::now() + IDLE_CHECK,
    };
    ready(&Ready {
        hid: d.host.hid(),
        dag: d.host.dag(),
        mac: d.link.mac(),
        mtu: d.link.mtu(),
        socket: cfg.socket.clone(),
    });
    let result = d.event_loop();
    drop(d);
    // Only our own socket: a daemon started since on the same path keeps its.
    if ours.is_some() && socket_identity(&cfg.socket) == ours {
        let _ = std::fs::remove_file(&cfg.socket);
    }
    result
}

/// Which file a path names (device and inode).
fn socket_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl<L: Link> Daemon<L> {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let now = Instant::now();
            let timeout = if !self.dirty.is_empty() {
                Some(Duration::ZERO)
            } else {
                // Unfinished messages are checked while anything is buffered.
                let idle_check = (self.budget.used() > 0).then_some(self.idle_check_at);
                let due =
                    [self.host.poll_timeout(), self.link.poll_at(), self.listener_paused_until, idle_check]
                        .into_iter()
                        .flatten()
                        .min();
                Some(due.map_or(MAX_IDLE, |t| t.saturating_duration_since(now).min(MAX_IDLE)))
            };
            let n = self.epoll.wait_for(&mut events, timeout)?;
            for ev in &events[..n] {
                let (token, flags) = (ev.u64, ev.events);
                match token {
                    TOKEN_LINK => self.receive()?,
                    TOKEN_HASHED => {
                        self.hasher.wake.clear();
                        let now = Instant::now();
                        while let Some(done) = self.hasher.try_done() {
                            self.hashed(now, done);
                        }
                    }
                    TOKEN_LISTENER => self.accept_apps(),
                    TOKEN_STOP => {
                        tracing::info!("stop requested, exiting");
                        return Ok(());
                    }
                    id => self.conn_ready(id, flags),
                }
            }
            // Simulated links deliver on their own schedule, not only on a wake-up.
            if self.link.poll_at().is_some_and(|t| t <= Instant::now()) {
                self.receive()?;
            }
            let now = Instant::now();
            if self.listener_paused_until.is_some_and(|t| t <= now) {
                self.resume_listener();
            }
            if self.host.poll_timeout().is_some_and(|t| t <= now) {
                self.host.handle_timeout(now);
            }
            // What the host did before the link changed is told first.
            self.route_events(now);
            while let Some(state) = self.link.poll_state() {
                self.link_state(state);
            }
            self.route_events(now);
            self.pump_dirty();
            self.wake_waiters();
            if now >= self.idle_check_at {
                self.idle_check_at = now + IDLE_CHECK;
                self.evict_stalled(now);
            }
            self.route_events(now);
            self.transmit(now)?;
            self.flush_conns();
        }
    }

    /// Reads again the connections that waited for room in the budget, as room frees.
    fn wake_waiters(&mut self) {
        for id in self.budget.ready() {
            let Some(c) = self.conns.get_mut(&id) else { continue };
            c.starved = false;
            c.touch(Instant::now());
            let want_read =
                !c.close_after_flush && !c.awaiting_hash && c.pending_out() < apps::OUTBUF_SOFT_LIMIT;
            pump::set_interest(&self.epoll, c, id, want_read, c.pending_out() > 0);
            self.read_messages(id);
        }
    }

    /// Closes the connections whose unfinished message made no progress for the idle time (or
    /// [`PRESSED_IDLE`], while others wait for room), or that hold requests while they take
    /// none of their answers for as long: what they hold goes back to the budget.
    fn evict_stalled(&mut self, now: Instant) {
        let idle = if self.budget.pressed() { self.limits.idle.min(PRESSED_IDLE) } else { self.limits.idle };
        let mut stalled = Vec::new();
        for (&id, c) in self.conns.iter_mut() {
            if c.starved || c.awaiting_hash {
                // Held up by the daemon, not by the application.
                c.touch(now);
            } else if c
                .stalled_since(apps::OUTBUF_SOFT_LIMIT)
                .is_some_and(|t| now.saturating_duration_since(t) >= idle)
            {
                stalled.push(id);
            }
        }
        for id in stalled {
            let Some(c) = self.conns.get_mut(&id) else { continue };
            tracing::info!(
                "application connection {id}: no progress for {idle:?} on what it sent ({} bytes \
                 held): closed",
                c.held()
            );
            self.budget.evicted_idle += 1;
            let why = format!(
                "what it sent made no progress for {} ms (an unfinished message, or requests \
                 behind answers it does not read): closed",
                idle.as_millis()
            );
            c.fail(why, &mut self.budget);
            // Told why if its socket takes the answer now; closed either way.
            self.flush_conn(id);
            if self.conns.contains_key(&id) {
                self.drop_conn(id, true);
            }
        }
    }

    fn receive(&mut self) -> io::Result<()> {
        let mut taken = 0;
        while taken < RX_BUDGET {
            let now = Instant::now();
            let host = &mut self.host;
            let n = self.link.receive(RX_BATCH, &mut |f| host.handle_frame(now, f))?;
            taken += n;
            if n > 0 {
                self.route_events(now);
                self.transmit(now)?;
            }
            // Fewer than asked for: the link has nothing more now.
            if n < RX_BATCH {
                break;
            }
        }
        Ok(())
    }

    fn transmit(&mut self, now: Instant) -> io::Result<()> {
        let host = &mut self.host;
        self.link.transmit(&mut |buf| host.poll_transmit(now, buf))?;
        Ok(())
    }

    fn pause_listener(&mut self) {
        if self.listener_paused_until.is_none() {
            let _ = self.epoll.ctl(libc::EPOLL_CTL_DEL, self.listener.as_raw_fd(), 0, TOKEN_LISTENER);
        }
        self.listener_paused_until = Some(Instant::now() + apps::ACCEPT_PAUSE);
    }

    fn resume_listener(&mut self) {
        self.listener_paused_until = None;
        if let Err(e) = self.epoll.add_readable(self.listener.as_raw_fd(), TOKEN_LISTENER) {
            tracing::error!("cannot accept applications any more: {e}");
        }
    }

    fn link_state(&mut self, state: LinkState) {
        match state {
            LinkState::Down => tracing::warn!("link down"),
            LinkState::Up => tracing::info!("link up"),
        }
        self.host.link_changed(Instant::now(), state == LinkState::Up);
        let e = match state {
            LinkState::Down => crate::ipc::Event::LinkDown,
            LinkState::Up => crate::ipc::Event::LinkUp,
        };
        self.publish(e);
    }
}

/// A daemon running on a thread of this process (tests, embedding), stopped when dropped.
#[derive(Debug)]
pub struct Spawned {
    /// What it said when ready.
    pub ready: Ready,
    stop: EventFd,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Spawned {
    /// Stops the daemon at once, as `kill -9` would as far as its peers can tell: it sends
    /// nothing more (no FIN, no RST); its applications' sockets close.
    pub fn stop(mut self) -> io::Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<()> {
        self.stop.wake();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the daemon thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// Starts a daemon on `link` on a thread of its own and waits until it serves.
pub fn spawn<L: Link + Send + 'static>(cfg: DaemonConfig, key: Keypair, link: L) -> io::Result<Spawned> {
    spawn_with(cfg, IpcLimits::default(), key, link)
}

/// [`spawn`] with `limits` on what applications may make it hold.
pub fn spawn_with<L: Link + Send + 'static>(
    cfg: DaemonConfig,
    limits: IpcLimits,
    key: Keypair,
    link: L,
) -> io::Result<Spawned> {
    let stop = EventFd::new()?;
    let stop_fd = stop.try_clone()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("xiad".into()).spawn(move || {
        run_with(cfg, limits, key, link, stop_fd.as_raw_fd(), |r| {
            let _ = tx.send(r.clone());
        })
    })?;
    match rx.recv() {
        Ok(ready) => Ok(Spawned { ready, stop, thread: Some(thread) }),
        Err(_) => Err(thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the daemon thread panicked")))
            .err()
            .unwrap_or_else(|| io::Error::other("the daemon ended before serving"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{codec, Request, Response};
    use crate::link::sim::SimConfig;
    use crate::link::sim_wire::SimWire;
    use crate::wire::ethernet::EthernetAddress;
    use crate::xid::Principal;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    const MIB: usize = 1 << 20;

    /// The next frame from the daemon, decoded (after its hello).
    fn response(s: &mut UnixStream) -> io::Result<Response> {
        let mut prefix = [0u8; codec::PREFIX_LEN];
        s.read_exact(&mut prefix)?;
        let p = codec::Prefix::parse(&prefix).map_err(io::Error::other)?.expect("a whole prefix");
        let mut rest = vec![0u8; p.head + p.payload];
        s.read_exact(&mut rest)?;
        codec::decode(&rest[..p.head]).map_err(io::Error::other)
    }

    /// A connection that has said hello and read the daemon's.
    fn hello(socket: &std::path::Path) -> UnixStream {
        let mut s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&codec::hello()).unwrap();
        let mut h = [0u8; codec::HELLO_LEN];
        s.read_exact(&mut h).unwrap();
        s
    }

    fn stats(socket: &std::path::Path) -> std::collections::HashMap<String, u64> {
        let mut s = hello(socket);
        s.write_all(&codec::encode(&Request::Stats, &[])).unwrap();
        match response(&mut s).unwrap() {
            Response::Stats(v) => v.into_iter().collect(),
            m => panic!("{m:?}"),
        }
    }

    /// Connections announcing 16 MiB chunks and sending 4 MiB of each take the budget (one of
    /// them past it, as the finisher); the next ones wait, unread; a real publication waits
    /// too and completes once the stalled connections are closed (sooner while others wait),
    /// and everything charged goes back.
    #[test]
    fn unfinished_messages_are_bounded_waited_for_and_evicted() {
        let dir = std::env::temp_dir().join(format!("xd-budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("d.sock");
        let wire = SimWire::new();
        let port = wire.port(EthernetAddress([2, 0, 0, 0, 9, 1]), 1500, SimConfig::default(), 1).unwrap();
        let host =
            HostConfig { static_ad: Some(Xid::new(Principal::Ad, [0xad; 20])), ..HostConfig::default() };
        let cfg = DaemonConfig { socket: socket.clone(), host };
        let idle = Duration::from_millis(1500);
        let limits = IpcLimits { buffer_bytes: 32 * MIB, idle };
        assert!(
            run_with(
                DaemonConfig { socket: dir.join("x.sock"), host: HostConfig::default() },
                IpcLimits { buffer_bytes: 24 * MIB, idle },
                Keypair::from_seed([4; 32]),
                wire.port(EthernetAddress([2, 0, 0, 0, 9, 2]), 1500, SimConfig::default(), 2).unwrap(),
                -1,
                |_| {}
            )
            .is_err(),
            "a budget smaller than two chunks is refused"
        );
        let d = spawn_with(cfg, limits, Keypair::from_seed([3; 32]), port).unwrap();
        let t0 = std::time::Instant::now();
        let part = std::sync::Arc::new(vec![0x5au8; 4 * MIB]);
        let flood: Vec<_> = (0..10)
            .map(|_| {
                let mut s = hello(&socket);
                let part = part.clone();
                std::thread::spawn(move || {
                    let _ = s.write_all(&codec::encode_head(&Request::ChunkPut, 16 * MIB));
                    let _ = s.write_all(&part);
                    // Then nothing more: the daemon closes it.
                    let mut sink = Vec::new();
                    let _ = s.read_to_end(&mut sink);
                    t0.elapsed()
                })
            })
            .collect();
        // The budget fills up, and some wait.
        let mut s = stats(&socket);
        while s["ipc_budget_waits"] == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "nobody waits: {s:?}");
            std::thread::sleep(Duration::from_millis(20));
            s = stats(&socket);
        }
        assert!(s["ipc_buffered_bytes"] >= 28 * MIB as u64, "{s:?}");
        // A real publication, meanwhile.
        let data: Vec<u8> = (0..3 * MIB).map(|i| (i % 241) as u8).collect();
        let mut put = hello(&socket);
        put.write_all(&codec::encode(&Request::ChunkPut, &data)).unwrap();
        match response(&mut put).unwrap() {
            Response::Put { cid, .. } => assert_eq!(cid, Xid::cid_of(&data)),
            m => panic!("{m:?}"),
        }
        let published = t0.elapsed();
        let closed: Vec<Duration> = flood.into_iter().map(|t| t.join().unwrap()).collect();
        let s = stats(&socket);
        eprintln!("published after {published:?}, stalled connections closed after {closed:?}: {s:?}");
        assert_eq!(s["ipc_evicted_idle"], 10, "{s:?}");
        assert!(s["ipc_budget_waits"] >= 2, "{s:?}");
        // The budget, one finisher's message, one chunk being named.
        assert!(s["ipc_buffered_peak"] <= (32 + 16 + 4) * MIB as u64, "{s:?}");
        // Only the read buffer of the connection asking.
        assert!(s["ipc_buffered_bytes"] <= budget::SHARE as u64, "{s:?}");
        assert_eq!(s["ipc_waiting"], 0, "{s:?}");
        // Those that held room were closed while others waited (sooner than the idle time).
        assert!(closed.iter().any(|&t| t < idle + Duration::from_millis(1200)), "{closed:?}");
        drop(put);
        d.stop().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
