//! A bootable guest built from parts fetched and cached, with nothing installed on the host.
//!
//! A guest is a kernel (Debian's cloud kernel, [`kernel`]), an initramfs and a kernel command
//! line. The initramfs holds busybox-static and its applet links, the virtio modules, an `/init`
//! script and whatever files the caller adds (typically the project's binaries built static,
//! [`build_static_bin`]); `/init` mounts the usual file systems, loads the modules in order,
//! brings `lo` and `eth0` up and runs the caller's program on the console.
//!
//! Images live under a cache directory (tests and scripts use `target/qemu-guest/`,
//! [`default_cache_dir`]) in `images/<key>/`, where the key is a hash of every input: the kernel
//! package and version, the modules, busybox, the init script (which spells out the program and
//! its arguments) and every extra file's path, mode and contents. Unchanged inputs find the
//! image built before; any change builds a new one (and removes the images nobody used for a
//! week). An image is assembled in a temporary directory and renamed into place, so concurrent
//! builders (parallel tests, two checkouts sharing a cache) never see or leave a half-written
//! image.
//!
//! The archive is written here ([`cpio`]) and compressed with the host's `gzip` (or busybox's):
//! the kernel unpacks gzip without help, and no compression crate is needed for it.

pub mod cpio;
pub mod kernel;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::load::LoadArgs;
use cpio::CpioWriter;
pub use kernel::{KernelParts, VIRTIO_MODULES};

/// Bumped whenever the layout of an image changes in a way the inputs do not show.
const FORMAT: &str = "qemu-hooks image v1";

/// The kernel command line every image is booted with: the console on the first serial port,
/// no kernel chatter on it (the tests read it), and a panic reboots at once (QEMU is started
/// with `-no-reboot`, so a panicking guest ends the QEMU process instead of hanging).
pub const BASE_APPEND: &str = "console=ttyS0 quiet panic=-1";

/// Where `/init` puts the workload binary of [`ImageBuilder::guest_load`].
pub const GUEST_LOAD_PATH: &str = "/bin/guest-load";

/// What `/init` prints first: the sign that the kernel booted and reached userspace.
pub const INIT_MARKER: &str = "qemu-hooks: init";

/// Images no build has asked for in this long are removed when a new image is built.
pub const KEEP_UNUSED: Duration = Duration::from_secs(7 * 24 * 3600);

/// The target the guest's binaries are built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A tool (apt-get, dpkg-deb, gzip, cargo, ...) could not run or failed.
    #[error("{command}: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and the end of its stderr, or why it did not start.
        detail: String,
    },
    /// The kernel package could not be found, fetched or used.
    #[error("kernel: {0}")]
    Kernel(String),
    /// A binary for the guest needs shared libraries the initramfs does not have.
    #[error("{0} is dynamically linked: the guest has no shared libraries (build it static)")]
    NotStatic(PathBuf),
    /// The caller asked for something that cannot be built.
    #[error("{0}")]
    Invalid(String),
}

/// A bootable guest: what QEMU's `-kernel`, `-initrd` and `-append` take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// The kernel image (bzImage).
    pub kernel: PathBuf,
    /// The initramfs (gzip-compressed cpio).
    pub initrd: PathBuf,
    /// The kernel command line ([`BASE_APPEND`]).
    pub append: String,
}

/// A file copied from the host into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// Where it is on the host.
    pub host: PathBuf,
    /// Where it goes in the guest (absolute).
    pub guest: String,
    /// Its mode in the guest; the host file's when `None`.
    pub mode: Option<u32>,
}

/// Builds (or finds in the cache) a [`GuestImage`].
///
/// ```no_run
/// use qemu_hooks::image::{build_static_bin, default_cache_dir, ImageBuilder};
/// use qemu_hooks::load::LoadArgs;
///
/// let load = build_static_bin("qemu-hooks", "guest-load")?;
/// let image = ImageBuilder::new(default_cache_dir())
///     .guest_load(&load, &LoadArgs { fill_mib: 32, sum_secs: 1, ..LoadArgs::default() })
///     .build()?;
/// println!("{} {} {}", image.kernel.display(), image.initrd.display(), image.append);
/// # Ok::<(), qemu_hooks::image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    cache: PathBuf,
    kernel_package: Option<String>,
    busybox: Option<PathBuf>,
    files: Vec<ExtraFile>,
    program: Vec<String>,
}

