//! xia-impair: forwards every Ethernet frame between two interfaces of its namespace, both
//! ways, with seeded loss, duplication, reordering and delay. This kernel has no `tc netem`;
//! placed in a namespace between two veths, this relay is the impaired link.
//!
//! Prints `xia-impair ready a=IF b=IF` on stdout once both sockets are open; on SIGTERM or
//! SIGINT prints one line of counters per direction on stderr and exits 0:
//!
//! ```text
//! xia-impair a->b: received=2001 forwarded=1810 lost=191 duplicated=0 corrupted=0 reordered=0 overflow=0 send_failed=0 tx_dropped=0 truncated=0 held=0
//! ```
//!
//! `received` frames read from the first interface; `forwarded` copies handed to the kernel on
//! the second (so received - lost + duplicated - overflow - send_failed - held); `lost`,
//! `duplicated`, `corrupted`, `reordered` the impairments applied; `overflow` copies dropped because the
//! queue of held frames was full; `send_failed` copies the kernel refused or that waited too
//! long for socket buffer room; `tx_dropped` forwarded copies the interface's queue then
//! dropped (ENOBUFS); `truncated` frames longer than the MTU, not forwarded; `held` frames
//! still waiting at exit, discarded.

use std::io::{self, Write};
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xia_core::link::afpacket::{LinkOptions, PacketSocket, RecvBatch};
use xia_testbed::impair::{ImpairConfig, Impairer};

const USAGE: &str = "\
usage: xia-impair --a IF --b IF [--loss P] [--duplicate P] [--corrupt P] [--reorder P]
                  [--reorder-delay-us N] [--delay-us N] [--seed S]
Forwards every frame between interfaces IF (both directions), impaired per direction:
  --loss P              lose a frame with probability P (0..1)
  --duplicate P         send a frame twice with probability P
  --corrupt P           flip one bit of a frame (past its Ethernet header) with probability P
  --reorder P           hold a frame back with probability P, so later frames overtake it
  --reorder-delay-us N  how long a reordered frame is held (default 1000)
  --delay-us N          delay every frame by N microseconds (default 0)
  --seed S              RNG seed (default 1); a->b uses S, b->a a value derived from S
Interfaces on the relay's path want offloads off (ethtool -K IF tx off tso off gso off gro off).";

