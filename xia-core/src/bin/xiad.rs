//! `xiad`: the XIA host daemon. One per host (network namespace); applications reach it over
//! a Unix socket. Prints one `xiad ready ...` line on stdout when it serves; what happens to the
//! host afterwards (attached, registered, moved, link down) applications learn from the API's
//! event stream (`xia events`, `xia wait registered`).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use xia_core::daemon::{run_with, DaemonConfig, IpcLimits};
use xia_core::host::HostConfig;
use xia_core::keys::Keypair;
use xia_core::link::afpacket::LinkOptions;
use xia_core::link::capture::Capture;
use xia_core::link::host_port::HostPort;
use xia_core::xid::{Principal, Xid};

/// The XIA host daemon.
#[derive(Debug, Parser)]
#[command(name = "xiad", version)]
struct Args {
    /// Network interface to own (raw Ethernet, ethertype 0xC0DE).
    #[arg(short, long)]
    interface: String,
    /// Unix socket applications connect to.
    #[arg(short, long, default_value = xia_core::ipc::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Host key file (Ed25519; created if missing). The HID is its public key's SHA-1.
    #[arg(short, long, default_value = "/var/lib/xia/host.key")]
    key: PathBuf,
    /// AD to use when no router beacons one (hosts on a bare link).
    #[arg(long, value_name = "AD:<hex>")]
    ad: Option<Xid>,
    /// Content store size in MiB: chunks published here stay until removed (a full store refuses
    /// more); chunks cached in passing fill what is left.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    store_mib: usize,
    /// Memory in MiB that applications' unfinished messages may hold, all connections together
    /// (read-ahead, chunks being received or named). A connection that finds no room is not
    /// read until some frees. At least twice the largest chunk (16 MiB).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    ipc_buffer_mib: usize,
    /// Seconds an application's unfinished message may make no progress before its connection
    /// is closed (2 at most while other connections wait for room).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    ipc_idle_secs: u64,
    /// Record every frame in and out to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
    #[command(flatten)]
    log: xia_core::cli::LogArgs,
}

fn serve(args: Args) -> std::io::Result<()> {
    // Before any thread starts: SIGTERM and SIGINT then reach this descriptor, and the daemon
    // ends cleanly (capture flushed, socket removed).
    let stop = xia_core::sys::signal_fd()?;
    if let Some(dir) = args.key.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = Keypair::load_or_generate(&args.key)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", args.key.display())))?;
    let port = HostPort::open(&args.interface, &LinkOptions::default())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", args.interface)))?;
    let link = Capture::new(port, args.pcap.as_deref())?;
    let cfg = DaemonConfig {
        socket: args.socket,
        host: HostConfig { static_ad: args.ad, store_bytes: args.store_mib << 20, ..HostConfig::default() },
    };
    let limits = IpcLimits {
        buffer_bytes: args.ipc_buffer_mib.saturating_mul(1 << 20),
        idle: std::time::Duration::from_secs(args.ipc_idle_secs),
    };
    run_with(cfg, limits, key, link, stop.as_raw_fd(), |r| {
        // One line for scripts and tests to wait on; logs go to stderr.
        println!(
            "xiad ready socket={} hid={} mac={} mtu={} dag={}",
            r.socket.display(),
            r.hid,
            r.mac,
            r.mtu,
            r.dag.to_dag_string().replace('\n', "")
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })
}

fn main() -> ExitCode {
    // Chunk buffers (a MiB each, many a second) are reused from the heap instead of being
    // mapped, faulted in and zeroed afresh every time, and the heap is not trimmed between them.
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
    let args = Args::parse();
    args.log.init();
    if let Some(ad) = args.ad {
        if ad.principal() != Principal::Ad {
            eprintln!("xiad: --ad wants an AD XID, got {ad}");
            return ExitCode::from(2);
        }
    }
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xiad: {e}");
            ExitCode::from(1)
        }
    }
}