impl ImageBuilder {
    /// A builder caching under `cache`. Without a program the guest runs an interactive shell
    /// on the console (`setsid cttyhack sh`).
    pub fn new(cache: impl Into<PathBuf>) -> Self {
        ImageBuilder {
            cache: cache.into(),
            kernel_package: None,
            busybox: None,
            files: Vec::new(),
            program: vec!["setsid".into(), "cttyhack".into(), "sh".into()],
        }
    }

    /// Uses this Debian kernel package (e.g. `linux-image-6.1.0-57-cloud-amd64`) instead of the
    /// one `linux-image-cloud-amd64` currently depends on.
    pub fn kernel_package(mut self, package: impl Into<String>) -> Self {
        self.kernel_package = Some(package.into());
        self
    }

    /// Uses this busybox binary (it must be static) instead of the one on `PATH`.
    pub fn busybox(mut self, path: impl Into<PathBuf>) -> Self {
        self.busybox = Some(path.into());
        self
    }

    /// Adds the host file `host` at `guest` (an absolute path), with the host file's mode.
    pub fn file(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.files.push(ExtraFile { host: host.into(), guest: guest.into(), mode: None });
        self
    }

    /// Adds an extra file as described.
    pub fn extra_file(mut self, file: ExtraFile) -> Self {
        self.files.push(file);
        self
    }

    /// The program `/init` runs once the system is up, with the console as its stdin, stdout
    /// and stderr: `argv[0]` is looked up on the guest's `PATH` (`/usr/sbin:/usr/bin:/sbin:/bin`).
    pub fn program<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.program = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Adds the `guest-load` binary `host_binary` (built static: [`build_static_bin`]) at
    /// [`GUEST_LOAD_PATH`] and makes it the program, with `args`.
    pub fn guest_load(self, host_binary: impl Into<PathBuf>, args: &LoadArgs) -> Self {
        let argv = std::iter::once(GUEST_LOAD_PATH.to_string()).chain(args.to_args());
        self.file(host_binary, GUEST_LOAD_PATH).program(argv)
    }

    /// Returns the image for these inputs, building it (and fetching the kernel) if the cache
    /// does not have it yet.
    pub fn build(&self) -> Result<GuestImage, ImageError> {
        let started = Instant::now();
        if self.program.is_empty() {
            return Err(ImageError::Invalid("the guest program is empty".into()));
        }
        let busybox = match &self.busybox {
            Some(p) => p.clone(),
            None => find_on_path("busybox")
                .ok_or_else(|| ImageError::Invalid("no busybox on PATH (install busybox-static)".into()))?,
        };
        let busybox_bytes = fs::read(&busybox).map_err(|e| io_err(&busybox, e))?;
        if elf_is_dynamic(&busybox_bytes) == Some(true) {
            return Err(ImageError::NotStatic(busybox));
        }
        let applets = run(Command::new(&busybox).arg("--list-full"))?;

        let mut files = Vec::new();
        for f in &self.files {
            if !f.guest.starts_with('/') || f.guest == "/init" || f.guest.ends_with('/') {
                return Err(ImageError::Invalid(format!(
                    "guest path {:?}: must be absolute, a file, and not /init",
                    f.guest
                )));
            }
            let data = fs::read(&f.host).map_err(|e| io_err(&f.host, e))?;
            if elf_is_dynamic(&data) == Some(true) {
                return Err(ImageError::NotStatic(f.host.clone()));
            }
            let mode = match f.mode {
                Some(m) => m,
                None => fs::metadata(&f.host).map_err(|e| io_err(&f.host, e))?.permissions().mode(),
            } & 0o7777;
            files.push((f.guest.clone(), mode, data));
        }

        // Last, as it may go to the network: what the caller gave is checked first.
        let kernel = kernel::fetch(&self.cache, self.kernel_package.as_deref())?;

        let modules: Vec<String> = kernel.modules.iter().map(|(n, _)| n.clone()).collect();
        let init = init_script(&modules, &self.program);

        // Every input, one per line: its hash is the image's key, and the text is kept with the
        // image so that one can see what went into it.
        let mut inputs = format!("{FORMAT}\nappend {BASE_APPEND}\n");
        let _ = writeln!(
            inputs,
            "kernel {} {} {}",
            kernel.package,
            kernel.version,
            sha256_file(&kernel.vmlinuz)?
        );
        for (name, path) in &kernel.modules {
            let _ = writeln!(inputs, "module {name} {}", sha256_file(path)?);
        }
        let _ = writeln!(inputs, "busybox {}", hex(&Sha256::digest(&busybox_bytes)));
        let _ = writeln!(inputs, "init {}", hex(&Sha256::digest(init.as_bytes())));
        for (guest, mode, data) in &files {
            let _ = writeln!(inputs, "file {guest} {mode:o} {}", hex(&Sha256::digest(data)));
        }
        let key = hex(&Sha256::digest(inputs.as_bytes()))[..16].to_string();

        let dir = self.cache.join("images").join(&key);
        let image = GuestImage {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.gz"),
            append: BASE_APPEND.to_string(),
        };
        // Marked as used first, so that a builder pruning at this moment spares it.
        let _ = touch(&dir.join("inputs.txt"));
        if image.kernel.exists() && image.initrd.exists() {
            tracing::debug!("guest image {key} found in {}", self.cache.display());
            return Ok(image);
        }

        tracing::info!("building guest image {key} ({} {})", kernel.package, kernel.version);
        let tmp = unique_tmp(&self.cache, "image")?;
        let result = (|| {
            let archive =
                initramfs(&busybox_bytes, &applets, &kernel, &init, &files).map_err(|e| io_err(&tmp, e))?;
            gzip(&archive, &tmp.join("initrd.gz"))?;
            let vmlinuz = tmp.join("vmlinuz");
            if fs::hard_link(&kernel.vmlinuz, &vmlinuz).is_err() {
                fs::copy(&kernel.vmlinuz, &vmlinuz).map_err(|e| io_err(&vmlinuz, e))?;
            }
            fs::write(tmp.join("init"), &init).map_err(|e| io_err(&tmp, e))?;
            fs::write(tmp.join("inputs.txt"), &inputs).map_err(|e| io_err(&tmp, e))?;
            let parent = dir.parent().unwrap_or(&self.cache);
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
            match fs::rename(&tmp, &dir) {
                Ok(()) => Ok(()),
                // Another builder renamed the same image into place first.
                Err(_) if image.initrd.exists() => Ok(()),
                Err(e) => Err(io_err(&dir, e)),
            }
        })();
        let _ = fs::remove_dir_all(&tmp);
        result?;
        tracing::info!("guest image {key} built in {:.1} s", started.elapsed().as_secs_f64());
        prune(&self.cache.join("images"), &key);
        Ok(image)
    }
}

