//! A real QEMU guest (TCG, 128 MiB, busy) migrated from host A to host B over XIA by xmigrate,
//! in the paper's testbeds: Fig. 1a (one AD, one router) and Fig. 1b (two ADs, across both
//! routers), and through loss, reordering and duplication. The guest's console keeps counting
//! where it left off and its memory checksum holds. Failures (the receiver killed, the path cut
//! longer than the timeout) leave the source VM running, both sides exit in time, and the next
//! attempt succeeds.
//!
//! Needs root and QEMU; under CI=true nothing skips. One guest pair at a time.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use qemu_hooks::image::load_image;
use qemu_hooks::load::{check_continuation, ticks, LoadArgs, LoadLine};
use qemu_hooks::qmp::{MigrationStatus, RunState};
use qemu_hooks::vm::{Vm, VmConfig};
use qemu_hooks::GuestImage;
use xia_migrate::migrate::{drive, DriveError, MigrateOptions, Report};
use xia_tests::{bin, nft_loss_egress, require_root, Fig1, Netns, TwoHosts, Xiad};

const PATIENCE: Duration = Duration::from_secs(60);

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A busy guest: a checksummed 32 MiB region, 1 MiB of another 16 MiB rewritten every 10 ms.
/// Built (or found in the cache) once for all the tests.
fn image() -> &'static GuestImage {
    static IMAGE: OnceLock<GuestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let load =
            LoadArgs { fill_mib: 32, tick_ms: 50, sum_secs: 1, dirty_mib: 16, dirty_every_ms: 10, seed: 7 };
        load_image(&load).expect("guest image")
    })
}

/// A guest on host `host`'s hypervisor, in `ns`; `incoming` waits for a migration.
fn vm(image: &GuestImage, dir: &Path, name: &str, ns: &Netns, host: &Xiad, incoming: bool) -> Vm {
    let mut cfg = VmConfig::new(dir, name).mem_mib(128).env("XIAD_SOCKET", &host.socket);
    if incoming {
        cfg = cfg.incoming();
    }
    Vm::start(image, &cfg, Some(ns)).expect("QEMU starts")
}

fn options(src: &Vm, dst: &Vm, to: &Xiad, timeout: Duration) -> MigrateOptions {
    MigrateOptions {
        timeout,
        give_up_after: Some(Duration::from_secs(60)),
        ..MigrateOptions::new(
            src.qmp_path().to_path_buf(),
            Some(dst.qmp_path().to_path_buf()),
            to.dag.split(' ').map(String::from).collect(),
            bin("xmigrate"),
        )
    }
}

/// Migrates a booted guest from `(ns_a, a)` to `(ns_b, b)` and checks that it goes on as it was.
fn migrate_and_check(
    image: &GuestImage,
    dir: &Path,
    ns_a: &Netns,
    a: &Xiad,
    ns_b: &Netns,
    b: &Xiad,
) -> Report {
    let mut src = vm(image, dir, "src", ns_a, a, false);
    let mut dst = vm(image, dir, "dst", ns_b, b, true);
    src.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("the source booted");
    src.wait_for_serial(|l| l == "tick 20", PATIENCE).expect("the source ticks");
    let report = drive(&options(&src, &dst, b, Duration::from_secs(10))).unwrap_or_else(|e| {
        panic!("migration: {e}\nsource: {}\ndestination: {}", src.stderr_tail(), dst.stderr_tail())
    });
    let mut sq = src.qmp(Duration::from_secs(10)).expect("source QMP");
    let mut dq = dst.qmp(Duration::from_secs(10)).expect("destination QMP");
    assert_eq!(dq.query_status().expect("status").status, RunState::Running);
    let src_text = src.serial_text().expect("source serial");
    let last = *ticks(&src_text).last().expect("source ticks");
    dst.wait_for_serial(
        |l| matches!(LoadLine::parse(l), Some(LoadLine::Tick(n)) if n >= last + 10),
        PATIENCE,
    )
    .expect("the destination keeps ticking");
    dst.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("the destination checks its memory");
    let dst_text = dst.serial_text().expect("destination serial");
    let c = check_continuation(&src_text, &dst_text).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.destination_sums > 0, "the destination checked its memory");
    assert_eq!(sq.query_status().expect("status").status, RunState::Postmigrate);
    eprintln!(
        "xmigrate: total {:?}, QEMU downtime {:?}, true downtime {:?}, {:.1} MiB sent; ticks {last} -> {}",
        report.total,
        report.qemu_downtime,
        report.true_downtime,
        report.ram_transferred as f64 / (1 << 20) as f64,
        c.first_destination_tick
    );
    assert!(report.true_downtime.is_some());
    report
}

