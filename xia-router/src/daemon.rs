//! The router daemon's event loop: one AF_PACKET socket per port, read through a receive ring
//! (no system call per frame), frames forwarded in place in the ring and sent in batches
//! (`sendmmsg`) per
//! outgoing port, the router's own frames after them, timers from the router, admin commands,
//! signals through a signalfd. One thread forwards; the admin socket's connections are served on
//! another ([`crate::admin_server`]), which hands complete commands to the forwarding loop and
//! takes their replies back: the loop never waits for an admin client.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use xia_core::keys::Keypair;
use xia_core::link::afpacket::{LinkOptions, PacketSocket, RxRing};
use xia_core::link::LinkStats;
use xia_core::pcap::PcapWriter;
use xia_core::sys::{signal_fd, wall_ms};

use crate::admin::{self, Command};
use crate::admin_server::AdminServer;
use crate::router::{Action, PortInfo, Router, RouterConfig, RouterStats};
use crate::warmup::Warmup;
use crate::xdp::{self, FastPath};

/// What the daemon needs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Interfaces to own, in port order.
    pub ports: Vec<String>,
    /// The AD's key file (created if missing): the AD is its public key's SHA-1.
    pub ad_key: PathBuf,
    /// The router's key file (created if missing): its HID.
    pub key: PathBuf,
    /// The admin socket.
    pub admin: PathBuf,
    /// Static routes to load at start (the `route add` language, a route per line).
    pub routes: Option<PathBuf>,
    /// Router tunables.
    pub router: RouterConfig,
    /// Link options of every port.
    pub link: LinkOptions,
    /// Record every frame in and out of every port.
    pub pcap: Option<PathBuf>,
    /// Replay forwarding decisions in the kernel ([`crate::xdp`]).
    pub xdp: bool,
}

fn load_key(path: &std::path::Path) -> io::Result<Keypair> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    Keypair::load_or_generate(path).map_err(|e| io::Error::other(format!("{}: {e}", path.display())))
}

/// Frames of the router's own sent per turn of the loop, at most.
const OWN_FRAMES_PER_TURN: usize = 256;

/// Batches of frames read from one port before the others get their turn.
const BATCHES_PER_TURN: usize = 8;

/// Admin commands run per turn of the loop, at most (the rest wait for the next turn).
const ADMIN_PER_TURN: usize = 8;

