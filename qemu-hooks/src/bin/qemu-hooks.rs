//! `qemu-hooks`: builds (or finds) the guest image, probes KVM, runs a guest by hand.
//! Logs go to stderr; `image` prints the paths on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use qemu_hooks::image::{build_static_bin, default_cache_dir, ExtraFile, ImageBuilder};
use qemu_hooks::load::LoadArgs;
use qemu_hooks::vm::{kvm_boots, Accel, VmConfig, QEMU};
use qemu_hooks::GuestImage;
use xia_core::cli::LogArgs;

/// What QEMU needs for the project's migration experiments.
#[derive(Debug, Parser)]
#[command(name = "qemu-hooks", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Builds the guest image (or finds it in the cache) and prints its kernel, initrd and
    /// command line.
    Image(ImageArgs),
    /// Boots a guest with KVM and says whether it reached its init (exit 0) or not (exit 1).
    ProbeKvm {
        #[command(flatten)]
        image: ImageArgs,
        /// How long the guest gets to reach its init.
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Runs a guest in the foreground, its console on this terminal (Ctrl-A x quits QEMU).
    /// For a namespace: `ip netns exec NS qemu-hooks run ...`.
    Run {
        #[command(flatten)]
        image: ImageArgs,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 128)]
        guest_mib: u32,
        /// Accelerator.
        #[arg(long, value_enum, default_value_t = AccelArg::Tcg)]
        accel: AccelArg,
        /// A virtio-net NIC on this (existing) tap device.
        #[arg(long)]
        tap: Option<String>,
        /// The NIC's MAC address.
        #[arg(long, default_value = "52:54:00:12:34:56")]
        mac: String,
        /// Extra kernel command line arguments (e.g. qh.ip=10.0.0.2/24).
        #[arg(long)]
        append: Vec<String>,
        /// Start paused waiting for a migration (-incoming defer), for use through QMP.
        #[arg(long)]
        incoming: bool,
        /// Where the QMP socket goes (`<dir>/run.qmp`).
        #[arg(long, default_value = "/tmp")]
        qmp_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccelArg {
    Tcg,
    Kvm,
}

#[derive(Debug, clap::Args)]
struct ImageArgs {
    /// The cache directory (default: the workspace's target/qemu-guest).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// A Debian kernel package instead of the one linux-image-cloud-amd64 depends on.
    #[arg(long)]
    kernel_package: Option<String>,
    /// A static guest-load binary (default: built from this workspace).
    #[arg(long, conflicts_with = "shell")]
    guest_load: Option<PathBuf>,
    /// Run an interactive shell in the guest instead of guest-load.
    #[arg(long)]
    shell: bool,
    /// guest-load: MiB filled and checksummed.
    #[arg(long, visible_alias = "mem-mib", default_value_t = LoadArgs::default().fill_mib)]
    fill_mib: u32,
    /// guest-load: ms between tick lines.
    #[arg(long, default_value_t = LoadArgs::default().tick_ms)]
    tick_ms: u32,
    /// guest-load: seconds between checksums.
    #[arg(long, default_value_t = LoadArgs::default().sum_secs)]
    sum_secs: u32,
    /// guest-load: MiB of the region the dirtier rewrites (0: no dirtier).
    #[arg(long, default_value_t = LoadArgs::default().dirty_mib)]
    dirty_mib: u32,
    /// guest-load: ms between two 1 MiB rewrites.
    #[arg(long, default_value_t = LoadArgs::default().dirty_every_ms)]
    dirty_every_ms: u32,
    /// guest-load: seed of the pattern.
    #[arg(long, default_value_t = LoadArgs::default().seed)]
    seed: u64,
    /// Extra files, HOST_PATH:GUEST_PATH (static binaries only).
    #[arg(long = "file", value_name = "HOST:GUEST")]
    files: Vec<String>,
}

impl ImageArgs {
    fn build(&self) -> Result<GuestImage, Box<dyn std::error::Error>> {
        let mut b = ImageBuilder::new(self.cache.clone().unwrap_or_else(default_cache_dir));
        if let Some(p) = &self.kernel_package {
            b = b.kernel_package(p);
        }
        for f in &self.files {
            let (host, guest) =
                f.split_once(':').ok_or_else(|| format!("--file {f}: expected HOST_PATH:GUEST_PATH"))?;
            b = b.extra_file(ExtraFile { host: host.into(), guest: guest.into(), mode: None });
        }
        if !self.shell {
            let load = LoadArgs {
                fill_mib: self.fill_mib,
                tick_ms: self.tick_ms,
                sum_secs: self.sum_secs,
                dirty_mib: self.dirty_mib,
                dirty_every_ms: self.dirty_every_ms,
                seed: self.seed,
            };
            LoadArgs::parse(load.to_args())?;
            let binary = match &self.guest_load {
                Some(p) => p.clone(),
                None => build_static_bin("qemu-hooks", "guest-load")?,
            };
            b = b.guest_load(binary, &load);
        }
        Ok(b.build()?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Image(args) => {
            let image = args.build()?;
            println!("kernel {}", image.kernel.display());
            println!("initrd {}", image.initrd.display());
            println!("append {}", image.append);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ProbeKvm { image, timeout_secs } => {
            let image = image.build()?;
            if kvm_boots(&image, Duration::from_secs(timeout_secs))? {
                println!("kvm: the guest boots");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("kvm: the guest does not boot (use TCG)");
                Ok(ExitCode::FAILURE)
            }
        }
        Cmd::Run { image, guest_mib, accel, tap, mac, append, incoming, qmp_dir } => {
            let image = image.build()?;
            let accel = match accel {
                AccelArg::Tcg => Accel::Tcg,
                AccelArg::Kvm => Accel::Kvm,
            };
            let mut config = VmConfig::new(&qmp_dir, "run").mem_mib(guest_mib).accel(accel);
            if let Some(tap) = tap {
                config = config.nic(tap, mac);
            }
            for a in append {
                config = config.append(a);
            }
            if incoming {
                config = config.incoming();
            }
            tracing::info!("QMP on {}; Ctrl-A x quits", config.qmp_path().display());
            let status =
                config.command(&image, None, "mon:stdio").status().map_err(|e| format!("{QEMU}: {e}"))?;
            Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
