//! End-to-end tests across the project's crates: real daemons on real (virtual) interfaces in
//! network namespaces. The tests live in `tests/tests/`; this library is their shared harness.
//!
//! The project's binaries (`xiad`, `xping`, `xia`, `xia-impair`) are taken from the target
//! directory the test runs from: `cargo test --workspace` builds them first.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use xia_testbed::{nft_loss, nft_loss_egress, require_root, veth, Child, Netns};

pub mod probe;

/// The path of one of the project's binaries, built with the running test (or tool).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows where it runs from");
    // A test runs from target/<profile>/deps/, a tool of this crate from target/<profile>/.
    let mut dir = exe.parent().expect("an executable is in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target/<profile>/deps");
    }
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
        let mut extra: Vec<&str> = Vec::new();
        if let Some(ad) = ad {
            extra.extend(["--ad", ad]);
        }
        let pcap = pcap.map(|p| p.to_string_lossy().into_owned());
        if let Some(p) = &pcap {
            extra.extend(["--pcap", p.as_str()]);
        }
        Xiad::start_with(ns, ifname, dir, name, &extra)
    }

    /// [`Xiad::start`] with more arguments (`--name`, ...).
    pub fn start_with(ns: &Netns, ifname: &str, dir: &Path, name: &str, extra: &[&str]) -> io::Result<Xiad> {
        let socket = dir.join(format!("{name}.sock"));
        let mut cmd = ns.cmd(bin("xiad"));
        cmd.arg("-i").arg(ifname).arg("-s").arg(&socket).arg("-k").arg(dir.join(format!("{name}.key")));
        cmd.args(extra);
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

impl Xiad {
    /// Waits for the daemon's gateway to confirm its registration (the API's event stream
    /// says so); the host's DAG then (its AD is the router's), in one-line `DAG` form.
    pub fn await_registered(&mut self, timeout: Duration) -> io::Result<String> {
        use xia_core::api::{Event, Xia};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let xia = Xia::at(&self.socket);
        let dag = rt.block_on(async {
            let mut events = xia.events().await?;
            if !events.info().registered {
                events.set_timeout(Some(timeout));
                events.wait_for(|e| matches!(e, Event::Registered { .. })).await?;
            }
            Ok::<_, xia_core::api::XiaError>(xia.info().await?.dag)
        })?;
        self.dag = dag.to_dag_string().replace('\n', "");
        Ok(self.dag.clone())
    }
}

/// A running `xia-router`.
#[derive(Debug)]
pub struct XRouter {
    /// The daemon process (stopped on drop).
    pub child: Child,
    /// Its admin socket.
    pub admin: PathBuf,
    /// Its AD (`AD:<hex>`).
    pub ad: String,
    /// Its HID (`HID:<hex>`).
    pub hid: String,
}

impl XRouter {
    /// Starts `xia-router` in `ns` on `ports`, with the AD key `<ad_key>.key` and its own key
    /// `<name>.key` under `dir`, and waits for it to forward. `extra`: more `run` arguments.
    /// Unless `extra` sets one, the chunk cache holds 64 MiB (more than any test transfers):
    /// a router faults its cache's memory in after start, and several routers starting at
    /// once with the default 256 MiB each slow the tests running beside them.
    pub fn start(
        ns: &Netns,
        ports: &[&str],
        dir: &Path,
        name: &str,
        ad_key: &str,
        extra: &[&str],
    ) -> io::Result<XRouter> {
        let admin = dir.join(format!("{name}.sock"));
        let mut cmd = ns.cmd(bin("xia-router"));
        cmd.arg("--admin").arg(&admin).arg("run");
        for p in ports {
            cmd.args(["-p", p]);
        }
        cmd.arg("--ad-key").arg(dir.join(format!("{ad_key}.key")));
        cmd.arg("-k").arg(dir.join(format!("{name}.key")));
        if !extra.contains(&"--cache-mib") {
            cmd.args(["--cache-mib", "64"]);
        }
        cmd.args(extra);
        let mut child = Child::spawn(cmd)?;
        let ready = child.wait_for_line(|l| l.starts_with("xia-router ready"), Duration::from_secs(20))?;
        let field = |k: &str| {
            ready.split(' ').find_map(|w| w.strip_prefix(k)).map(str::to_string).unwrap_or_default()
        };
        Ok(XRouter { ad: field("ad="), hid: field("hid="), child, admin })
    }

    /// Runs an admin command (`["route", "show"]`, `["stats"]`...) in `ns`; its output.
    pub fn admin(&self, ns: &Netns, args: &[&str]) -> io::Result<String> {
        let out = ns.cmd(bin("xia-router")).arg("--admin").arg(&self.admin).args(args).output()?;
        if !out.status.success() {
            return Err(io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The router's counters.
    pub fn stats(&self, ns: &Netns) -> io::Result<std::collections::HashMap<String, u64>> {
        Ok(self
            .admin(ns, &["stats"])?
            .lines()
            .filter_map(|l| l.split_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
            .collect())
    }
}

/// The paper's Fig. 1 testbeds. 1a: hosts A, B, C on router R1 (one AD). 1b: R1 (AD1) with A
/// and C, R2 (AD2) with B, R1 and R2 linked. Every host has registered when this returns.
#[derive(Debug)]
pub struct Fig1 {
    // Field order is drop order: daemons, then namespaces, then the directory.
    /// Host A's daemon.
    pub a: Xiad,
    /// Host B's daemon.
    pub b: Xiad,
    /// Host C's daemon.
    pub c: Xiad,
    /// Router R1 (AD1).
    pub r1: XRouter,
    /// Router R2 (AD2), in Fig. 1b.
    pub r2: Option<XRouter>,
    /// A's namespace (interface `eth0`; the others likewise).
    pub ns_a: Netns,
    /// B's namespace.
    pub ns_b: Netns,
    /// C's namespace.
    pub ns_c: Netns,
    /// R1's namespace (ports `r1a`, `r1b` or `r1r2`, `r1c`).
    pub ns_r1: Netns,
    /// R2's namespace (ports `r2r1`, `r2b`), in Fig. 1b.
    pub ns_r2: Option<Netns>,
    /// Keys, sockets, captures.
    pub dir: TempDir,
}

impl Fig1 {
    /// Brings up Fig. 1a (`two_ads` false) or 1b, with links of MTU `mtu`; `pcap_r1` records
    /// R1's frames to `r1.pcap` in the directory. In 1b, `spare_a` also links A (`eth1`, no
    /// daemon on it) to R2 (port `r2a`): where A goes when it moves to AD2.
    pub fn new(two_ads: bool, mtu: u32, pcap_r1: bool, spare_a: bool) -> io::Result<Fig1> {
        Fig1::with_r1_args(two_ads, mtu, pcap_r1, spare_a, &[])
    }

    /// [`Fig1::new`], R1 started with `r1_more` arguments too.
    pub fn with_r1_args(
        two_ads: bool,
        mtu: u32,
        pcap_r1: bool,
        spare_a: bool,
        r1_more: &[&str],
    ) -> io::Result<Fig1> {
        Fig1::with_router_args(two_ads, mtu, pcap_r1, spare_a, r1_more, &[])
    }

    /// [`Fig1::new`], R1 and R2 started with `r1_more` and `r2_more` arguments too.
    pub fn with_router_args(
        two_ads: bool,
        mtu: u32,
        pcap_r1: bool,
        spare_a: bool,
        r1_more: &[&str],
        r2_more: &[&str],
    ) -> io::Result<Fig1> {
        // What runs killed before their guards could drop left behind.
        for prefix in ["fa", "fb", "fc", "fr1", "fr2"] {
            let _ = Netns::remove_stale(prefix);
        }
        let dir = TempDir::new("xia-fig1")?;
        let ns_a = Netns::new("fa")?;
        let ns_b = Netns::new("fb")?;
        let ns_c = Netns::new("fc")?;
        let ns_r1 = Netns::new("fr1")?;
        let pcap = dir.path().join("r1.pcap");
        let mut r1_extra: Vec<&str> =
            if pcap_r1 { vec!["--pcap", pcap.to_str().unwrap_or_default()] } else { vec![] };
        r1_extra.extend_from_slice(r1_more);
        let (r1, r2, ns_r2) = if two_ads {
            let ns_r2 = Netns::new("fr2")?;
            veth(&ns_a, "eth0", &ns_r1, "r1a", mtu)?;
            veth(&ns_c, "eth0", &ns_r1, "r1c", mtu)?;
            veth(&ns_r1, "r1r2", &ns_r2, "r2r1", mtu)?;
            veth(&ns_b, "eth0", &ns_r2, "r2b", mtu)?;
            let mut r2_ports = vec!["r2r1", "r2b"];
            if spare_a {
                veth(&ns_a, "eth1", &ns_r2, "r2a", mtu)?;
                r2_ports.push("r2a");
            }
            // As an operator configures them: hosts' links are access ports, the link between
            // the ADs peering.
            let mut r1_args: Vec<&str> = vec!["--access", "r1a", "--access", "r1c", "--peering", "r1r2"];
            r1_args.extend_from_slice(&r1_extra);
            let mut r2_args: Vec<&str> = vec!["--access", "r2b", "--peering", "r2r1"];
            if spare_a {
                r2_args.extend_from_slice(&["--access", "r2a"]);
            }
            r2_args.extend_from_slice(r2_more);
            let r1 = XRouter::start(&ns_r1, &["r1a", "r1c", "r1r2"], dir.path(), "r1", "ad1", &r1_args)?;
            let r2 = XRouter::start(&ns_r2, &r2_ports, dir.path(), "r2", "ad2", &r2_args)?;
            (r1, Some(r2), Some(ns_r2))
        } else {
            veth(&ns_a, "eth0", &ns_r1, "r1a", mtu)?;
            veth(&ns_b, "eth0", &ns_r1, "r1b", mtu)?;
            veth(&ns_c, "eth0", &ns_r1, "r1c", mtu)?;
            let mut r1_args: Vec<&str> = vec!["--access", "r1a", "--access", "r1b", "--access", "r1c"];
            r1_args.extend_from_slice(&r1_extra);
            let r1 = XRouter::start(&ns_r1, &["r1a", "r1b", "r1c"], dir.path(), "r1", "ad1", &r1_args)?;
            (r1, None, None)
        };
        let mut a = Xiad::start(&ns_a, "eth0", dir.path(), "a", None, None)?;
        let mut b = Xiad::start(&ns_b, "eth0", dir.path(), "b", None, None)?;
        let mut c = Xiad::start(&ns_c, "eth0", dir.path(), "c", None, None)?;
        for h in [&mut a, &mut b, &mut c] {
            h.await_registered(Duration::from_secs(10))?;
        }
        Ok(Fig1 { a, b, c, r1, r2, ns_a, ns_b, ns_c, ns_r1, ns_r2, dir })
    }
}

/// A DAG in one-line `DAG` form as `RE ...` words for `xping` (linear DAGs only).
pub fn re_words(dag: &str) -> Vec<String> {
    let d: xia_core::dag::Dag = dag.parse().expect("a DAG the daemon printed");
    d.to_re_string().expect("a linear DAG").split(' ').map(str::to_string).collect()
}

/// One hostile frame made from `template` (a valid Ethernet + XIP frame), of kind `kind % 4`:
/// random noise, a flipped bit after the Ethernet header, truncated, or lying lengths and node
/// counts. Addressed to `dst` with the XIP ethertype.
pub fn hostile_frame(
    rng: &mut xia_core::rng::Rng,
    template: &[u8],
    kind: u32,
    dst: xia_core::wire::ethernet::EthernetAddress,
) -> Vec<u8> {
    let mut v = match kind % 4 {
        0 => {
            let mut v = vec![0u8; 14 + rng.below(1400) as usize];
            rng.fill(&mut v);
            v
        }
        1 => {
            let mut v = template.to_vec();
            let k = 14 + rng.below((v.len() - 14) as u64) as usize;
            v[k] ^= 1 << rng.below(8);
            v
        }
        2 => {
            let mut v = template.to_vec();
            v.truncate(14 + rng.below((v.len() - 14) as u64) as usize);
            v
        }
        _ => {
            let mut v = template.to_vec();
            v[14 + 2] = rng.next_u64() as u8;
            v[14 + 5] = rng.below(40) as u8;
            v
        }
    };
    v[..6].copy_from_slice(&dst.0);
    v[12..14].copy_from_slice(&0xC0DEu16.to_be_bytes());
    v
}

/// Runs `c` to completion; its stdout. Panics with both outputs when it fails.
pub fn run_ok(mut c: std::process::Command) -> String {
    let what = format!("{c:?}");
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads a capture with tshark (Wireshark's own XIP dissector): more than `min_frames` XIP
/// frames, frames of every transport (next headers 1, 2, 3 and 12), and none that tshark flags
/// (bad lengths, bad node counts, malformed).
pub fn assert_tshark_decodes(pcap: &Path, min_frames: usize) {
    let tshark = |args: &[&str]| {
        let mut t = std::process::Command::new("tshark");
        t.arg("-r").arg(pcap).args(args);
        run_ok(t)
    };
    let next = tshark(&["-Y", "xip", "-T", "fields", "-e", "xip.next_hdr"]);
    let next: Vec<&str> = next.lines().collect();
    assert!(next.len() > min_frames, "{} XIP frames", next.len());
    for nh in ["1", "2", "3", "12"] {
        assert!(next.contains(&nh), "no frame with next header {nh}");
    }
    let errors = tshark(&[
        "-Y",
        "xip.invalid.len || xip.bad_num_dst || xip.bad_num_src || (_ws.malformed && !xip.next.header)",
    ]);
    assert_eq!(errors, "", "tshark flagged frames");
}
