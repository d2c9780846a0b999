//! A real QEMU guest (TCG, 128 MiB, busy) migrated from host A to host B over XIA by xmigrate,
//! in the paper's testbeds: Fig. 1a (one AD, one router) and Fig. 1b (two ADs, across both
//! routers), and through loss, reordering and duplication. The guest's console keeps counting
//! where it left off and its memory checksum holds. Failures (the receiver killed, the path cut
//! longer than the timeout) leave the source VM running, both sides exit in time, and the next
//! attempt succeeds.
//!
//! Needs root and QEMU; under CI=true nothing skips. One guest pair at a time.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qemu_hooks::image::{build_static_bin, default_cache_dir, ImageBuilder};
use qemu_hooks::load::{LoadArgs, LoadLine};
use qemu_hooks::qmp::{MigrationStatus, RunState};
use qemu_hooks::vm::{Vm, VmConfig};
use qemu_hooks::GuestImage;
use xia_migrate::migrate::{drive, DriveError, MigrateOptions, Report};
use xia_tests::{bin, require_root, Fig1, Netns, TwoHosts, Xiad};

const PATIENCE: Duration = Duration::from_secs(60);

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A busy guest: a checksummed 32 MiB region, 1 MiB of another 16 MiB rewritten every 10 ms.
fn image() -> GuestImage {
    let load =
        LoadArgs { fill_mib: 32, tick_ms: 50, sum_secs: 1, dirty_mib: 16, dirty_every_ms: 10, seed: 7 };
    let guest = build_static_bin("qemu-hooks", "guest-load").expect("guest-load");
    ImageBuilder::new(default_cache_dir()).guest_load(guest, &load).build().expect("guest image")
}

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| match LoadLine::parse(l) {
            Some(LoadLine::Tick(n)) => Some(n),
            _ => None,
        })
        .collect()
}

fn sums(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| match LoadLine::parse(l) {
            Some(LoadLine::Sum(s)) => Some(s),
            _ => None,
        })
        .collect()
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
        qmp: src.qmp_path().to_path_buf(),
        dest_qmp: Some(dst.qmp_path().to_path_buf()),
        to: to.dag.split(' ').map(String::from).collect(),
        program: bin("xmigrate"),
        send_socket: None,
        recv_socket: None,
        timeout,
        max_bandwidth: 0,
        downtime_limit: None,
        give_up_after: Some(Duration::from_secs(60)),
        send_args: Vec::new(),
        recv_args: Vec::new(),
        quiet: false,
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
    assert!(!dst_text.contains("sum-bad"), "memory changed in transit:\n{dst_text}");
    let all = ticks(&format!("{src_text}{dst_text}"));
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(all, expected, "the tick count broke across the migration");
    let (s, d) = (sums(&src_text), sums(&dst_text));
    assert!(!d.is_empty() && s.iter().chain(&d).all(|&x| x == s[0]), "checksums differ: {s:x?} {d:x?}");
    assert_eq!(sq.query_status().expect("status").status, RunState::Postmigrate);
    eprintln!(
        "xmigrate: total {:?}, QEMU downtime {:?}, true downtime {:?}, {:.1} MiB sent; ticks {last} -> {}",
        report.total,
        report.qemu_downtime,
        report.true_downtime,
        report.ram_transferred as f64 / (1 << 20) as f64,
        ticks(&dst_text)[0]
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
    migrate_and_check(&image, f.dir.path(), &f.ns_a, &f.a, &f.ns_b, &f.b);
    let s = f.a.stats(&f.ns_a).expect("A's counters");
    assert_eq!(s["store_published_bytes"], 0, "nothing left published: {s:?}");
}

#[test]
fn a_guest_moves_across_two_ads_fig_1b() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let image = image();
    let f = Fig1::new(true, 1500, false, false).expect("Fig. 1b");
    migrate_and_check(&image, f.dir.path(), &f.ns_a, &f.a, &f.ns_b, &f.b);
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
    migrate_and_check(&image, h.dir.path(), &h.ns_a, &h.a, &h.ns_b, &h.b);
}

