//! A QEMU virtual machine as a guard: started with the same machine on both sides of a
//! migration, stopped (by its pid only) when dropped, its serial console read from a file.
//!
//! A migration needs the two QEMUs to agree on everything that shapes the device state: machine
//! type (pinned to `pc-i440fx-7.2`, not the `pc` alias that moves with QEMU versions), accelerator,
//! CPU model, memory size, the device ids and PCI addresses, the NIC's MAC, the kernel, initrd and
//! command line. [`VmConfig`] writes one command line for both; only `-incoming defer` differs.
//!
//! TCG is the default accelerator: under the nested virtualization of these machines KVM
//! initializes but a Linux guest hangs early in boot. [`kvm_boots`] tells whether KVM works on
//! a given host, and [`Accel::Kvm`] uses it when asked.
//!
//! QEMU runs inside a network namespace when given one ([`Netns::cmd`]: `ip netns exec` execs
//! QEMU, so the pid is QEMU's own) with the extra environment variables of the config; the
//! command of an `exec:` migration is QEMU's child and inherits both (e.g. `XIAD_SOCKET`).
//! The process is a testbed [`Child`]: SIGTERM then SIGKILL on drop, and SIGTERM when the
//! thread that started it exits, so a killed test leaves no QEMU behind.
//!
//! The guest's console goes to a file (`-serial file:`), not a pipe: QEMU never blocks on a
//! slow reader, the log survives the process for a failing test to show, and the guest's output
//! keeps its exact bytes. QMP listens on a Unix socket at a filesystem path, which works across
//! namespaces (abstract sockets would not).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use xia_testbed::{Child, Netns};

use crate::image::{GuestImage, INIT_MARKER};
use crate::qmp::{Qmp, QmpError};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The machine type, pinned so that both sides agree whatever `pc` means to them.
pub const MACHINE: &str = "pc-i440fx-7.2";
/// The NIC's PCI slot, fixed so that both sides agree.
pub const NIC_ADDR: &str = "0x3";
/// The kernel's path limit for a Unix socket (sun_path, with its NUL).
const SUN_PATH_MAX: usize = 107;

/// Why a VM could not be started or did not do what was awaited.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// QEMU exited (early, or while something was awaited).
    #[error("QEMU {name} exited ({status}); stderr:\n{stderr}\nserial console (end):\n{serial}")]
    Exited {
        /// The VM's name.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
        /// The end of the serial console.
        serial: String,
    },
    /// What was awaited did not happen in time.
    #[error("VM {name}: timed out waiting for {what}; serial console (end):\n{serial}")]
    Timeout {
        /// The VM's name.
        name: String,
        /// What was awaited.
        what: String,
        /// The end of the serial console.
        serial: String,
    },
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The configuration cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// The accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// QEMU's own binary translation: slower, works everywhere (the default).
    #[default]
    Tcg,
    /// Hardware virtualization through `/dev/kvm`; see [`kvm_boots`] before relying on it.
    Kvm,
}

impl Accel {
    fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The guest CPU model: an Intel one. Under TCG, QEMU's default `qemu64` reports an AMD CPU of
/// family 15, for which Linux idles through `amd_e400_idle` (timer broadcast on every idle
/// entry); a guest migrated while it runs in that mode for more than about a second came up
/// with its timer tree corrupted ("Fatal exception in interrupt" in `rb_insert_color`), in 3 of
/// 3 runs of QEMU's own `tcp:` migration capped at 60 MiB/s (1.9 s). With `Nehalem`, 0 of 6.
pub const DEFAULT_CPU: &str = "Nehalem";

/// A virtio-net NIC on a tap device (`-netdev tap` + `-device virtio-net-pci`, id `nic0`,
/// PCI address [`NIC_ADDR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The tap device's name, in QEMU's namespace ([`crate::tap::Tap`]).
    pub tap: String,
    /// The guest's MAC address, `52:54:00:xx:xx:xx`; the same on both sides of a migration.
    pub mac: String,
}

/// How to start QEMU. Everything that must match between the two sides of a migration comes
/// from here, so build both sides' configs the same way and call [`VmConfig::incoming`] on the
/// destination's.
#[derive(Debug, Clone)]
pub struct VmConfig {
    dir: PathBuf,
    name: String,
    mem_mib: u32,
    accel: Accel,
    cpu: String,
    nic: Option<Nic>,
    incoming: bool,
    append: Vec<String>,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
}