/// Removes the images of `images` (but `keep`) that no build has used for [`KEEP_UNUSED`]:
/// every change of an input (a rebuilt binary) makes a new image of a few MB.
fn prune(images: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(images) else { return };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_str() == Some(keep) {
            continue;
        }
        let used = fs::metadata(entry.path().join("inputs.txt")).and_then(|m| m.modified());
        let unused_for = used.ok().and_then(|t| SystemTime::now().duration_since(t).ok());
        if unused_for.is_some_and(|d| d > KEEP_UNUSED) {
            tracing::info!("removing guest image {} (unused for a week)", entry.path().display());
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Sets the modification time of `path` to now (the image's "last used").
fn touch(path: &Path) -> io::Result<()> {
    fs::File::options().append(true).open(path)?.set_modified(SystemTime::now())
}

/// The `/init` script: mounts, modules, network, then the program.
fn init_script(modules: &[String], program: &[String]) -> String {
    let argv: Vec<String> = program.iter().map(|a| shell_quote(a)).collect();
    let argv = argv.join(" ");
    format!(
        r#"#!/bin/sh
# The guest's PID 1, written by qemu-hooks.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "{INIT_MARKER}"
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "qemu-hooks: insmod $m failed"
done
ip link set dev lo up
# A virtio-net device (legacy 0x1000 or modern 0x1041)? Then wait for its eth0.
nic=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor 2>/dev/null)" = 0x1af4 ] || continue
  case "$(cat $d/device 2>/dev/null)" in 0x1000|0x1041) nic=1 ;; esac
done
if [ -n "$nic" ]; then
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 50000; i=$((i+1)); done
  if ip link set dev eth0 up; then
    # qh.ip=ADDR/LEN on the kernel command line gives eth0 an IPv4 address.
    for a in $(cat /proc/cmdline); do
      case "$a" in qh.ip=*) ip addr add "${{a#qh.ip=}}" dev eth0 ;; esac
    done
    echo "qemu-hooks: eth0 up"
  else
    echo "qemu-hooks: no eth0"
  fi
fi
echo "qemu-hooks: run {shown}"
{argv} </dev/console >/dev/console 2>&1
echo "qemu-hooks: exit $?"
poweroff -f
"#,
        modules = modules.join(" "),
        shown = program.join(" ").replace(['"', '$', '`', '\\'], "_"),
    )
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The uncompressed initramfs.
fn initramfs(
    busybox: &[u8],
    applets: &str,
    kernel: &KernelParts,
    init: &str,
    files: &[(String, u32, Vec<u8>)],
) -> io::Result<Vec<u8>> {
    enum Node<'a> {
        Dir,
        File(u32, &'a [u8]),
        Link(String),
        Console,
    }
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "lib/modules"] {
        tree.insert(d.into(), Node::Dir);
    }
    tree.insert("dev/console".into(), Node::Console);
    tree.insert("bin/busybox".into(), Node::File(0o755, busybox));
    for applet in applets.lines().map(|l| l.trim().trim_start_matches('/')).filter(|l| !l.is_empty()) {
        if applet != "bin/busybox" && !applet.contains("..") {
            tree.insert(applet.to_string(), Node::Link("/bin/busybox".into()));
        }
    }
    let mut module_data = Vec::new();
    for (name, path) in &kernel.modules {
        module_data.push((format!("lib/modules/{name}.ko"), fs::read(path)?));
    }
    for (path, data) in &module_data {
        tree.insert(path.clone(), Node::File(0o644, data));
    }
    for (guest, mode, data) in files {
        tree.insert(guest.trim_start_matches('/').to_string(), Node::File(*mode, data));
    }
    tree.insert("init".into(), Node::File(0o755, init.as_bytes()));
    // Every parent directory, so that a file anywhere has its path.
    let parents: Vec<String> = tree
        .keys()
        .flat_map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            (1..parts.len()).map(move |i| parts[..i].join("/"))
        })
        .collect();
    for p in parents {
        tree.entry(p).or_insert(Node::Dir);
    }

    // Sorted paths put every directory before what it contains.
    let mut w = CpioWriter::new(Vec::new());
    for (path, node) in &tree {
        match node {
            Node::Dir => w.dir(path, if path == "tmp" { 0o1777 } else { 0o755 })?,
            Node::File(mode, data) => w.file(path, *mode, data)?,
            Node::Link(target) => w.symlink(path, target)?,
            Node::Console => w.char_dev(path, 0o600, 5, 1)?,
        }
    }
    w.finish()
}

