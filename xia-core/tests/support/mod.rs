//! What the in-process tests of `xiad` share: daemons on threads of the test process, joined by a
//! simulated wire (no root, no interface), each reached by the application API over its socket.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use xia_core::api::Xia;
use xia_core::daemon::{spawn, DaemonConfig, Spawned};
use xia_core::host::HostConfig;
use xia_core::keys::Keypair;
use xia_core::link::sim::SimConfig;
use xia_core::link::sim_wire::SimWire;
use xia_core::transport::stream::StreamConfig;
use xia_core::wire::ethernet::EthernetAddress;
use xia_core::xid::{Principal, Xid};
use xia_core::Dag;

/// The AD of hosts on a bare wire (no router).
pub const AD: Xid = Xid::new(Principal::Ad, [0xad; 20]);

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    pub fn new() -> TempDir {
        // Short: Unix socket paths are limited to 108 bytes.
        let p = std::env::temp_dir().join(format!(
            "xd{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temporary directory");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Host tunables for tests: streams give up on a silent peer within a few seconds.
pub fn host_config(static_ad: Option<Xid>) -> HostConfig {
    HostConfig {
        static_ad,
        stream: StreamConfig {
            user_timeout: Duration::from_secs(3),
            keepalive: Some(Duration::from_millis(500)),
            keepalive_interval: Duration::from_millis(250),
            keepalive_probes: 4,
            ..StreamConfig::default()
        },
        ..HostConfig::default()
    }
}

/// One daemon on the wire.
#[derive(Debug)]
pub struct Node {
    pub daemon: Option<Spawned>,
    pub xia: Xia,
    /// Its port's index on the wire.
    pub port: usize,
    pub mac: EthernetAddress,
}

impl Node {
    /// The host's DAG as it was when the daemon started.
    pub fn dag(&self) -> Dag {
        self.daemon.as_ref().expect("running").ready.dag.clone()
    }

    pub fn hid(&self) -> Xid {
        self.daemon.as_ref().expect("running").ready.hid
    }

    /// Stops the daemon at once (its peers hear nothing more from it).
    pub fn kill(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().expect("the daemon ends cleanly");
        }
    }
}

/// Daemons on one simulated wire. Field order is drop order: daemons first.
#[derive(Debug)]
pub struct Net {
    pub nodes: Vec<Node>,
    pub wire: SimWire,
    pub dir: TempDir,
}

impl Net {
    /// An empty wire.
    pub fn new() -> Net {
        Net { nodes: Vec::new(), wire: SimWire::new(), dir: TempDir::new() }
    }

    /// `n` hosts on a bare wire sharing [`AD`], each port receiving through `ingress`.
    pub fn hosts(n: usize, mtu: usize, ingress: SimConfig) -> Net {
        let mut net = Net::new();
        for _ in 0..n {
            net.add(mtu, ingress.clone(), host_config(Some(AD)));
        }
        net
    }

    /// Adds a daemon with `cfg`; returns its index.
    pub fn add(&mut self, mtu: usize, ingress: SimConfig, cfg: HostConfig) -> usize {
        let i = self.nodes.len();
        let mac = EthernetAddress([2, 0, 0, 0, 1, i as u8 + 1]);
        let port = self.wire.port(mac, mtu, ingress, 1000 + i as u64).expect("a port");
        let index = port.index();
        let socket = self.dir.path().join(format!("{i}.sock"));
        let key = Keypair::from_seed([i as u8 + 1; 32]);
        let cfg =
            DaemonConfig { socket: socket.clone(), host: HostConfig { seed: Some(i as u64 + 7), ..cfg } };
        let daemon = spawn(cfg, key, port).expect("the daemon serves");
        self.nodes.push(Node { daemon: Some(daemon), xia: Xia::at(socket), port: index, mac });
        i
    }

    /// Changes what every port receives from now on.
    pub fn impair_all(&self, cfg: SimConfig) {
        for n in &self.nodes {
            self.wire.set_ingress(n.port, cfg.clone(), 77 + n.port as u64);
        }
    }
}

/// A current-thread runtime, as small tools use.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

/// Pseudo-random bytes of a prime period (data at a wrong offset does not match by accident).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut block = vec![0u8; 1_048_573.min(len.max(1))];
    xia_core::rng::Rng::new(seed).fill(&mut block);
    block.iter().copied().cycle().take(len).collect()
}

/// Big transfers share two cores with everything else: one at a time.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port on the wire driven by a script on a thread of its own: each received frame goes to
/// `on_frame`, `tick` runs every `every`; what they return is sent. Stopped when dropped.
pub struct Scripted {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    pub fn start(
        wire: &SimWire,
        mac: EthernetAddress,
        mtu: usize,
        every: Duration,
        mut on_frame: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
        mut tick: impl FnMut() -> Vec<Vec<u8>> + Send + 'static,
    ) -> Scripted {
        use xia_core::link::Link;
        let mut port = wire.port(mac, mtu, SimConfig::default(), 4242).expect("a port");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut next_tick = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let mut out = Vec::new();
                if std::time::Instant::now() >= next_tick {
                    out.extend(tick());
                    next_tick += every;
                }
                port.receive(256, &mut |f| out.extend(on_frame(f))).expect("receive");
                let mut out = out.into_iter();
                port.transmit(&mut |buf| {
                    let f = out.next()?;
                    buf[..f.len()].copy_from_slice(&f);
                    Some(f.len())
                })
                .expect("transmit");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Scripted { stop, thread: Some(thread) }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
