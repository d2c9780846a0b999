//! `xmigrate`: QEMU live migration over XIA.
//!
//! ```text
//! qemu ... -incoming defer;  QMP migrate-incoming "exec:exec xmigrate recv"      (destination)
//! QMP migrate "exec:exec xmigrate send RE AD:<hex> HID:<hex>"                       (source)
//! ```
//! stdout of `xmigrate recv` is the migration stream; everything else goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xia_core::api::Xia;
use xia_core::xid::{Principal, Xid, SID_MIGRATE};
use xia_core::Dag;
use xia_migrate::recv::{recv, RecvOptions};
use xia_migrate::send::{send, SendOptions};

/// QEMU live migration over XIA.
#[derive(Debug, Parser)]
#[command(name = "xmigrate", version)]
struct Args {
    /// The local xiad's socket (default: $XIAD_SOCKET or /run/xia/xiad.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(flatten)]
    log: xia_core::cli::LogArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Source side: QEMU's stream from stdin to the receiver at DEST.
    Send {
        /// Seconds without progress before giving up.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Largest chunk, KiB.
        #[arg(long, default_value_t = 1024)]
        chunk_kib: usize,
        /// Bytes offered and not yet acknowledged at most, MiB (back-pressure to QEMU).
        #[arg(long, default_value_t = 4)]
        window_mib: usize,
        /// A pause of QEMU's stream this long (microseconds) sends what came so far.
        #[arg(long, default_value_t = 500)]
        idle_us: u64,
        /// The destination: its host's DAG (`RE AD:<hex> HID:<hex>`; the migration SID is
        /// added) or a full DAG ending in the receiver's SID.
        #[arg(required = true, num_args = 1..)]
        dest: Vec<String>,
    },
    /// Destination side: one migration from a sender to stdout.
    Recv {
        /// The SID to listen on (default: the well-known migration SID).
        #[arg(long)]
        sid: Option<Xid>,
        /// Seconds to wait for the sender.
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
        /// Seconds without progress before giving up.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Chunks requested at once.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Accept a stream that does not start as QEMU's (tests, other payloads).
        #[arg(long)]
        any_stream: bool,
    },
    /// Drives a whole migration over QMP (like `virsh migrate --live --verbose`): starts the
    /// destination's `xmigrate recv` (with --dest-qmp) and the source's `xmigrate send`, shows
    /// the progress on stderr, reports total time, QEMU's downtime and the true downtime.
    Migrate {
        /// The source QEMU's QMP socket.
        #[arg(long)]
        qmp: PathBuf,
        /// The destination QEMU's QMP socket (QEMU started with `-incoming defer`).
        #[arg(long)]
        dest_qmp: Option<PathBuf>,
        /// xiad's socket for the source's `xmigrate send` (default: QEMU's environment).
        #[arg(long)]
        send_socket: Option<PathBuf>,
        /// xiad's socket for the destination's `xmigrate recv` (default: QEMU's environment).
        #[arg(long)]
        recv_socket: Option<PathBuf>,
        /// Seconds without progress before either side gives up.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// QEMU's bandwidth cap in bytes/s (0: none).
        #[arg(long, default_value_t = 0)]
        max_bandwidth: u64,
        /// QEMU's downtime limit in ms (QEMU's default: 300).
        #[arg(long)]
        downtime_limit_ms: Option<u64>,
        /// Cancel the migration if not completed after this many seconds (the source VM goes on).
        #[arg(long)]
        max_time: Option<f64>,
        /// The report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The destination host's DAG (`RE AD:<hex> HID:<hex>`).
        #[arg(long = "to", required = true, num_args = 1.., value_name = "DAG")]
        to: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.log.init();
    if let Cmd::Migrate { .. } = &args.cmd {
        return migrate(args);
    }
    let xia = args.socket.clone().map_or_else(Xia::default, Xia::at);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xmigrate: {e}");
            return ExitCode::from(1);
        }
    };
    let (side, result) = match args.cmd {
        Cmd::Send { timeout, chunk_kib, window_mib, idle_us, dest } => {
            let dest = match parse_dest(&dest) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("xmigrate send: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = SendOptions {
                dest,
                timeout: Duration::from_secs_f64(timeout),
                chunk: (chunk_kib << 10).clamp(4096, xia_core::ipc::codec::MAX_PAYLOAD),
                idle: Duration::from_micros(idle_us),
                window: window_mib.max(1) << 20,
            };
            ("send", rt.block_on(send(xia, opts)))
        }
        Cmd::Migrate { .. } => unreachable!("handled before"),
        Cmd::Recv { sid, wait, timeout, window, any_stream } => {
            if sid.is_some_and(|s| s.principal() != Principal::Sid) {
                eprintln!("xmigrate recv: --sid wants a SID");
                return ExitCode::from(2);
            }
            let opts = RecvOptions {
                sid: sid.unwrap_or(SID_MIGRATE),
                wait: Duration::from_secs_f64(wait),
                timeout: Duration::from_secs_f64(timeout),
                window: window.max(1),
                check_magic: !any_stream,
                ..RecvOptions::default()
            };
            ("recv", rt.block_on(recv(xia, opts)))
        }
    };
    match result {
        Ok(s) => {
            tracing::info!(
                "{side}: {} bytes in {} chunks, {:.3} s, {:.3} Gbit/s",
                s.bytes,
                s.chunks,
                s.elapsed.as_secs_f64(),
                s.bytes as f64 * 8.0 / s.elapsed.as_secs_f64().max(1e-9) / 1e9
            );
            // At once: QEMU waits for this process (holding its lock) before it goes on.
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("xmigrate {side}: {e}");
            std::process::exit(1);
        }
    }
}