impl VmConfig {
    /// A VM named `name` whose serial log (`<name>.serial`) and QMP socket (`<name>.qmp`) go in
    /// `dir`: 128 MiB, TCG, one CPU, no NIC.
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        VmConfig {
            dir: dir.into(),
            name: name.into(),
            mem_mib: 128,
            accel: Accel::Tcg,
            cpu: DEFAULT_CPU.to_string(),
            nic: None,
            incoming: false,
            append: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Guest memory in MiB.
    pub fn mem_mib(mut self, mib: u32) -> Self {
        self.mem_mib = mib;
        self
    }

    /// The accelerator.
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = accel;
        self
    }

    /// The CPU model (default [`DEFAULT_CPU`]); the same on both sides of a migration.
    pub fn cpu(mut self, model: impl Into<String>) -> Self {
        self.cpu = model.into();
        self
    }

    /// A virtio-net NIC on tap `tap` with MAC `mac`.
    pub fn nic(mut self, tap: impl Into<String>, mac: impl Into<String>) -> Self {
        self.nic = Some(Nic { tap: tap.into(), mac: mac.into() });
        self
    }

    /// Starts paused, waiting for an incoming migration (`-incoming defer`: set capabilities,
    /// then [`Qmp::migrate_incoming`]).
    pub fn incoming(mut self) -> Self {
        self.incoming = true;
        self
    }

    /// Adds `arg` to the kernel command line (after the image's own), e.g. `qh.ip=10.0.0.2/24`.
    pub fn append(mut self, arg: impl Into<String>) -> Self {
        self.append.push(arg.into());
        self
    }

    /// Sets an environment variable for QEMU and the commands it runs (`exec:` migrations).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Adds a raw QEMU argument (at the end of the command line).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the serial console is written.
    pub fn serial_path(&self) -> PathBuf {
        self.dir.join(format!("{}.serial", self.name))
    }

    /// Where QMP listens.
    pub fn qmp_path(&self) -> PathBuf {
        self.dir.join(format!("{}.qmp", self.name))
    }

    /// QEMU's arguments for `image`, the serial console going to `serial` (a chardev spec:
    /// `file:PATH`, `mon:stdio`, ...).
    pub fn qemu_args(&self, image: &GuestImage, serial: &str) -> Vec<OsString> {
        let mut append = image.append.clone();
        for a in &self.append {
            append.push(' ');
            append.push_str(a);
        }
        let mut qmp = OsString::from("unix:");
        qmp.push(self.qmp_path());
        qmp.push(",server=on,wait=off");
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &dyn AsRef<OsStr>| args.push(a.as_ref().to_owned());
        #[rustfmt::skip]
        let fixed: [&str; 13] = [
            "-name", &self.name, "-M", MACHINE, "-accel", self.accel.as_str(), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        ];
        for a in fixed {
            push(&a);
        }
        push(&"-cpu");
        push(&self.cpu);
        push(&"-m");
        push(&self.mem_mib.to_string());
        push(&"-kernel");
        push(&image.kernel);
        push(&"-initrd");
        push(&image.initrd);
        push(&"-append");
        push(&append);
        if let Some(nic) = &self.nic {
            push(&"-netdev");
            push(&format!("tap,id=n0,ifname={},script=no,downscript=no", nic.tap));
            push(&"-device");
            push(&format!("virtio-net-pci,netdev=n0,mac={},id=nic0,addr={NIC_ADDR}", nic.mac));
        }
        push(&"-serial");
        push(&serial);
        push(&"-qmp");
        push(&qmp);
        if self.incoming {
            push(&"-incoming");
            push(&"defer");
        }
        for a in &self.args {
            push(a);
        }
        args
    }