/// Compresses `data` with gzip into `out`.
fn gzip(data: &[u8], out: &Path) -> Result<(), ImageError> {
    let file = fs::File::create(out).map_err(|e| io_err(out, e))?;
    let mut cmd = tool("gzip");
    cmd.args(["-n", "-c"]).stdin(Stdio::piped()).stdout(file).stderr(Stdio::piped());
    let command = format!("{cmd:?}");
    let fail = |detail: String| ImageError::Command { command: command.clone(), detail };
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot start: {e}")))?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(data));
    let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        return Err(fail(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
    }
    match written {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(fail(format!("writing its input: {e}"))),
        None => Err(fail("no stdin".into())),
    }
}

/// Builds `bin` of the workspace's `package` static for [`GUEST_TARGET`], in release mode (the
/// guest runs under TCG, where unoptimized code is another order of magnitude slower), and
/// returns its path: `<target dir>/x86_64-unknown-linux-gnu/release/<bin>`.
///
/// The image most callers want: `guest-load` built static ([`build_static_bin`]) and run by
/// `/init` with `load`, built or found in the shared cache ([`default_cache_dir`]).
pub fn load_image(load: &LoadArgs) -> Result<GuestImage, ImageError> {
    let guest = build_static_bin("qemu-hooks", "guest-load")?;
    ImageBuilder::new(default_cache_dir()).guest_load(guest, load).build()
}

/// Runs `cargo build --release --locked --target x86_64-unknown-linux-gnu` with
/// `RUSTFLAGS=-C target-feature=+crt-static` in the workspace. With an explicit `--target`
/// those flags apply to the target's units only, which cargo keeps apart from the host build:
/// nothing of the normal build is rebuilt. The first run builds the package's dependencies for
/// that target (a few minutes on two cores); later runs only check freshness (about a second).
pub fn build_static_bin(package: &str, bin: &str) -> Result<PathBuf, ImageError> {
    let target_dir = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    // Debug info is left out: the binaries travel in the initramfs (15 MB with it, 1-2 MB
    // without); symbols stay for backtraces.
    rustflags.push_str(" -C target-feature=+crt-static -C strip=debuginfo");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "-p", package, "--bin", bin, "--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace_dir())
        .env("RUSTFLAGS", rustflags.trim())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    let started = Instant::now();
    tracing::info!("building {bin} static for the guest (cargo build --target {GUEST_TARGET})");
    run(&mut cmd)?;
    tracing::info!("{bin} ready in {:.1} s", started.elapsed().as_secs_f64());
    let path = target_dir.join(GUEST_TARGET).join("release").join(bin);
    let mut head = Vec::new();
    fs::File::open(&path)
        .and_then(|f| f.take(64 << 10).read_to_end(&mut head))
        .map_err(|e| io_err(&path, e))?;
    if elf_is_dynamic(&head) != Some(false) {
        return Err(ImageError::NotStatic(path));
    }
    Ok(path)
}

/// The workspace this crate belongs to (where `cargo` runs for [`build_static_bin`]).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_dir().join(d)
            }
        }
        _ => workspace_dir().join("target"),
    }
}

