//! A guest live-migrated from host A to host B in the paper's Fig. 1b (two ADs, two routers, in
//! network namespaces), three ways in one run on the same topology: xmigrate over XIA through
//! both routers, QEMU's `tcp:` over IPv4 through the same two router namespaces (Linux
//! forwarding), and QEMU's `exec:cat` through a FIFO (a local pipe: the ceiling for any exec
//! transport). Each run boots fresh guests; modes take turns; medians of every figure.
//!
//! `--demo`: one migration of each, with xmigrate's progress and the guest's console on both
//! sides around the switch, then the table (the README's first command runs this).
//!
//! Needs root and QEMU.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qemu_hooks::image::load_image;
use qemu_hooks::load::{check_continuation, ticks, LoadArgs, LoadLine};
use qemu_hooks::qmp::RunState;
use qemu_hooks::vm::{Vm, VmConfig};
use qemu_hooks::GuestImage;
use xia_migrate::migrate::{drive, drive_uris, MigrateOptions, Report};
use xia_tests::{bin, Fig1};

#[derive(Debug, Parser)]
#[command(name = "migration-bench")]
struct Args {
    /// Runs of each mode.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Guest memory (MiB).
    #[arg(long, default_value_t = 512)]
    mem_mib: u32,
    /// Guest memory filled and checksummed (MiB).
    #[arg(long, default_value_t = 128)]
    fill_mib: u32,
    /// Guest memory filled and rewritten, 1 MiB every --dirty-every-ms (MiB).
    #[arg(long, default_value_t = 256)]
    dirty_mib: u32,
    /// Period of the rewrites (ms); 0: an idle guest.
    #[arg(long, default_value_t = 10)]
    dirty_every_ms: u32,
    /// MTU of every link.
    #[arg(long, default_value_t = 9000)]
    mtu: u32,
    /// QEMU's downtime limit (ms) in every mode (default: QEMU's, 300).
    #[arg(long)]
    downtime_limit_ms: Option<u64>,
    /// Modes, in order: xmigrate, tcp, exec.
    #[arg(long, value_delimiter = ',', default_value = "xmigrate,tcp,exec")]
    modes: Vec<String>,
    /// The routers forward with their XDP fast path (`xia-router --xdp`; GRO on at the hosts'
    /// links, which a veth needs to take redirected frames: for every mode alike).
    #[arg(long)]
    xdp: bool,
    /// One run of each, with progress and the guest's console shown.
    #[arg(long)]
    demo: bool,
}

/// A + R1 + R2 + B on IPv4 too, for QEMU's `tcp:`: the same links, Linux forwarding in the
/// routers' namespaces.
fn ipv4(f: &Fig1) -> std::io::Result<()> {
    let r2 = f.ns_r2.as_ref().expect("Fig. 1b");
    let run = |ns: &xia_tests::Netns, cmds: &[&[&str]]| -> std::io::Result<()> {
        for c in cmds {
            ns.run(c)?;
        }
        Ok(())
    };
    run(
        &f.ns_a,
        &[
            &["ip", "addr", "add", "10.1.0.2/24", "dev", "eth0"],
            &["ip", "route", "add", "default", "via", "10.1.0.1"],
        ],
    )?;
    run(
        &f.ns_r1,
        &[
            &["ip", "addr", "add", "10.1.0.1/24", "dev", "r1a"],
            &["ip", "addr", "add", "10.12.0.1/24", "dev", "r1r2"],
            &["ip", "route", "add", "10.2.0.0/24", "via", "10.12.0.2"],
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ],
    )?;
    run(
        r2,
        &[
            &["ip", "addr", "add", "10.2.0.1/24", "dev", "r2b"],
            &["ip", "addr", "add", "10.12.0.2/24", "dev", "r2r1"],
            &["ip", "route", "add", "10.1.0.0/24", "via", "10.12.0.1"],
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ],
    )?;
    run(
        &f.ns_b,
        &[
            &["ip", "addr", "add", "10.2.0.2/24", "dev", "eth0"],
            &["ip", "route", "add", "default", "via", "10.2.0.1"],
        ],
    )
}

fn image(args: &Args) -> GuestImage {
    let load = LoadArgs {
        fill_mib: args.fill_mib,
        dirty_mib: args.dirty_mib,
        dirty_every_ms: args.dirty_every_ms,
        tick_ms: 50,
        sum_secs: 1,
        ..LoadArgs::default()
    };
    load_image(&load).expect("guest image")
}

