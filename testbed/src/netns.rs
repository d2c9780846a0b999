//! Network namespaces as guard objects, and the links between them.

use std::ffi::{CString, OsStr};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Interface names are limited by the kernel to IFNAMSIZ - 1 bytes.
const IFNAME_MAX: usize = 15;

/// Makes names unique among the namespaces of this process; the pid makes them unique among
/// processes (parallel `cargo test` binaries).
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted when dropped.
///
/// Its name is `prefix` + pid + `-` + a process-wide counter, so tests running in parallel, in
/// one process or several, never collide. `lo` is up and IPv6 is off: the test networks carry
/// XIA (and IPv4 for baselines), and IPv6's link-up chatter (router solicitations, MLD, DAD)
/// would otherwise show up in frame counts, relay statistics and captures.
///
/// Drop the processes running inside ([`crate::Child`]) before the namespace; locals drop in
/// reverse order, so create the `Netns` first.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `prefix` + pid + `-` + counter.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}-{id}", std::process::id());
        check(Command::new("ip").args(["netns", "add", &name]).output(), &format!("ip netns add {name}"))?;
        // From here on the guard exists, so a failure below still deletes the namespace.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.enter(|| -> io::Result<()> {
            for conf in ["all", "default", "lo"] {
                let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                match std::fs::write(&path, "1") {
                    // A kernel without IPv6 has nothing to silence.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    r => r.map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?,
                }
            }
            Ok(())
        })??;
        Ok(ns)
    }

    /// Deletes the namespaces that [`Netns::new`] made with `prefix` in processes that no longer
    /// run (a test binary killed before its guards could drop), and returns their names.
    /// Namespaces of live processes, and names of any other shape, are left alone.
    pub fn remove_stale(prefix: &str) -> io::Result<Vec<String>> {
        let list = check(Command::new("ip").args(["netns", "list"]).output(), "ip netns list")?;
        let mut removed = Vec::new();
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            // `ip netns list` prints "NAME" or "NAME (id: N)".
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(pid) = stale_owner(name, prefix) else { continue };
            // SAFETY: kill with signal 0 only checks whether the pid exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if !alive {
                check(
                    Command::new("ip").args(["netns", "del", name]).output(),
                    &format!("ip netns del {name}"),
                )?;
                removed.push(name.to_string());
            }
        }
        Ok(removed)
    }

    /// The namespace's name (under `/var/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command running `program` inside the namespace (`ip netns exec NAME program`). `ip`
    /// execs the program, so the child's pid is the program's own.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args[0]` with the remaining arguments inside the namespace and returns its stdout;
    /// an error (with the command and its stderr) when it cannot start or exits non-zero.
    pub fn run(&self, args: &[&str]) -> io::Result<String> {
        self.run_with_input(args, "")
    }

    /// Like [`Netns::run`], with `input` on the program's stdin (`nft -f -`, `sh -s`).
    pub fn run_with_input(&self, args: &[&str], input: &str) -> io::Result<String> {
        let (program, rest) =
            args.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let what = format!("`{}` in netns {}", args.join(" "), self.name);
        let mut cmd = self.cmd(program);
        cmd.args(rest).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = cmd.spawn().and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                // A program that exits without reading its input is judged by its exit status.
                let _ = stdin.write_all(input.as_bytes());
            }
            child.wait_with_output()
        });
        check(output, &what).map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a fresh thread inside the namespace and returns its result; sockets it opens
    /// stay in the namespace. A panic in `f` is resumed on the caller's thread.
    ///
    /// Unlike a bare `setns` (`xia_core::link::afpacket::in_netns`), the thread also gets a
    /// private mount namespace with sysfs mounted anew, as `ip netns exec` does: sysfs shows the
    /// interfaces of the namespace that mounted it, so without this `/sys/class/net/IF` (which
    /// `PacketSocket::open` reads) still describes the root namespace.
    ///
    /// Do not spawn a [`crate::Child`] in `f`: the thread ends when `f` returns, and the child
    /// with it (see [`crate::Child`]); start processes with [`Netns::cmd`].
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = CString::new(format!("/var/run/netns/{}", self.name))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "namespace name contains NUL"))?;
        let thread = std::thread::spawn(move || -> io::Result<T> {
            enter_netns(&path)?;
            Ok(f())
        });
        match thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// `ip -n NAME args...`: `ip` switches namespace itself, with no exec in between.
    fn ip(&self, args: &[&str]) -> io::Result<()> {
        let what = format!("`ip -n {} {}`", self.name, args.join(" "));
        check(Command::new("ip").args(["-n", &self.name]).args(args).output(), &what).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort: a leaked namespace is better than a panic while unwinding from a
        // failed test (which would abort the whole test binary).
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into the namespace at `path`, with its own view of sysfs.
fn enter_netns(path: &CString) -> io::Result<()> {
    // SAFETY: open(2) on a valid C string.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(os_error(&format!("open {}", path.to_string_lossy())));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: setns on a namespace descriptor we own; it changes only this thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_error("setns"));
    }
    // CLONE_NEWNS implies CLONE_FS, which a thread may unshare on its own.
    // SAFETY: plain system call; affects only this thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(os_error("unshare(CLONE_NEWNS)"));
    }
    let root = c"/";
    let sys = c"/sys";
    // Slave, so the sysfs mount below does not propagate back to the host's mount namespace.
    // SAFETY: valid C strings; null fstype/data are allowed for a propagation change.
    if unsafe {
        libc::mount(
            c"none".as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(os_error("mount --make-rslave /"));
    }
    // SAFETY: valid C string. Failure (nothing mounted there) is fine: we mount over it.
    unsafe { libc::umount2(sys.as_ptr(), libc::MNT_DETACH) };
    // SAFETY: valid C strings; sysfs takes no data.
    if unsafe { libc::mount(c"sysfs".as_ptr(), sys.as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null()) } != 0 {
        return Err(os_error("mount sysfs"));
    }
    Ok(())
}