    /// The command that runs QEMU for `image` with the serial console to `serial`, inside
    /// `netns` if given, with the config's environment.
    pub fn command(&self, image: &GuestImage, netns: Option<&Netns>, serial: &str) -> Command {
        let mut cmd = match netns {
            Some(ns) => ns.cmd(QEMU),
            None => Command::new(QEMU),
        };
        cmd.args(self.qemu_args(image, serial));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// A running QEMU, stopped when dropped.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    name: String,
    serial: PathBuf,
    qmp: PathBuf,
}

impl Vm {
    /// Starts QEMU for `image` as `config` says, inside `netns` if given. Returns once the
    /// process runs; [`Vm::qmp`] waits for QEMU to be ready.
    ///
    /// Keep the `Vm` on the thread that started it (see [`Child`]).
    pub fn start(image: &GuestImage, config: &VmConfig, netns: Option<&Netns>) -> Result<Vm, VmError> {
        // QEMU splits option values at commas: a comma in a name would change the options.
        let plain = |what: &str, v: &str| {
            if v.is_empty() || v.contains([',', '/', '=', ' ']) {
                Err(VmError::Invalid(format!("{what} {v:?}: must be non-empty, without , / = or spaces")))
            } else {
                Ok(())
            }
        };
        plain("VM name", &config.name)?;
        if let Some(nic) = &config.nic {
            plain("tap name", &nic.tap)?;
            plain("MAC address", &nic.mac)?;
        }
        let qmp = config.qmp_path();
        let serial = config.serial_path();
        if qmp.to_string_lossy().contains(',') || serial.to_string_lossy().contains(',') {
            return Err(VmError::Invalid(format!(
                "{}: QEMU cannot take a path with a comma",
                config.dir.display()
            )));
        }
        if qmp.as_os_str().len() > SUN_PATH_MAX {
            return Err(VmError::Invalid(format!(
                "QMP socket path {} is longer than a Unix socket allows ({SUN_PATH_MAX} bytes)",
                qmp.display()
            )));
        }
        fs::create_dir_all(&config.dir)
            .map_err(|source| VmError::Io { what: format!("mkdir {}", config.dir.display()), source })?;
        for stale in [&qmp, &serial] {
            match fs::remove_file(stale) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(VmError::Io { what: format!("rm {}", stale.display()), source: e })
                }
                _ => {}
            }
        }
        let mut spec = OsString::from("file:");
        spec.push(&serial);
        let spec = spec.into_string().map_err(|_| VmError::Invalid("serial log path is not UTF-8".into()))?;
        let mut cmd = config.command(image, netns, &spec);
        cmd.stdin(Stdio::null());
        tracing::debug!("starting {cmd:?}");
        let child =
            Child::spawn(cmd).map_err(|source| VmError::Io { what: format!("start {QEMU}"), source })?;
        Ok(Vm { child, name: config.name.clone(), serial, qmp })
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The serial log's path.
    pub fn serial_path(&self) -> &Path {
        &self.serial
    }

    /// The QMP socket's path.
    pub fn qmp_path(&self) -> &Path {
        &self.qmp
    }

