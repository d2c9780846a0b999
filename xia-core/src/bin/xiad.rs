//! `xiad`: the XIA host daemon. One per host (network namespace); applications reach it over
//! a Unix socket. Prints one `xiad ready ...` line on stdout when it serves; what happens to the
//! host afterwards (attached, registered, moved, link down) applications learn from the API's
//! event stream (`xia events`, `xia wait registered`).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::Parser;
use xia_core::api::{NameClient, Xia};
use xia_core::daemon::{run_with, DaemonConfig, IpcLimits};
use xia_core::host::HostConfig;
use xia_core::ipc::Event;
use xia_core::keys::Keypair;
use xia_core::link::afpacket::LinkOptions;
use xia_core::link::capture::Capture;
use xia_core::link::host_port::HostPort;
use xia_core::wire::names::Name;
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
    /// A name for this host: registered with the AD's name server (from the beacons), signed by
    /// the host's key, once the host is registered, again whenever its DAG changes, and before
    /// half its TTL runs out.
    #[arg(long)]
    name: Option<Name>,
    /// The TTL of the name's record, in seconds.
    #[arg(long, default_value_t = 600)]
    name_ttl_secs: u64,
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
    let naming = args.name.map(|n| (n, Duration::from_secs(args.name_ttl_secs.max(2)), cfg.socket.clone()));
    run_with(cfg, limits, key, link, stop.as_raw_fd(), move |r| {
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
        if let Some((name, ttl, socket)) = naming {
            let spawned = std::thread::Builder::new()
                .name("xiad-name".into())
                .spawn(move || keep_name(socket, name, ttl));
            if let Err(e) = spawned {
                tracing::error!("--name: {e}");
            }
        }
    })
}

/// Keeps `name` leading to this host: an application of the daemon's own API, on a thread of
/// its own. Registers once the host is registered, again on every new DAG and before half the
/// TTL runs out; a failure is retried a second later.
fn keep_name(socket: PathBuf, name: Name, ttl: Duration) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        tracing::error!("--name: no runtime");
        return;
    };
    rt.block_on(async move {
        let xia = Xia::at(&socket);
        loop {
            let mut events = match xia.events().await {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!("--name: events: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut due = true;
            loop {
                if due {
                    due = !register(&xia, &name, ttl).await;
                }
                let wait = if due { Duration::from_secs(1) } else { ttl / 2 };
                match tokio::time::timeout(wait, events.next()).await {
                    Ok(Ok(Event::Registered { .. } | Event::DagChanged { .. })) | Err(_) => due = true,
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => break,
                }
            }
        }
    });
}

/// Registers `name` to the host's DAG if the host is registered and its AD has a name server;
/// true when done (or nothing to do yet).
async fn register(xia: &Xia, name: &Name, ttl: Duration) -> bool {
    let info = match xia.info().await {
        Ok(i) => i,
        Err(_) => return false,
    };
    let (true, Some(server)) = (info.registered, info.name_server) else { return true };
    let put = async {
        let mut names = NameClient::new(xia, server).await?;
        names.put_as_host(xia, name.clone(), Some(info.dag.clone()), ttl).await
    };
    match put.await {
        Ok(()) => {
            tracing::info!("{name} -> {}", info.dag.to_string().replace('\n', " "));
            true
        }
        Err(e) => {
            tracing::warn!("--name {name}: {e}");
            false
        }
    }
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