/// One migration in `mode`; the report, after checking the guest goes on intact.
fn run_one(
    args: &Args,
    image: &GuestImage,
    f: &Fig1,
    dir: &Path,
    mode: &str,
    n: usize,
) -> Result<Report, String> {
    let name = |side: &str| format!("{mode}{n}{side}");
    let cfg = |side: &str| VmConfig::new(dir, name(side)).mem_mib(args.mem_mib);
    let mut src = Vm::start(image, &cfg("s").env("XIAD_SOCKET", &f.a.socket), Some(&f.ns_a))
        .map_err(|e| e.to_string())?;
    let mut dst = Vm::start(image, &cfg("d").env("XIAD_SOCKET", &f.b.socket).incoming(), Some(&f.ns_b))
        .map_err(|e| e.to_string())?;
    let patience = Duration::from_secs(120);
    src.wait_for_serial(|l| l.starts_with("sum "), patience).map_err(|e| format!("source boot: {e}"))?;
    src.wait_for_serial(|l| l == "tick 20", patience).map_err(|e| format!("source ticks: {e}"))?;
    let opts = MigrateOptions {
        downtime_limit: args.downtime_limit_ms.map(Duration::from_millis),
        give_up_after: Some(Duration::from_secs(120)),
        quiet: !(args.demo && mode == "xmigrate"),
        ..MigrateOptions::new(
            src.qmp_path().to_path_buf(),
            Some(dst.qmp_path().to_path_buf()),
            f.b.dag.split(' ').map(String::from).collect(),
            bin("xmigrate"),
        )
    };
    if args.demo {
        eprintln!("\n== {mode}: guest on A ({} MiB), console:", args.mem_mib);
        for l in src.serial_lines().map_err(|e| e.to_string())?.iter().rev().take(3).rev() {
            eprintln!("   A| {l}");
        }
    }
    let fifo = dir.join(format!("{}.fifo", name("")));
    let report = match mode {
        "xmigrate" => drive(&opts),
        "tcp" => drive_uris(&opts, Some("tcp:10.2.0.2:4444"), "tcp:10.2.0.2:4444"),
        "exec" => {
            let st = std::process::Command::new("mkfifo").arg(&fifo).status().map_err(|e| e.to_string())?;
            if !st.success() {
                return Err("mkfifo failed".into());
            }
            let incoming = format!("exec:exec cat {}", fifo.display());
            let outgoing = format!("exec:exec cat > {}", fifo.display());
            drive_uris(&opts, Some(&incoming), &outgoing)
        }
        m => return Err(format!("unknown mode {m}")),
    }
    .map_err(|e| format!("{mode}: {e}\nsource: {}\ndestination: {}", src.stderr_tail(), dst.stderr_tail()))?;
    // The guest goes on: its tick count continues on B, its memory checksum holds.
    let src_text = src.serial_text().map_err(|e| e.to_string())?;
    let last = *ticks(&src_text).last().ok_or("no tick on A")?;
    dst.wait_for_serial(|l| matches!(LoadLine::parse(l), Some(LoadLine::Tick(t)) if t >= last + 5), patience)
        .map_err(|e| format!("the guest did not go on at B: {e}"))?;
    let text = dst.serial_text().map_err(|e| e.to_string())?;
    check_continuation(&src_text, &text).map_err(|e| format!("at B: {e}"))?;
    let mut dq = dst.qmp(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    if dq.query_status().map_err(|e| e.to_string())?.status != RunState::Running {
        return Err("the guest does not run at B".into());
    }
    if args.demo {
        eprintln!("== guest on B, console:");
        for l in text.lines().filter(|l| l.starts_with("tick ") || l.starts_with("sum ")).take(5) {
            eprintln!("   B| {l}");
        }
        eprintln!("   (A's last tick was {last})");
    }
    let _ = std::fs::remove_file(&fifo);
    Ok(report)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.demo {
        args.runs = 1;
    }
    xia_core::cli::init_logging(0, 1);
    if !xia_tests::require_root() {
        eprintln!("migration-bench: needs root");
        return ExitCode::from(2);
    }
    let image = image(&args);
    let router_args: &[&str] = if args.xdp { &["--xdp"] } else { &[] };
    let f = match Fig1::with_router_args(true, args.mtu, false, false, router_args, router_args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("migration-bench: Fig. 1b: {e}");
            return ExitCode::from(1);
        }
    };
    if args.xdp {
        for ns in [&f.ns_a, &f.ns_b] {
            if let Err(e) = ns.run(&["ethtool", "-K", "eth0", "gro", "on"]) {
                eprintln!("migration-bench: GRO for the fast path: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Err(e) = ipv4(&f) {
        eprintln!("migration-bench: IPv4 for tcp: {e}");
        return ExitCode::from(1);
    }
    eprintln!(
        "Fig. 1b up (MTU {}): A {} in AD1, B {} in AD2; guest {} MiB, {} MiB filled, 1 MiB of {} MiB rewritten every {} ms",
        args.mtu, f.a.dag, f.b.dag, args.mem_mib, args.fill_mib, args.dirty_mib, args.dirty_every_ms
    );
    let dir = f.dir.path().to_path_buf();
    let mut results: Vec<(String, Report)> = Vec::new();
    for n in 0..args.runs {
        for mode in &args.modes {
            match run_one(&args, &image, &f, &dir, mode, n) {
                Ok(r) => {
                    println!(
                        "run {} {mode}: total {:.0} ms, QEMU downtime {:.0} ms, true downtime {:.1} ms, {:.1} MiB sent",
                        n + 1,
                        r.total.as_secs_f64() * 1e3,
                        r.qemu_downtime.as_secs_f64() * 1e3,
                        r.true_downtime.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
                        r.ram_transferred as f64 / (1 << 20) as f64
                    );
                    results.push((mode.clone(), r));
                }
                Err(e) => {
                    eprintln!("migration-bench: run {} {mode}: {e}", n + 1);
                    return ExitCode::from(1);
                }
            }
        }
    }
    // What the routers did with it all (XIA's share: the daemon's or the fast path's).
    for (name, r, ns) in
        [("R1", &f.r1, &f.ns_r1), ("R2", f.r2.as_ref().expect("Fig. 1b"), f.ns_r2.as_ref().expect("Fig. 1b"))]
    {
        if let Ok(s) = r.stats(ns) {
            let g = |k: &str| s.get(k).copied().unwrap_or(0);
            eprintln!(
                "{name}: {} frames forwarded by the daemon, {} by the XDP fast path, {} no-store CHUNK pieces seen",
                g("forwarded"),
                g("xdp_forwarded"),
                g("cache_pieces_no_store")
            );
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let stat = |mode: &str, f: &dyn Fn(&Report) -> f64| {
        median(results.iter().filter(|(m, _)| m == mode).map(|(_, r)| f(r)).collect())
    };
    println!();
    println!(
        "Medians of {} run(s), guest {} MiB ({} MiB filled, 1 MiB of {} MiB rewritten every {} ms), MTU {}, downtime limit {}, routers {}, {} CPUs",
        args.runs,
        args.mem_mib,
        args.fill_mib,
        args.dirty_mib,
        args.dirty_every_ms,
        args.mtu,
        args.downtime_limit_ms.map_or("QEMU's (300 ms)".to_string(), |d| format!("{d} ms")),
        if args.xdp { "--xdp" } else { "daemon only" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| mode | total (ms) | QEMU downtime (ms) | true downtime (ms) | RAM sent (MiB) |");
    println!("|---|---|---|---|---|");
    for mode in &args.modes {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} |",
            match mode.as_str() {
                "xmigrate" => "xmigrate over XIA (both routers)",
                "tcp" => "QEMU tcp: over IPv4 (both routers)",
                "exec" => "QEMU exec:cat through a FIFO (local)",
                m => m,
            },
            stat(mode, &|r| ms(r.total)),
            stat(mode, &|r| ms(r.qemu_downtime)),
            stat(mode, &|r| r.true_downtime.map_or(f64::NAN, ms)),
            stat(mode, &|r| r.ram_transferred as f64 / (1 << 20) as f64),
        );
    }
    let has = |m: &str| args.modes.iter().any(|x| x == m);
    if has("xmigrate") && has("exec") {
        println!(
            "\nxmigrate total / exec:cat total: {:.2}x (target <= 1.25x)",
            stat("xmigrate", &|r| ms(r.total)) / stat("exec", &|r| ms(r.total))
        );
    }
    if has("xmigrate") && has("tcp") {
        println!(
            "xmigrate true downtime - tcp true downtime: {:+.1} ms (target <= +20 ms)",
            stat("xmigrate", &|r| r.true_downtime.map_or(f64::NAN, ms))
                - stat("tcp", &|r| r.true_downtime.map_or(f64::NAN, ms))
        );
    }
    ExitCode::SUCCESS
}