/// Receive batches read per socket before looking at the other socket and the timers again, so
/// a flood one way cannot starve the other direction or the held frames.
const BATCHES_PER_WAKEUP: usize = 4;
/// How long a full socket buffer may stall the relay before the frames waiting for it are dropped.
const SEND_STALL: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Args {
    a: String,
    b: String,
    cfg: ImpairConfig,
    seed: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut a, mut b, mut seed) = (None, None, 1u64);
    let mut cfg = ImpairConfig::default();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
        let bad = |v: &str| format!("bad value {v:?} for {flag}");
        match flag.as_str() {
            "--a" => a = Some(value()?),
            "--b" => b = Some(value()?),
            "--loss" | "--duplicate" | "--corrupt" | "--reorder" => {
                let v = value()?;
                let p: f64 = v.parse().map_err(|_| bad(&v))?;
                match flag.as_str() {
                    "--loss" => cfg.loss = p,
                    "--duplicate" => cfg.duplicate = p,
                    "--corrupt" => cfg.corrupt = p,
                    _ => cfg.reorder = p,
                }
            }
            "--reorder-delay-us" | "--delay-us" => {
                let v = value()?;
                let d = Duration::from_micros(v.parse().map_err(|_| bad(&v))?);
                if flag == "--delay-us" {
                    cfg.delay = d;
                } else {
                    cfg.reorder_delay = d;
                }
            }
            "--seed" => {
                let v = value()?;
                seed = v.parse().map_err(|_| bad(&v))?;
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    cfg.validate()?;
    let a = a.ok_or("--a IF is required")?;
    let b = b.ok_or("--b IF is required")?;
    if a == b {
        return Err("--a and --b must be different interfaces".into());
    }
    Ok(Some(Args { a, b, cfg, seed }))
}

/// Frames that went out, or did not, in one direction.
#[derive(Debug, Default)]
struct SendStats {
    forwarded: u64,
    send_failed: u64,
    first_error: Option<String>,
}

/// One direction: the impairments and receive buffers of the socket it reads from.
#[derive(Debug)]
struct Direction {
    name: &'static str,
    imp: Impairer,
    batch: RecvBatch,
    sent: SendStats,
}

impl Direction {
    /// Reads what `from` has waiting and passes it to `to`, impaired.
    fn pump(&mut self, from: &mut PacketSocket, to: &mut PacketSocket) -> io::Result<()> {
        let Direction { imp, batch, sent, .. } = self;
        for _ in 0..BATCHES_PER_WAKEUP {
            let n = from.recv_batch(batch)?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            let mut out: Vec<&[u8]> = Vec::with_capacity(2 * n);
            for frame in batch.frames_mut() {
                let copies = imp.on_frame(now, frame);
                let frame: &[u8] = frame;
                out.extend(std::iter::repeat_n(frame, copies));
            }
            send_all(to, &out, sent);
        }
        Ok(())
    }

    /// Sends the held frames that are due.
    fn flush_due(&mut self, now: Instant, to: &mut PacketSocket) {
        let mut due = Vec::new();
        while let Some(frame) = self.imp.pop_due(now) {
            due.push(frame);
        }
        let frames: Vec<&[u8]> = due.iter().map(Vec::as_slice).collect();
        send_all(to, &frames, &mut self.sent);
    }

    fn report(&self, from: &PacketSocket, to: &PacketSocket) {
        let s = self.imp.stats();
        eprintln!(
            "xia-impair {}: received={} forwarded={} lost={} duplicated={} corrupted={} reordered={} \
             overflow={} send_failed={} tx_dropped={} truncated={} held={}",
            self.name,
            s.received,
            self.sent.forwarded,
            s.lost,
            s.duplicated,
            s.corrupted,
            s.reordered,
            s.overflow,
            self.sent.send_failed,
            to.stats().tx_dropped,
            from.stats().rx_truncated,
            self.imp.held(),
        );
    }
}

/// Sends `frames` in order. A full socket buffer is waited out for a short while, then the
/// remaining frames are dropped; a frame the kernel refuses (too long, interface down) is
/// dropped alone. Either way the relay keeps going.
fn send_all(sock: &mut PacketSocket, frames: &[&[u8]], stats: &mut SendStats) {
    let mut i = 0;
    let mut stalled_since: Option<Instant> = None;
    while i < frames.len() {
        match sock.send_batch(&frames[i..]) {
            Ok(0) => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                let left = SEND_STALL.saturating_sub(since.elapsed());
                if left.is_zero() || !wait_fd(sock.as_raw_fd(), libc::POLLOUT, left) {
                    stats.send_failed += (frames.len() - i) as u64;
                    return;
                }
            }
            Ok(n) => {
                stalled_since = None;
                stats.forwarded += n as u64;
                i += n;
            }
            Err(e) => {
                if stats.first_error.is_none() {
                    eprintln!(
                        "xia-impair: send on {} failed: {e} (frame of {} bytes dropped)",
                        sock.ifname(),
                        frames[i].len()
                    );
                    stats.first_error = Some(e.to_string());
                }
                stats.send_failed += 1;
                i += 1;
            }
        }
    }
}