/// The pid in a name of the form `prefix` + pid + `-` + counter, as [`Netns::new`] makes them.
fn stale_owner(name: &str, prefix: &str) -> Option<libc::pid_t> {
    let (pid, id) = name.strip_prefix(prefix)?.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(pid) || !all_digits(id) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

fn os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An error unless the command ran and exited 0; the error names the command and has its stderr.
fn check(output: io::Result<Output>, what: &str) -> io::Result<Output> {
    let out = output.map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )))
    }
}

fn check_ifname(ifname: &str) -> io::Result<()> {
    if ifname.is_empty() || ifname.len() > IFNAME_MAX || ifname.contains(['/', ' ', '"', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?} (1 to {IFNAME_MAX} bytes, no '/', space or quote)"),
        ));
    }
    Ok(())
}

/// Joins `a` and `b` with a veth pair: `if_a` in `a`, `if_b` in `b`, both with `mtu`, both up.
///
/// Each end is created directly inside its namespace (`ip link add ... netns`), so no name ever
/// exists in the root namespace and parallel tests cannot collide. Deleting either namespace
/// deletes the pair.
pub fn veth(a: &Netns, if_a: &str, b: &Netns, if_b: &str, mtu: u32) -> io::Result<()> {
    check_ifname(if_a)?;
    check_ifname(if_b)?;
    let mtu = mtu.to_string();
    #[rustfmt::skip]
    let args = [
        "link", "add", if_a, "netns", a.name(), "mtu", &mtu, "type", "veth",
        "peer", "name", if_b, "netns", b.name(), "mtu", &mtu,
    ];
    check(Command::new("ip").args(args).output(), &format!("`ip {}`", args.join(" ")))?;
    let up = a.ip(&["link", "set", if_a, "up"]).and_then(|()| b.ip(&["link", "set", if_b, "up"]));
    if up.is_err() {
        // Deleting one end deletes the pair.
        let _ = a.ip(&["link", "del", if_a]);
    }
    up
}