/// The receiver's DAG: a host's DAG gets the migration SID appended.
fn parse_dest(words: &[String]) -> Result<Dag, String> {
    let text = words.join(" ");
    let dag: Dag = text.parse().map_err(|e| format!("{text}: {e}"))?;
    if dag.intent().principal() == Principal::Sid {
        return Ok(dag);
    }
    let path: Vec<Xid> = match dag.to_re_string() {
        Some(_) => dag.nodes().iter().map(|n| n.xid).collect(),
        None => return Err(format!("{text}: give a path (RE AD HID) or a DAG ending in a SID")),
    };
    Dag::linear(&[path, vec![SID_MIGRATE]].concat()).map_err(|e| format!("{text}: {e}"))
}

fn migrate(args: Args) -> ExitCode {
    let Cmd::Migrate {
        qmp,
        dest_qmp,
        send_socket,
        recv_socket,
        timeout,
        max_bandwidth,
        downtime_limit_ms,
        max_time,
        json,
        to,
    } = args.cmd
    else {
        unreachable!("called for migrate")
    };
    if let Err(e) = parse_dest(&to) {
        eprintln!("xmigrate migrate: {e}");
        return ExitCode::from(2);
    }
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xmigrate"));
    let opts = xia_migrate::migrate::MigrateOptions {
        send_socket,
        recv_socket,
        timeout: Duration::from_secs_f64(timeout),
        max_bandwidth,
        downtime_limit: downtime_limit_ms.map(Duration::from_millis),
        give_up_after: max_time.map(Duration::from_secs_f64),
        ..xia_migrate::migrate::MigrateOptions::new(qmp, dest_qmp, to, program)
    };
    match xia_migrate::migrate::drive(&opts) {
        Ok(r) => {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            eprintln!(
                "Migration: total {:.0} ms, QEMU downtime {:.0} ms, true downtime {}, {:.1} MiB of RAM sent ({:.0} MiB guest), {} rounds",
                ms(r.total),
                ms(r.qemu_downtime),
                r.true_downtime.map_or("unknown (no --dest-qmp)".to_string(), |d| format!("{:.1} ms", ms(d))),
                r.ram_transferred as f64 / (1 << 20) as f64,
                r.ram_total as f64 / (1 << 20) as f64,
                r.dirty_syncs
            );
            if json {
                println!("{}", r.to_json());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xmigrate migrate: {e}");
            ExitCode::from(1)
        }
    }
}