/// Polls one descriptor for `events`, up to `timeout`; true when ready.
fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Blocks SIGTERM and SIGINT and returns a descriptor that becomes readable when one arrives,
/// so the main loop sees a stop request in its poll without a race.
fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initializes it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the process is single-threaded, so sigprocmask covers it.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Receives frames whatever their destination MAC: the relay stands in for a wire. (veth
/// delivers every frame anyway; other devices filter without this.)
fn promiscuous(sock: &PacketSocket) -> io::Result<()> {
    // SAFETY: an all-zero packet_mreq is valid; fields set below.
    let mut mreq: libc::packet_mreq = unsafe { mem::zeroed() };
    mreq.mr_ifindex = sock.ifindex();
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    // SAFETY: `mreq` lives across the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open(ifname: &str, opts: &LinkOptions) -> io::Result<PacketSocket> {
    let sock =
        PacketSocket::open(ifname, opts).map_err(|e| io::Error::new(e.kind(), format!("{ifname}: {e}")))?;
    promiscuous(&sock).map_err(|e| io::Error::new(e.kind(), format!("{ifname}: promiscuous mode: {e}")))?;
    Ok(sock)
}

fn run(args: Args) -> io::Result<()> {
    // Before anything else, so a stop request at any time after "ready" is seen.
    let sig = signal_fd()?;
    // Empty list: every frame, whatever its ethertype.
    let opts = LinkOptions { ethertypes: vec![], ..Default::default() };
    let mut a = open(&args.a, &opts)?;
    let mut b = open(&args.b, &opts)?;
    // Seeds differ per direction so the two directions are not mirror images of each other.
    let mut ab = Direction {
        name: "a->b",
        imp: Impairer::new(args.cfg.clone(), args.seed),
        batch: RecvBatch::new(opts.batch, a.max_frame()),
        sent: SendStats::default(),
    };
    let mut ba = Direction {
        name: "b->a",
        imp: Impairer::new(args.cfg, args.seed ^ 0x5DEE_CE66_D1CE_5EED),
        batch: RecvBatch::new(opts.batch, b.max_frame()),
        sent: SendStats::default(),
    };
    let mut stdout = io::stdout();
    writeln!(stdout, "xia-impair ready a={} b={}", args.a, args.b)?;
    stdout.flush()?;

    let mut recv_errors = 0u64;
    loop {
        let now = Instant::now();
        ab.flush_due(now, &mut b);
        ba.flush_due(now, &mut a);
        let next = match (ab.imp.next_due(), ba.imp.next_due()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        // ppoll, not poll: delays are in microseconds.
        let timeout = next.map(|t| {
            let d = t.saturating_duration_since(Instant::now());
            libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
        });
        let mut fds = [a.as_raw_fd(), b.as_raw_fd(), sig.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let ts = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` and `ts` outlive the call; a null sigmask keeps the current one.
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts, std::ptr::null()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[2].revents != 0 {
            break;
        }
        // The socket reports its interface going down once, then recovers when it comes back:
        // count and carry on.
        let mut pumped = Ok(());
        if fds[0].revents != 0 {
            pumped = pumped.and(ab.pump(&mut a, &mut b));
        }
        if fds[1].revents != 0 {
            pumped = pumped.and(ba.pump(&mut b, &mut a));
        }
        if let Err(e) = pumped {
            if recv_errors == 0 {
                eprintln!("xia-impair: receive failed: {e}");
            }
            recv_errors += 1;
        }
    }
    ab.report(&a, &b);
    ba.report(&b, &a);
    if recv_errors > 0 {
        eprintln!("xia-impair: {recv_errors} receive errors");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xia-impair: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("xia-impair: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Args>, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn arguments() {
        let a = parse("--a ra --b=rb --loss 0.1 --duplicate=0.05 --reorder 0.2 --reorder-delay-us 2000 --delay-us 50 --seed 9")
            .unwrap()
            .unwrap();
        assert_eq!((a.a.as_str(), a.b.as_str(), a.seed), ("ra", "rb", 9));
        assert_eq!((a.cfg.loss, a.cfg.duplicate, a.cfg.reorder), (0.1, 0.05, 0.2));
        assert_eq!((a.cfg.reorder_delay, a.cfg.delay), (Duration::from_millis(2), Duration::from_micros(50)));
        assert!(parse("--help").unwrap().is_none());
        for bad in [
            "--a x",
            "--a x --b x",
            "--a x --b y --loss 2",
            "--a x --b y --loss",
            "--a x --b y --what 1",
            "--a x --b y --seed -1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