    /// Connects to QMP, waiting up to `timeout` for QEMU to listen; fails at once with QEMU's
    /// stderr if it exits meanwhile (a bad argument, a missing tap, KVM unavailable).
    pub fn qmp(&mut self, timeout: Duration) -> Result<Qmp, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            match Qmp::connect(&self.qmp, slice) {
                Ok(q) => return Ok(q),
                Err(e) => {
                    self.check_running()?;
                    if Instant::now() >= deadline {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// Everything the guest wrote to its console so far (invalid UTF-8 replaced).
    pub fn serial_text(&self) -> Result<String, VmError> {
        match fs::read(&self.serial) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(VmError::Io { what: format!("read {}", self.serial.display()), source }),
        }
    }

    /// The console's complete lines so far (a line still being written is left out), without
    /// their `\r\n`.
    pub fn serial_lines(&self) -> Result<Vec<String>, VmError> {
        Ok(complete_lines(&self.serial_text()?))
    }

    /// Waits up to `timeout` for a complete console line satisfying `pred` (looking from the
    /// start of the log) and returns it. Fails early if QEMU exits.
    pub fn wait_for_serial(
        &mut self,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.serial_lines()?.into_iter().find(|l| pred(l)) {
                return Ok(line);
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(VmError::Timeout {
                    name: self.name.clone(),
                    what: format!("a serial line within {timeout:?}"),
                    serial: self.serial_tail(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last 30 lines of the console, for error messages.
    pub fn serial_tail(&self) -> String {
        let text = self.serial_text().unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The end of QEMU's stderr.
    pub fn stderr_tail(&self) -> String {
        self.child.stderr_tail()
    }

    /// Waits up to `timeout` for QEMU to exit (after `quit`, a guest poweroff, a failed
    /// incoming migration): `Some(status)` when it has.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, VmError> {
        self.child
            .wait_timeout(timeout)
            .map_err(|source| VmError::Io { what: format!("wait for QEMU {}", self.name), source })
    }

    /// Stops QEMU now (SIGTERM, then SIGKILL after 2 s) and returns its exit status.
    pub fn stop(&mut self) -> Result<ExitStatus, VmError> {
        self.child
            .terminate()
            .map_err(|source| VmError::Io { what: format!("stop QEMU {}", self.name), source })
    }

    /// An error if QEMU has exited.
    fn check_running(&mut self) -> Result<(), VmError> {
        match self.wait_exit(Duration::ZERO)? {
            None => Ok(()),
            Some(status) => Err(VmError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                stderr: self.child.stderr_tail(),
                serial: self.serial_tail(),
            }),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Stopping is the Child's own drop; the socket QEMU may leave behind is ours to remove.
        let _ = self.child.terminate();
        let _ = fs::remove_file(&self.qmp);
    }
}

/// The complete lines of `text` (ended by `\n`), without `\r\n`.
fn complete_lines(text: &str) -> Vec<String> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => return Vec::new(),
    };
    complete.lines().map(|l| l.trim_end_matches('\r').to_string()).collect()
}

/// Boots `image` with KVM (128 MiB, no NIC) and reports whether the guest reached its init
/// within `timeout`: false when `/dev/kvm` is missing, QEMU refuses KVM, or the guest hangs (as
/// it does under the nested virtualization of the project's machines).
pub fn kvm_boots(image: &GuestImage, timeout: Duration) -> Result<bool, VmError> {
    if !Path::new("/dev/kvm").exists() {
        tracing::info!("no /dev/kvm");
        return Ok(false);
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "qemu-hooks-kvm-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // Kernel messages on, from the early console onwards, so that the log says where a hanging
    // guest stopped. (Here it prints nothing: it hangs before, right after the boot stub's
    // "Probing EDD", which `quiet` silences.)
    let config = VmConfig::new(&dir, "kvm-probe")
        .accel(Accel::Kvm)
        .append("earlyprintk=ttyS0,115200")
        .append("loglevel=7");
    let result = (|| {
        let mut vm = Vm::start(image, &config, None)?;
        match vm.wait_for_serial(|l| l.contains(INIT_MARKER), timeout) {
            Ok(_) => Ok(true),
            Err(VmError::Timeout { serial, .. }) => {
                let last = serial.lines().last().unwrap_or("(nothing)").to_string();
                tracing::info!(
                    "KVM guest did not reach init within {timeout:?}; console ended with: {last}; QEMU \
                     said: {}",
                    vm.stderr_tail().trim()
                );
                Ok(false)
            }
            Err(VmError::Exited { status, stderr, .. }) => {
                tracing::info!("QEMU with KVM exited ({status}): {}", stderr.trim());
                Ok(false)
            }
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines() {
        assert_eq!(complete_lines("a\r\nb\r\ntick 1"), vec!["a", "b"]);
        assert_eq!(complete_lines("tick"), Vec::<String>::new());
        assert_eq!(complete_lines("x\n"), vec!["x"]);
    }

    #[test]
    fn both_sides_share_one_command_line() {
        let image = GuestImage {
            kernel: "/k".into(),
            initrd: "/i".into(),
            append: "console=ttyS0 quiet panic=-1".into(),
        };
        let src = VmConfig::new("/tmp/d", "vm").nic("tap0", "52:54:00:00:00:01").append("qh.ip=10.0.0.2/24");
        let dst = src.clone().incoming();
        let a: Vec<String> =
            src.qemu_args(&image, "file:x").iter().map(|s| s.to_string_lossy().into()).collect();
        let b: Vec<String> =
            dst.qemu_args(&image, "file:x").iter().map(|s| s.to_string_lossy().into()).collect();
        assert_eq!(&b[..a.len()], &a[..]);
        assert_eq!(&b[a.len()..], ["-incoming", "defer"]);
        let line = a.join(" ");
        assert!(line.contains("-M pc-i440fx-7.2 -accel tcg -smp 1"), "{line}");
        assert!(line.contains("-append console=ttyS0 quiet panic=-1 qh.ip=10.0.0.2/24"), "{line}");
        assert!(line.contains("virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,id=nic0,addr=0x3"), "{line}");
        assert!(line.contains("-qmp unix:/tmp/d/vm.qmp,server=on,wait=off"), "{line}");
    }
}