#[test]
fn a_guest_moves_within_one_ad_fig_1a() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let image = image();
    let f = Fig1::new(false, 1500, false, false).expect("Fig. 1a");
    migrate_and_check(image, f.dir.path(), &f.ns_a, &f.a, &f.ns_b, &f.b);
    let s = f.a.stats(&f.ns_a).expect("A's counters");
    assert_eq!(s["store_published_bytes"], 0, "nothing left published: {s:?}");
}

/// Across both routers, as an operator would run them for bulk traffic: jumbo frames, the XDP
/// fast path. xmigrate publishes the VM's memory no-store: the routers forward it in the kernel
/// and neither keeps a byte of it.
#[test]
fn a_guest_moves_across_two_ads_fig_1b() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let image = image();
    let f = Fig1::with_router_args(true, 9000, false, false, &["--xdp"], &["--xdp"]).expect("Fig. 1b");
    for ns in [&f.ns_a, &f.ns_b] {
        ns.run(&["ethtool", "-K", "eth0", "gro", "on"]).expect("GRO on, for the fast path");
    }
    migrate_and_check(image, f.dir.path(), &f.ns_a, &f.a, &f.ns_b, &f.b);
    let r2 = f.r2.as_ref().expect("Fig. 1b");
    for s in [f.r1.stats(&f.ns_r1).unwrap(), r2.stats(f.ns_r2.as_ref().unwrap()).unwrap()] {
        eprintln!(
            "router: {} frames by the daemon, {} in the kernel, {} no-store pieces seen",
            s["forwarded"], s["xdp_forwarded"], s["cache_pieces_no_store"]
        );
        assert_eq!(s["cache_chunks_stored"] + s["cache_pieces_seen"], 0, "the VM's memory was cached: {s:?}");
        // The stream of a 128 MiB guest (~130 MiB: zero pages take a few bytes) in 9 kB frames:
        // ~15,000 frames, nearly all in the kernel (requests and control go by the daemon).
        assert!(s["xdp_forwarded"] > 8_000 && s["xdp_forwarded"] > 4 * s["forwarded"], "{s:?}");
    }
}

#[test]
fn a_guest_moves_through_loss_reordering_and_duplication() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let image = image();
    let i = TwoHosts::impaired(1500, &["--loss", "0.02", "--reorder", "0.05", "--duplicate", "0.01"])
        .expect("an impaired path");
    let h = &i.hosts;
    migrate_and_check(image, h.dir.path(), &h.ns_a, &h.a, &h.ns_b, &h.b);
}

/// A slowed-down migration (QEMU's cap, a 3 s timeout) across Fig. 1b, ready to be broken in
/// the middle: the source booted, the destination waiting.
struct ToBreak {
    // Field order is drop order: the guests before the testbed.
    src: Vm,
    dst: Vm,
    opts: MigrateOptions,
    f: Fig1,
    image: &'static GuestImage,
    _one: MutexGuard<'static, ()>,
}

impl ToBreak {
    fn new() -> ToBreak {
        let one = one_at_a_time();
        let image = image();
        let f = Fig1::new(true, 1500, false, false).expect("Fig. 1b");
        let mut src = vm(image, f.dir.path(), "src", &f.ns_a, &f.a, false);
        let dst = vm(image, f.dir.path(), "dst", &f.ns_b, &f.b, true);
        src.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("the source booted");
        let opts =
            MigrateOptions { max_bandwidth: 16 << 20, ..options(&src, &dst, &f.b, Duration::from_secs(3)) };
        ToBreak { src, dst, opts, f, image, _one: one }
    }