/// Counters of the drops the log reports, once a second at most.
fn drops(s: &RouterStats) -> [(&'static str, u64); 10] {
    [
        ("malformed", s.drop_malformed),
        ("bad control", s.drop_bad_control),
        ("forged control", s.drop_control_forged),
        ("stale control", s.drop_stale_control),
        ("replayed control", s.drop_control_replayed),
        ("control with sequence numbers ahead of their time", s.drop_control_seq_jump),
        ("control against policy", s.drop_control_policy),
        ("refused route patches", s.patches_refused),
        ("unreachable", s.drop_unreachable),
        ("hop limit", s.drop_hop_limit),
    ]
}

/// Runs the router until SIGTERM or SIGINT. `ready` is called once it forwards.
pub fn run(cfg: DaemonConfig, ready: impl FnOnce(&Router)) -> io::Result<()> {
    let signals = signal_fd()?;
    if cfg.ports.is_empty() {
        return Err(io::Error::other("no ports"));
    }
    let ad_key = load_key(&cfg.ad_key)?;
    let key = load_key(&cfg.key)?;
    let mut socks = Vec::new();
    let mut infos = Vec::new();
    for name in &cfg.ports {
        let s = PacketSocket::open(name, &cfg.link)
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
        infos.push(PortInfo { name: name.clone(), mac: s.mac(), mtu: s.mtu() });
        socks.push(s);
    }
    let start = Instant::now();
    let mut router = Router::new(cfg.router.clone(), ad_key, key, infos, start, wall_ms());
    if let Some(p) = &cfg.routes {
        let text = std::fs::read_to_string(p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        let n = admin::load_routes(&mut router, &text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", p.display())))?;
        tracing::info!("{n} static routes from {}", p.display());
    }
    if let Some(dir) = cfg.admin.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&cfg.admin);
    let listener = UnixListener::bind(&cfg.admin)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", cfg.admin.display())))?;
    std::fs::set_permissions(&cfg.admin, std::fs::Permissions::from_mode(0o600))?;
    let admin_server = AdminServer::start(listener)?;
    let mut pcap = match &cfg.pcap {
        Some(p) => Some(PcapWriter::new(BufWriter::new(File::create(p)?))?),
        None => None,
    };

    let mut rings: Vec<RxRing> = socks
        .iter_mut()
        .map(|s| {
            s.take_rx_ring()
                .ok_or_else(|| io::Error::other("ports need a receive ring (LinkOptions::rx_ring)"))
        })
        .collect::<io::Result<_>>()?;
    let fast_ports: Vec<xdp::Port> = socks
        .iter()
        .map(|s| xdp::Port { ifindex: s.ifindex() as u32, mac: s.mac().0, max_frame: s.max_frame() })
        .collect();
    let mut fast = if cfg.xdp {
        let f = FastPath::attach(&fast_ports, router.fib_generation())?;
        if cfg.pcap.is_some() {
            tracing::warn!("--pcap with --xdp: frames forwarded by the fast path are not recorded");
        }
        tracing::info!("XDP fast path on {} ports", fast_ports.len());
        Some(f)
    } else {
        None
    };
    // The first bytes of a frame as it arrived (the fast path compares them with what the
    // router made of it): up to the longest header it learns.
    let mut before = [0u8; 512];
    let mut outs: Vec<Vec<usize>> = vec![Vec::new(); socks.len()];
    let mut tx_dropped = 0u64;
    let mut pfds: Vec<libc::pollfd> = [signals.as_raw_fd(), admin_server.fd()]
        .into_iter()
        .chain(socks.iter().map(|s| s.as_raw_fd()))
        .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
        .collect();
    // A frame of the router's own that the socket buffer had no room for, sent first when it has.
    let mut held: Option<(usize, Vec<u8>)> = None;
    let mut last_report = start;
    let mut reported = drops(&router.stats());
    let mut warmup = Warmup::new(router.cache_usage().0);
    router.handle_timeout(start);
    ready(&router);

    loop {
        let now = Instant::now();
        let mut wait = router.poll_timeout().saturating_duration_since(now).min(Duration::from_secs(1));
        if (held.is_none() && router.has_output()) || warmup.pending() {
            wait = Duration::ZERO;
        }
        for (i, p) in pfds[2..].iter_mut().enumerate() {
            let blocked = held.as_ref().is_some_and(|(port, _)| *port == i);
            p.events = if blocked { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
        }
        // Round up: waking a little late beats spinning until the deadline.
        let ms = wait.as_micros().div_ceil(1000) as i32;
        // SAFETY: `pfds` is a valid array of its length.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if r == 0 && warmup.pending() {
            // Nothing to do this turn: fault in some of the cache's memory.
            warmup.step();
        }
        if pfds[0].revents != 0 {
            tracing::info!("signal: stopping");
            break;
        }
        if pfds[1].revents != 0 {
            // Commands read by the admin thread: each runs here, between frames, in microseconds.
            admin_server.serve(ADMIN_PER_TURN, |cmd| {
                let mut extra = Vec::new();
                if *cmd == Command::Stats {
                    extra = link_stats(&socks, &rings, tx_dropped);
                    extra.push(("cache_memory_faulted_in".to_string(), warmup.warmed() as u64));
                    if let Some(fp) = &fast {
                        extra.push(("xdp_forwarded".to_string(), fp.forwarded()));
                        extra.push(("xdp_learned".to_string(), fp.learned_total));
                        extra.push(("xdp_flushes".to_string(), fp.flushes));
                        extra.push(("xdp_off".to_string(), u64::from(fp.is_off())));
                    }
                    extra.extend(admin_server.stats());
                }
                admin::execute(&mut router, Instant::now(), cmd, &extra)
            });
            warmup.grow_to(router.cache_usage().0);
            if let Some(fp) = fast.as_mut() {
                fp.sync(router.fib_generation());
            }
        }
        for i in 0..socks.len() {
            if pfds[2 + i].revents == 0 {
                continue;
            }
            if pfds[2 + i].revents & libc::POLLERR != 0 {
                // The link went down (or away): the error is taken (and counted) here, so the
                // first frames sent once it is back are not refused for it.
                if let Some(e) = socks[i].take_error() {
                    tracing::warn!("{}: {e}", socks[i].ifname());
                }
            }
            for _ in 0..BATCHES_PER_TURN {
                let n = rings[i].poll();
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for o in &mut outs {
                    o.clear();
                }
                for (k, f) in rings[i].frames_mut().enumerate() {
                    if let Some(w) = pcap.as_mut() {
                        w.write_frame(f)?;
                    }
                    let learning = fast.as_ref().is_some_and(|fp| !fp.is_off());
                    let n = if learning { f.len().min(before.len()) } else { 0 };
                    before[..n].copy_from_slice(&f[..n]);
                    let action = router.handle_frame(now, i, f);
                    if let Some(fp) = fast.as_mut() {
                        // A control message may have changed the routes: forget before learning.
                        fp.sync(router.fib_generation());
                        if let (Action::Forward(o), true) = (action, learning) {
                            fp.learn(
                                router.fib_generation(),
                                &before[..n],
                                f,
                                &fast_ports[i],
                                &fast_ports[o],
                            );
                        }
                    }
                    if let Action::Forward(o) = action {
                        outs[o].push(k);
                    }
                }
                let frames: Vec<&[u8]> = rings[i].frames().collect();
                for (o, idx) in outs.iter().enumerate() {
                    if idx.is_empty() {
                        continue;
                    }
                    let list: Vec<&[u8]> = idx.iter().map(|&k| frames[k]).collect();
                    if let Some(w) = pcap.as_mut() {
                        for f in &list {
                            w.write_frame(f)?;
                        }
                    }
                    // A full socket buffer is a full output queue: what does not fit is dropped,
                    // as a router's would be.
                    let sent = socks[o].send_batch(&list)?;
                    tx_dropped += (list.len() - sent) as u64;
                }
                if n < rings[i].capacity() {
                    break;
                }
            }
            // The frames were copied out by sendmmsg: their slots go back to the kernel.
            rings[i].release();
        }
        let now = Instant::now();
        if router.poll_timeout() <= now {
            router.handle_timeout(now);
        }
        if let Some(fp) = fast.as_mut() {
            // Routes changed (a timer, a control message, the admin): decisions go stale now.
            fp.sync(router.fib_generation());
        }
        // The router's own frames (cache answers may be many): a bounded number per turn, so
        // input is read in between; a full socket buffer holds them until it drains.
        for _ in 0..OWN_FRAMES_PER_TURN {
            let Some((port, f)) = held.take().or_else(|| router.poll_transmit()) else { break };
            match socks[port].send(&f) {
                Ok(true) => {
                    if let Some(w) = pcap.as_mut() {
                        w.write_frame(&f)?;
                    }
                }
                Ok(false) => {
                    held = Some((port, f));
                    break;
                }
                Err(_) => tx_dropped += 1,
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            let d = drops(&router.stats());
            let news: Vec<String> = d
                .iter()
                .zip(&reported)
                .filter(|((_, v), (_, old))| v > old)
                .map(|((k, v), (_, old))| format!("{} {k}", v - old))
                .collect();
            if !news.is_empty() {
                tracing::warn!("dropped in the last second: {}", news.join(", "));
            }
            reported = d;
            if let Some(fp) = fast.as_mut() {
                let was_off = fp.is_off();
                if let Some(msg) = fp.check_drops(&cfg.ports) {
                    if fp.is_off() && !was_off {
                        tracing::error!("{msg}");
                    } else {
                        tracing::warn!("{msg}");
                    }
                }
            }
        }
    }
    if let Some(w) = pcap {
        w.into_inner()?.flush()?;
    }
    // The admin thread stops (and the socket closes) before its file goes.
    drop(admin_server);
    let _ = std::fs::remove_file(&cfg.admin);
    Ok(())
}

/// Every port's link counters, named as every daemon names them ([`LinkStats::fields`]) after
/// the interface (`eth1.link_rx_frames`): the socket sends, the ring receives.
fn link_stats(socks: &[PacketSocket], rings: &[RxRing], tx_dropped: u64) -> Vec<(String, u64)> {
    let mut v = vec![("tx_queue_dropped".to_string(), tx_dropped)];
    for (s, r) in socks.iter().zip(rings) {
        let n = s.ifname();
        let st: LinkStats = s.stats().sum(&r.stats());
        v.extend(st.fields().into_iter().map(|(k, x)| (format!("{n}.{k}"), x)));
    }
    v
}

/// Sends one admin command to the daemon at `socket`; the reply, or the daemon's error.
pub fn admin_request(socket: &std::path::Path, line: &str) -> io::Result<Result<String, String>> {
    let mut conn = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(e.kind(), format!("{}: {e} (is xia-router running?)", socket.display()))
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(line.as_bytes())?;
    conn.write_all(b"\n")?;
    let mut reply = String::new();
    io::Read::read_to_string(&mut conn, &mut reply)?;
    Ok(match reply.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some((e, _)) => Err(e.strip_prefix("error: ").unwrap_or(e).to_string()),
        None => Err(format!("no reply ({reply})")),
    })
}
