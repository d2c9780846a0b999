//! `xiad`: the XIA host daemon. One per host (network namespace); applications reach it over
//! a Unix socket. Prints one `xiad ready ...` line on stdout when it serves, and an `xiad
//! registered ad=... router=... dag=...` line whenever a gateway router confirms its registration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use xia_core::daemon::{run, DaemonConfig};
use xia_core::host::HostConfig;
use xia_core::link::afpacket::LinkOptions;
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
    /// Record every frame in and out to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
    #[command(flatten)]
    log: xia_core::cli::LogArgs,
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
    if let Some(dir) = args.key.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("xiad: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let cfg = DaemonConfig {
        interface: args.interface.clone(),
        socket: args.socket.clone(),
        key_file: args.key,
        host: HostConfig { static_ad: args.ad, store_bytes: args.store_mib << 20, ..HostConfig::default() },
        link: LinkOptions::default(),
        pcap: args.pcap,
    };
    let socket = args.socket.clone();
    let result = run(cfg, |hid, dag, link| {
        // One line for scripts and tests to wait on; logs go to stderr.
        println!(
            "xiad ready socket={} hid={hid} mac={} mtu={} dag={}",
            socket.display(),
            link.mac(),
            link.mtu(),
            dag.to_dag_string().replace('\n', "")
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xiad: {e}");
            ExitCode::from(1)
        }
    }
}