/// A failed migration: the source keeps running; a fresh destination then takes the guest.
fn after_a_failure(image: &GuestImage, dir: &Path, f: &Fig1, mut src: Vm, e: DriveError, t: Instant) {
    eprintln!("failed as it should, after {:?}: {e}", t.elapsed());
    match e {
        DriveError::Failed { status, .. } => assert_eq!(status, MigrationStatus::Failed),
        other => panic!("{other}"),
    }
    // (QMP takes one client at a time: this one goes before drive's.)
    let st = src.qmp(Duration::from_secs(10)).expect("source QMP").query_status().expect("status");
    assert!(st.running && st.status == RunState::Running, "the source VM runs on: {st:?}");
    let text = src.serial_text().expect("serial");
    let last = *ticks(&text).last().expect("ticks");
    src.wait_for_serial(|l| matches!(LoadLine::parse(l), Some(LoadLine::Tick(n)) if n > last + 5), PATIENCE)
        .expect("and keeps ticking");
    // No xmigrate left behind on either side.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &bin("xmigrate").to_string_lossy()])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "xmigrate still running: {}", String::from_utf8_lossy(&left.stdout));
    // The next attempt, to a fresh destination, succeeds.
    let mut dst = vm(image, dir, "dst2", &f.ns_b, &f.b, true);
    drive(&options(&src, &dst, &f.b, Duration::from_secs(10))).expect("the second attempt");
    let mut dq = dst.qmp(Duration::from_secs(10)).expect("destination QMP");
    assert_eq!(dq.query_status().expect("status").status, RunState::Running);
}

/// A migration slowed down (QEMU's cap) so that it can be broken in the middle.
fn slow_options(src: &Vm, dst: &Vm, to: &Xiad) -> MigrateOptions {
    MigrateOptions { max_bandwidth: 16 << 20, ..options(src, dst, to, Duration::from_secs(3)) }
}

#[test]
fn killing_the_receiver_leaves_the_source_running_and_a_second_attempt_succeeds() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let image = image();
    let f = Fig1::new(true, 1500, false, false).expect("Fig. 1b");
    let dir = f.dir.path().to_path_buf();
    let mut src = vm(&image, &dir, "src", &f.ns_a, &f.a, false);
    let dst = vm(&image, &dir, "dst", &f.ns_b, &f.b, true);
    src.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("the source booted");
    let opts = slow_options(&src, &dst, &f.b);
    let dst_pid = dst.pid();
    let killer = std::thread::spawn(move || {
        // The destination QEMU's child is `xmigrate recv`: killed once chunks flow.
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out =
                std::process::Command::new("pgrep").args(["-P", &dst_pid.to_string()]).output().unwrap();
            let pids = String::from_utf8_lossy(&out.stdout).to_string();
            if let Some(pid) = pids.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) {
                std::thread::sleep(Duration::from_millis(1000));
                // SAFETY: kill with a pid read from pgrep -P of our own QEMU.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let t = Instant::now();
    let e = drive(&opts).expect_err("the migration fails");
    assert!(killer.join().unwrap(), "the receiver was found and killed");
    assert!(t.elapsed() < Duration::from_secs(15), "failed after {:?}", t.elapsed());
    drop(dst);
    after_a_failure(&image, &dir, &f, src, e, t);
}

#[test]
fn cutting_the_path_longer_than_the_timeout_leaves_the_source_running_and_a_second_attempt_succeeds() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let image = image();
    let f = Fig1::new(true, 1500, false, false).expect("Fig. 1b");
    let dir = f.dir.path().to_path_buf();
    let mut src = vm(&image, &dir, "src", &f.ns_a, &f.a, false);
    let dst = vm(&image, &dir, "dst", &f.ns_b, &f.b, true);
    src.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("the source booted");
    let opts = slow_options(&src, &dst, &f.b);
    // The link between the two routers goes dark a second in, for good (until restored).
    let ns_r1 = f.ns_r1.name().to_string();
    let cutter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        let dev = "r1r2";
        let script = format!(
            "table netdev cut {{\n chain c {{\n type filter hook ingress device \"{dev}\" priority 0; policy drop;\n }}\n}}\n\
             table netdev cutout {{\n chain c {{\n type filter hook egress device \"{dev}\" priority 0; policy drop;\n }}\n}}\n"
        );
        let mut c = std::process::Command::new("ip")
            .args(["netns", "exec", &ns_r1, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    });
    let t = Instant::now();
    let e = drive(&opts).expect_err("the migration fails");
    cutter.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(15), "failed after {:?}", t.elapsed());
    drop(dst);
    for table in ["cut", "cutout"] {
        f.ns_r1.run(&["nft", "delete", "table", "netdev", table]).expect("the path back");
    }
    after_a_failure(&image, &dir, &f, src, e, t);
}