/// The cache the tests and scripts share: `<target dir>/qemu-guest`.
pub fn default_cache_dir() -> PathBuf {
    target_dir().join("qemu-guest")
}

/// Whether an ELF file needs a program interpreter (the dynamic loader): `Some(true)` if it has
/// a `PT_INTERP` header, `Some(false)` if it is ELF without one (static, static-pie), `None` for
/// anything else (scripts, data). Reads the headers from `bytes`, which must include them.
pub fn elf_is_dynamic(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    let le = match bytes[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u64> {
        let b: [u8; 2] = bytes.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(o..o + 8)?.try_into().ok()?;
        Some(if le { u64::from_le_bytes(b) } else { u64::from_be_bytes(b) })
    };
    let (phoff, phentsize, phnum) = match bytes[4] {
        1 => (u32_at(28)?, u16_at(42)?, u16_at(44)?),
        2 => (u64_at(32)?, u16_at(54)?, u16_at(56)?),
        _ => return None,
    };
    for i in 0..phnum {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if u32_at(at)? == PT_INTERP as u64 {
            return Some(true);
        }
    }
    Some(false)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `name` from `PATH`, else busybox's applet of that name.
pub(crate) fn tool(name: &str) -> Command {
    match find_on_path(name) {
        Some(p) => Command::new(p),
        None => {
            let mut c = Command::new("busybox");
            c.arg(name);
            c
        }
    }
}

/// Runs `cmd` and returns its stdout; an error with its stderr when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<String, ImageError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| ImageError::Command {
        command: command.clone(),
        detail: format!("cannot start: {e}"),
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = {
        let lines: Vec<&str> = stderr.trim_end().lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    Err(ImageError::Command { command, detail: format!("{}: {tail}", out.status) })
}

pub(crate) fn io_err(path: &Path, source: io::Error) -> ImageError {
    ImageError::Io { path: path.to_path_buf(), source }
}

/// A fresh directory `<cache>/tmp/<what>.<pid>.<n>`, unique among processes and threads.
pub(crate) fn unique_tmp(cache: &Path, what: &str) -> Result<PathBuf, ImageError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = cache.join("tmp").join(format!("{what}.{}.{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    Ok(dir)
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let data = fs::read(path).map_err(|e| io_err(path, e))?;
    Ok(hex(&Sha256::digest(&data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/bin/guest-load"), "/bin/guest-load");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn init_runs_the_program_after_the_modules() {
        let s = init_script(&["virtio".into(), "virtio_net".into()], &["/bin/x".into(), "a b".into()]);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("for m in virtio virtio_net; do"));
        assert!(s.contains("\n/bin/x 'a b' </dev/console"));
        assert!(s.find(INIT_MARKER) < s.find("insmod"));
    }

    #[test]
    fn elf_headers_are_read() {
        assert_eq!(elf_is_dynamic(b"#!/bin/sh\necho hello, this is not an ELF file at all....."), None);
        // The test binary itself: dynamically linked on the gnu target unless built static.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(elf_is_dynamic(&me).is_some());
        // A minimal 64-bit header with one PT_INTERP program header.
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(elf_is_dynamic(&elf), Some(true));
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(elf_is_dynamic(&elf), Some(false));
    }
}