/// Turns off the checksum and segmentation offloads of `ifname` in `ns`
/// (`ethtool -K IF tx off tso off gso off gro off`).
///
/// Needed on every veth of a path through an AF_PACKET relay: with offloads on, IP frames carry
/// unfinished checksums (CHECKSUM_PARTIAL) or arrive as 64 KB GRO/GSO super-frames, which the
/// relay cannot pass on and the far end drops. XIA frames have no offloaded checksum, but
/// GRO/GSO still change their sizes.
pub fn offloads_off(ns: &Netns, ifname: &str) -> io::Result<()> {
    check_ifname(ifname)?;
    ns.run(&["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]).map(drop)
}

/// Drops `percent`% of the frames arriving on `ifname` in `ns`, at random, in the kernel (an
/// nftables `netdev` ingress rule). Calling it again replaces the rule; 0 removes it.
///
/// Seen by the IP stack and by packet sockets bound to one ethertype, **not** by AF_PACKET
/// sockets bound to every protocol (`ETH_P_ALL`), which is how `xia_core`'s `PacketSocket`
/// binds: the kernel hands frames to those taps before the ingress hook runs. For loss that
/// XIA endpoints see, use [`nft_loss_egress`] on the sending end, or the `xia-impair` relay.
pub fn nft_loss(ns: &Netns, ifname: &str, percent: u32) -> io::Result<()> {
    nft_drop(ns, ifname, "ingress", percent)
}

/// Drops `percent`% of the frames leaving `ifname` in `ns`, at random, in the kernel (an
/// nftables `netdev` egress rule, Linux 5.16+). Calling it again replaces the rule; 0 removes it.
///
/// Every receiver sees this loss, packet sockets included. The sender does not see a lost
/// frame on the wire: its send fails with ENOBUFS, which `PacketSocket` counts as `tx_dropped`
/// and treats as sent, and UDP ignores; TCP, however, takes it as local congestion and sends
/// again, so for TCP baselines put the loss on the receiving end ([`nft_loss`]) instead.
/// Frames sent with `qdisc_bypass` skip the hook.
pub fn nft_loss_egress(ns: &Netns, ifname: &str, percent: u32) -> io::Result<()> {
    nft_drop(ns, ifname, "egress", percent)
}

fn nft_drop(ns: &Netns, ifname: &str, hook: &str, percent: u32) -> io::Result<()> {
    check_ifname(ifname)?;
    if percent > 100 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("loss of {percent}% (0 to 100)")));
    }
    // One table per interface and hook, so rules on several interfaces coexist.
    let table: String = format!("impair_{hook}_{ifname}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // Creating the table first makes the delete succeed whether or not it existed: the usual
    // nft idiom for "replace", applied atomically with what follows.
    let mut script = format!("table netdev {table} {{}}\ndelete table netdev {table}\n");
    if percent > 0 {
        // Every frame: a plain drop (nft's numgen comparison stops at 99).
        let rule = if percent == 100 {
            "drop".to_string()
        } else {
            format!("numgen random mod 100 < {percent} drop")
        };
        script += &format!(
            "table netdev {table} {{\n  chain c {{\n    type filter hook {hook} device \"{ifname}\" priority 0; \
             policy accept;\n    {rule}\n  }}\n}}\n"
        );
    }
    ns.run_with_input(&["nft", "-f", "-"], &script).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("veth0").is_ok());
        assert!(check_ifname("fifteen-chars-x").is_ok());
        assert!(check_ifname("sixteen-chars-xx").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a\"b").is_err());
    }

    #[test]
    fn stale_names_are_recognized() {
        assert_eq!(stale_owner("tb-a123-4", "tb-a"), Some(123));
        assert_eq!(stale_owner("tb-a123-4", "tb-b"), None);
        assert_eq!(stale_owner("tb-a123", "tb-a"), None);
        assert_eq!(stale_owner("tb-a12x-4", "tb-a"), None);
        assert_eq!(stale_owner("tb-a123-4-5", "tb-a"), None);
        assert_eq!(stale_owner("tb-a0-4", "tb-a"), None);
    }
}