    /// Runs the migration while `breaker` breaks it (given the routers' namespaces, R1's and
    /// R2's, and the destination QEMU's pid); checks it failed in time, then that the source
    /// runs on and a fresh destination takes the guest.
    fn fails_with(self, breaker: impl FnOnce(&Netns, &Netns, u32) + Send) {
        let ToBreak { mut src, dst, opts, f, image, _one } = self;
        let t = Instant::now();
        let dst_pid = dst.pid();
        let (r1, r2) = (&f.ns_r1, f.ns_r2.as_ref().expect("Fig. 1b"));
        let e = std::thread::scope(|scope| {
            scope.spawn(move || breaker(r1, r2, dst_pid));
            drive(&opts).expect_err("the migration fails")
        });
        eprintln!("failed as it should, after {:?}: {e}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(15), "failed after {:?}", t.elapsed());
        match e {
            DriveError::Failed { status, .. } => assert_eq!(status, MigrationStatus::Failed),
            other => panic!("{other}"),
        }
        drop(dst);
        // (QMP takes one client at a time: this one goes before drive's.)
        let st = src.qmp(Duration::from_secs(10)).expect("source QMP").query_status().expect("status");
        assert!(st.running && st.status == RunState::Running, "the source VM runs on: {st:?}");
        let last = *ticks(&src.serial_text().expect("serial")).last().expect("ticks");
        src.wait_for_serial(
            |l| matches!(LoadLine::parse(l), Some(LoadLine::Tick(n)) if n > last + 5),
            PATIENCE,
        )
        .expect("and keeps ticking");
        // No xmigrate left behind on either side.
        let left = std::process::Command::new("pgrep")
            .args(["-f", &bin("xmigrate").to_string_lossy()])
            .output()
            .unwrap();
        assert!(left.stdout.is_empty(), "xmigrate still running: {}", String::from_utf8_lossy(&left.stdout));
        // The path back (the breaker's doing undone), the next attempt to a fresh destination
        // succeeds.
        nft_loss_egress(r1, "r1r2", 0).expect("the path back");
        nft_loss_egress(r2, "r2r1", 0).expect("the path back");
        let mut dst = vm(image, f.dir.path(), "dst2", &f.ns_b, &f.b, true);
        drive(&options(&src, &dst, &f.b, Duration::from_secs(10))).expect("the second attempt");
        let mut dq = dst.qmp(Duration::from_secs(10)).expect("destination QMP");
        assert_eq!(dq.query_status().expect("status").status, RunState::Running);
    }
}

#[test]
fn killing_the_receiver_leaves_the_source_running_and_a_second_attempt_succeeds() {
    if !require_root() {
        return;
    }
    ToBreak::new().fails_with(|_, _, dst_pid| {
        // The destination QEMU's child is `xmigrate recv`: killed a second after it starts.
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out =
                std::process::Command::new("pgrep").args(["-P", &dst_pid.to_string()]).output().unwrap();
            let pids = String::from_utf8_lossy(&out.stdout).to_string();
            if let Some(pid) = pids.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) {
                std::thread::sleep(Duration::from_millis(1000));
                // SAFETY: kill with a pid read from pgrep -P of our own QEMU.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            assert!(Instant::now() < until, "no receiver to kill");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn cutting_the_path_longer_than_the_timeout_leaves_the_source_running_and_a_second_attempt_succeeds() {
    if !require_root() {
        return;
    }
    ToBreak::new().fails_with(|r1, r2, _| {
        // The link between the two routers goes dark a second in, both ways, until restored.
        std::thread::sleep(Duration::from_millis(1000));
        nft_loss_egress(r1, "r1r2", 100).expect("cut");
        nft_loss_egress(r2, "r2r1", 100).expect("cut");
    });
}
