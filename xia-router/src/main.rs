//! `xia-router`: the XIA router daemon (`xia-router run`) and its admin commands
//! (`xia-router route show|add|del`, `xia-router stats`, `xia-router info`), which talk to the
//! running daemon over its admin socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xia_core::dag::Dag;
use xia_core::link::afpacket::LinkOptions;
use xia_router::daemon::{admin_request, run, DaemonConfig};
use xia_router::router::{RouterConfig, TrustAnchors};

const DEFAULT_ADMIN: &str = "/run/xia/router.sock";

/// The XIA router.
#[derive(Debug, Parser)]
#[command(name = "xia-router", version)]
struct Args {
    /// The daemon's admin socket.
    #[arg(long, global = true, default_value = DEFAULT_ADMIN)]
    admin: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once: the size of `run`'s arguments costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the router on the given interfaces (prints `xia-router ready ...` when it forwards).
    Run {
        /// An interface to route on (repeat for each port, in port order).
        #[arg(short, long = "port", required = true)]
        ports: Vec<String>,
        /// The AD's key file (created if missing): the AD is its public key's SHA-1. Every
        /// router of an AD holds it.
        #[arg(long, default_value = "/var/lib/xia/ad.key")]
        ad_key: PathBuf,
        /// This router's key file (created if missing): its HID.
        #[arg(short, long, default_value = "/var/lib/xia/router.key")]
        key: PathBuf,
        /// Static routes: a `route add` argument list per line (`#` comments).
        #[arg(long)]
        routes: Option<PathBuf>,
        /// MiB of chunks cached from the CHUNK responses passing through; 0 turns the cache off.
        #[arg(long, default_value_t = 256)]
        cache_mib: usize,
        /// Time between beacons, in milliseconds.
        #[arg(long, default_value_t = 100)]
        beacon_ms: u64,
        /// The AD's name server, announced in beacons (a DAG, `RE ...` or `DAG ...`).
        #[arg(long)]
        name_server: Option<String>,
        /// Record every frame in and out of every port to this pcap file.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Forward packets whose DAG the router has already forwarded in the kernel (XDP, in
        /// driver mode on every port), the daemon handling the rest. Outgoing drivers must take
        /// XDP frames (for a veth: GRO on, or an XDP program, on its peer).
        #[arg(long)]
        xdp: bool,
        /// A port for hosts only (repeat): registrations and route patches are taken there,
        /// beacons and distance vectors refused. Ports named neither here nor in --peering take
        /// both.
        #[arg(long = "access", value_name = "PORT")]
        access: Vec<String>,
        /// A port for routers of other ADs only (repeat): beacons and distance vectors are taken
        /// there, host registrations refused.
        #[arg(long = "peering", value_name = "PORT")]
        peering: Vec<String>,
        /// Trust anchors: the ADs whose beacons and distance vectors are heard, each with the ADs
        /// it may announce (a line `AD:<hex> [AD:<hex>... | *]`, `#` comments). Without it, any
        /// AD that proves its key.
        #[arg(long, value_name = "FILE")]
        trust_anchors: Option<PathBuf>,
        /// How far behind this router's clock a sender's may be, in ms: control messages
        /// stamped longer than that before the router started are refused (it remembers no
        /// sequence numbers from before).
        #[arg(long, default_value_t = 1000)]
        max_clock_skew_ms: u64,
        #[command(flatten)]
        log: xia_core::cli::LogArgs,
    },
    /// Routes: `route show`, `route add <dest> via <port> <mac> | local | fallback | follow
    /// <AD>`, `route del <dest>`; <dest> is an XID or `default <PRINCIPAL>`.
    Route {
        /// show, add or del, and their arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Resizes the chunk cache, emptying it (0 turns it off).
    Cache {
        /// Size in MiB.
        mib: usize,
    },
    /// The router's counters.
    Stats,
    /// The router's AD, HID, DAG and ports.
    Info,
}

fn main() -> ExitCode {
    // Chunk buffers of the cache (a MiB each) are reused from the heap instead of being mapped
    // and faulted in afresh every time.
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
    let args = Args::parse();
    let line = match args.cmd {
        Cmd::Run {
            ports,
            ad_key,
            key,
            routes,
            cache_mib,
            beacon_ms,
            name_server,
            pcap,
            xdp,
            access,
            peering,
            trust_anchors,
            max_clock_skew_ms,
            log,
        } => {
            log.init();
            for p in access.iter().chain(&peering) {
                if !ports.contains(p) {
                    eprintln!("xia-router: --access/--peering {p}: not one of the ports (-p)");
                    return ExitCode::from(2);
                }
            }
            if let Some(p) = access.iter().find(|p| peering.contains(p)) {
                eprintln!("xia-router: {p} is given as both an access and a peering port");
                return ExitCode::from(2);
            }
            let trust_anchors = match trust_anchors {
                None => None,
                Some(path) => match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| TrustAnchors::parse(&t).map_err(|e| e.to_string()))
                {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("xia-router: {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
            };
            let name_server = match name_server.map(|s| s.parse::<Dag>()) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    eprintln!("xia-router: --name-server: {e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = DaemonConfig {
                ports,
                ad_key,
                key,
                admin: args.admin.clone(),
                routes,
                router: RouterConfig {
                    beacon_interval: Duration::from_millis(beacon_ms.max(1)),
                    name_server,
                    cache_bytes: cache_mib << 20,
                    access_ports: access,
                    peering_ports: peering,
                    trust_anchors,
                    max_clock_skew: Duration::from_millis(max_clock_skew_ms),
                    ..RouterConfig::default()
                },
                // Frames are read in place from a receive ring; the qdisc is skipped (a router's
                // ports shape nothing).
                link: LinkOptions { rx_ring: Some(4096), qdisc_bypass: true, ..LinkOptions::default() },
                pcap,
                xdp,
            };
            let admin = args.admin;
            let r = run(cfg, |r| {
                let ports: Vec<String> = r.ports().iter().map(|p| format!("{}/{}", p.name, p.mac)).collect();
                println!(
                    "xia-router ready admin={} ad={} hid={} ports={} dag={}",
                    admin.display(),
                    r.ad(),
                    r.hid(),
                    ports.join(","),
                    r.dag().to_dag_string().replace('\n', "")
                );
            });
            return match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xia-router: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Route { args } => format!("route {}", args.join(" ")),
        Cmd::Stats => "stats".to_string(),
        Cmd::Cache { mib } => format!("cache {mib}"),
        Cmd::Info => "info".to_string(),
    };
    // Refuse bad commands here, with the parser's words, before bothering the daemon.
    if let Err(e) = xia_router::admin::parse(&line) {
        eprintln!("xia-router: {e}");
        return ExitCode::from(2);
    }
    match admin_request(&args.admin, &line) {
        Ok(Ok(out)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("xia-router: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xia-router: {e}");
            ExitCode::FAILURE
        }
    }
}
