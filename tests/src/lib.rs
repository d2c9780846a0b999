//! End-to-end tests across the project's crates: real daemons on real (virtual) interfaces in
//! network namespaces. The tests live in `tests/tests/`; this library is their shared harness.
//!
//! The project's binaries (`xiad`, `xping`, `xia`, `xia-impair`) are taken from the target
//! directory the test runs from: `cargo test --workspace` builds them first.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use xia_testbed::{require_root, veth, Child, Netns};

/// The path of one of the project's binaries, next to the running test's directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows where it runs from");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace's binaries first (cargo test --workspace)",
        p.display()
    );
    p
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    /// A fresh directory under the system's temporary directory.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An AD shared by hosts on a bare link (no router).
pub const LINK_AD: &str = "AD:adadadadadadadadadadadadadadadadadadadad";

/// A running `xiad`.
#[derive(Debug)]
pub struct Xiad {
    /// The daemon process (stopped on drop).
    pub child: Child,
    /// Its application socket.
    pub socket: PathBuf,
    /// Its HID (`HID:<hex>`).
    pub hid: String,
    /// Its DAG, one-line `DAG` form.
    pub dag: String,
}

impl Xiad {
    /// Starts `xiad` on `ifname` in `ns`, with files under `dir`, and waits for it to serve.
    pub fn start(
        ns: &Netns,
        ifname: &str,
        dir: &Path,
        name: &str,
        ad: Option<&str>,
        pcap: Option<&Path>,
    ) -> io::Result<Xiad> {
        let socket = dir.join(format!("{name}.sock"));
        let mut cmd = ns.cmd(bin("xiad"));
        cmd.arg("-i").arg(ifname).arg("-s").arg(&socket).arg("-k").arg(dir.join(format!("{name}.key")));
        if let Some(ad) = ad {
            cmd.args(["--ad", ad]);
        }
        if let Some(p) = pcap {
            cmd.arg("--pcap").arg(p);
        }
        let mut child = Child::spawn(cmd)?;
        let ready = child.wait_for_line(|l| l.starts_with("xiad ready"), Duration::from_secs(20))?;
        let field = |k: &str| {
            ready.split(' ').find_map(|w| w.strip_prefix(k)).map(str::to_string).unwrap_or_default()
        };
        let hid = field("hid=");
        let dag = ready.split_once("dag=").map(|(_, d)| d.to_string()).unwrap_or_default();
        Ok(Xiad { child, socket, hid, dag })
    }

    /// The host's DAG in `RE AD HID` form (bare-link hosts share [`LINK_AD`]).
    pub fn re_dag(&self) -> String {
        format!("RE {LINK_AD} {}", self.hid)
    }

    /// A command of the `xia` tool against this daemon, run in `ns`.
    pub fn xia(&self, ns: &Netns) -> std::process::Command {
        let mut c = ns.cmd(bin("xia"));
        c.arg("--socket").arg(&self.socket);
        c
    }

    /// The daemon's counters.
    pub fn stats(&self, ns: &Netns) -> io::Result<std::collections::HashMap<String, u64>> {
        let out = self.xia(ns).arg("stats").output()?;
        if !out.status.success() {
            return Err(io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
            .collect())
    }

    /// Resident memory of the daemon, from /proc (kB).
    pub fn rss_kb(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

/// Two hosts A and B on one veth of MTU `mtu`, each with its `xiad`, sharing [`LINK_AD`].
#[derive(Debug)]
pub struct TwoHosts {
    // Field order is drop order: daemons before namespaces, the directory last.
    /// A's daemon.
    pub a: Xiad,
    /// B's daemon.
    pub b: Xiad,
    /// A's namespace.
    pub ns_a: Netns,
    /// B's namespace.
    pub ns_b: Netns,
    /// Keys, sockets, captures.
    pub dir: TempDir,
}

impl TwoHosts {
    /// Brings the pair up; `pcap_a` records A's frames.
    pub fn new(mtu: u32, pcap_a: bool) -> io::Result<TwoHosts> {
        let dir = TempDir::new("xia-e2e")?;
        let ns_a = Netns::new("xa")?;
        let ns_b = Netns::new("xb")?;
        veth(&ns_a, "xa0", &ns_b, "xb0", mtu)?;
        let pcap = pcap_a.then(|| dir.path().join("a.pcap"));
        let a = Xiad::start(&ns_a, "xa0", dir.path(), "a", Some(LINK_AD), pcap.as_deref())?;
        let b = Xiad::start(&ns_b, "xb0", dir.path(), "b", Some(LINK_AD), None)?;
        Ok(TwoHosts { a, b, ns_a, ns_b, dir })
    }

    /// A and B joined through a relay namespace R running `xia-impair` with `impair` arguments
    /// (e.g. `["--loss", "0.02", "--reorder", "0.05", "--duplicate", "0.01"]`).
    pub fn impaired(mtu: u32, impair: &[&str]) -> io::Result<Impaired> {
        let dir = TempDir::new("xia-e2e")?;
        let ns_a = Netns::new("xa")?;
        let ns_b = Netns::new("xb")?;
        let ns_r = Netns::new("xr")?;
        veth(&ns_a, "xa0", &ns_r, "ra0", mtu)?;
        veth(&ns_r, "rb0", &ns_b, "xb0", mtu)?;
        let mut cmd = ns_r.cmd(bin("xia-impair"));
        cmd.args(["--a", "ra0", "--b", "rb0"]).args(impair);
        let mut relay = Child::spawn(cmd)?;
        relay.wait_for_line(|l| l.starts_with("xia-impair ready"), Duration::from_secs(10))?;
        let a = Xiad::start(&ns_a, "xa0", dir.path(), "a", Some(LINK_AD), None)?;
        let b = Xiad::start(&ns_b, "xb0", dir.path(), "b", Some(LINK_AD), None)?;
        Ok(Impaired { relay, hosts: TwoHosts { a, b, ns_a, ns_b, dir }, ns_r })
    }
}

/// Two hosts joined through an impairment relay.
#[derive(Debug)]
pub struct Impaired {
    // Drop order: the relay, the hosts, then the relay's namespace.
    /// The relay process.
    pub relay: Child,
    /// The hosts.
    pub hosts: TwoHosts,
    /// The relay's namespace.
    pub ns_r: Netns,
}

/// The value after `key ` on the line of `text` that starts with it.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}
