//! The guest image booted under TCG, and live-migrated between two QEMUs with QEMU's own
//! transports (`tcp:` across a veth, `exec:cat` through a FIFO), no XIA.
//!
//! Needs root (namespaces, taps) and QEMU; under `CI=true` nothing skips. The image is built
//! (or found) under the workspace's `target/qemu-guest/`, `guest-load` built static on first
//! use. One guest pair at a time (a process-wide lock): two TCG guests already fill the two
//! cores of the project's machines. Namespaces, taps and QEMUs are guards, so a failing
//! assertion still cleans up; every QEMU is stopped by its own pid.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qemu_hooks::image::load_image;
use qemu_hooks::load::{check_continuation, sums, ticks, LoadArgs, LoadLine};
use qemu_hooks::qmp::{true_downtime, MigrationParameters, RunState};
use qemu_hooks::tap::{Bridge, Tap};
use qemu_hooks::vm::{Vm, VmConfig};
use qemu_hooks::GuestImage;
use xia_testbed::{require_root, veth, Netns};

/// Upper bound for a boot or a migration to finish; reaching it fails the test.
const PATIENCE: Duration = Duration::from_secs(30);
const MAC: &str = "52:54:00:77:00:02";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes the lock that keeps guests one pair at a time, and removes what an earlier run killed
/// before its guards could drop left behind: its namespaces and temporary directories. (Its
/// QEMUs went with it: they get SIGTERM when the thread that started them dies.)
fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisoned it; the next may still run.
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for prefix in ["qh-a", "qh-b"] {
        let _ = Netns::remove_stale(prefix);
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            // qh-<what>-<pid>-<n>, as TempDir names them.
            let mut parts = name.rsplitn(3, '-');
            let (Some(_n), Some(pid), Some(head)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(pid) = pid.parse::<i32>() else { continue };
            if !["qh-boot", "qh-migrate"].contains(&head) || pid <= 0 {
                continue;
            }
            // SAFETY: kill with signal 0 only asks whether the pid exists.
            if unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    guard
}

/// A directory removed when dropped (serial logs, QMP sockets, FIFOs).
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("qh-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The image with `guest-load` and `load`, built or found in the shared cache.
fn image(load: &LoadArgs) -> GuestImage {
    let t = Instant::now();
    let image = load_image(load).unwrap_or_else(|e| panic!("guest image: {e}"));
    eprintln!("guest image ready in {:.1} s ({})", t.elapsed().as_secs_f64(), image.initrd.display());
    image
}

#[test]
fn boots_under_tcg_with_a_nic_and_answers_qmp() {
    if !require_root() {
        return;
    }
    let _one = one_at_a_time();
    let ns = Netns::new("qh-b").expect("netns");
    let bridge = Bridge::new(Some(&ns), "br0").expect("bridge");
    ns.run(&["ip", "addr", "add", "10.0.2.1/24", "dev", bridge.name()]).expect("bridge address");
    let tap = Tap::new(Some(&ns), "tap0", Some(bridge.name())).expect("tap");
    let dir = TempDir::new("boot");

    let image = image(&LoadArgs { fill_mib: 32, tick_ms: 100, sum_secs: 2, ..LoadArgs::default() });
    let config =
        VmConfig::new(dir.path(), "boot").mem_mib(128).nic(tap.name(), MAC).append("qh.ip=10.0.2.2/24");
    let started = Instant::now();
    let mut vm = Vm::start(&image, &config, Some(&ns)).expect("QEMU starts");
    let mut qmp = vm.qmp(Duration::from_secs(10)).expect("QMP");
    assert_eq!(qmp.version()["major"], 7, "QEMU 7.x expected: {}", qmp.version());

    vm.wait_for_serial(|l| l.starts_with("tick "), PATIENCE).expect("a tick line");
    let boot = started.elapsed();
    vm.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("a sum line");
    vm.wait_for_serial(|l| l == "tick 5", PATIENCE).expect("ticks go on");
    let lines = vm.serial_lines().expect("serial");
    assert!(lines.iter().any(|l| l == "qemu-hooks: eth0 up"), "eth0 did not come up:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains("failed")), "{}", lines.join("\n"));

    let status = qmp.query_status().expect("query-status");
    assert_eq!(status.status, RunState::Running);
    assert!(status.running);

    // The NIC works both ways: the host pings the guest across the tap and the bridge.
    ns.run(&["busybox", "ping", "-c", "1", "-w", "10", "10.0.2.2"]).expect("the guest answers pings");

    // A paused guest stops ticking; `cont` resumes it.
    qmp.stop().expect("stop");
    assert_eq!(qmp.query_status().expect("query-status").status, RunState::Paused);
    qmp.wait_event("STOP", Duration::from_secs(5)).expect("STOP event");
    qmp.cont().expect("cont");
    qmp.wait_event("RESUME", Duration::from_secs(5)).expect("RESUME event");

    let sum = sums(&vm.serial_text().expect("serial"))[0];
    eprintln!("booted to the first tick in {:.2} s (TCG, 128 MiB, sum {sum:016x})", boot.as_secs_f64());
    qmp.quit().expect("quit");
    assert!(vm.wait_exit(Duration::from_secs(10)).expect("wait").is_some(), "QEMU exits after quit");
}

/// How the migration stream goes from source to destination.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// `tcp:` from namespace A to namespace B over a veth.
    Tcp,
    /// `exec:` on both sides, `cat` into and out of a FIFO; the source's command also checks
    /// that it inherited the environment given to QEMU.
    ExecFifo,
}

fn migrate(transport: Transport) {
    let _one = one_at_a_time();
    let ns_a = Netns::new("qh-a").expect("netns a");
    let ns_b = Netns::new("qh-b").expect("netns b");
    veth(&ns_a, "veth-a", &ns_b, "veth-b", 1500).expect("veth");
    ns_a.run(&["ip", "addr", "add", "10.0.9.1/24", "dev", "veth-a"]).expect("address a");
    ns_b.run(&["ip", "addr", "add", "10.0.9.2/24", "dev", "veth-b"]).expect("address b");
    // The same NIC on both sides (a tap of the same name in each namespace, the same MAC), so
    // virtio-net's state travels too.
    let _tap_a = Tap::new(Some(&ns_a), "tap0", None).expect("tap a");
    let _tap_b = Tap::new(Some(&ns_b), "tap0", None).expect("tap b");
    let dir = TempDir::new("migrate");

    // A busy guest: 1 MiB of a 16 MiB region rewritten every 10 ms (100 MiB/s), so that pages
    // are dirtied while they are sent. (A 128 MiB guest has about 65 MiB free for its program.)
    let load =
        LoadArgs { fill_mib: 32, tick_ms: 50, sum_secs: 1, dirty_mib: 16, dirty_every_ms: 10, seed: 7 };
    let image = image(&load);
    let side = |name: &str| VmConfig::new(dir.path(), name).mem_mib(128).nic("tap0", MAC);
    let src_config = side("src").env("QH_MARK", "inherited");
    let dst_config = side("dst").incoming();
    let mut src = Vm::start(&image, &src_config, Some(&ns_a)).expect("source QEMU");
    let mut dst = Vm::start(&image, &dst_config, Some(&ns_b)).expect("destination QEMU");
    let mut sq = src.qmp(Duration::from_secs(10)).expect("source QMP");
    let mut dq = dst.qmp(Duration::from_secs(10)).expect("destination QMP");
    assert_eq!(dq.query_status().expect("status").status, RunState::Inmigrate);

    src.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("source booted");
    src.wait_for_serial(|l| l == "tick 20", PATIENCE).expect("source ticks");

    for q in [&mut sq, &mut dq] {
        q.set_capabilities(&[("events", true)]).expect("capabilities");
    }
    // QEMU 7.2's default cap is 128 MiB/s: lift it, or the figures measure the cap.
    sq.set_parameters(&MigrationParameters { max_bandwidth: Some(8 << 30), downtime_limit_ms: None })
        .expect("parameters");

    let fifo = dir.path().join("stream.fifo");
    let (incoming, outgoing) = match transport {
        Transport::Tcp => ("tcp:10.0.9.2:4444".to_string(), "tcp:10.0.9.2:4444".to_string()),
        Transport::ExecFifo => {
            let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
            assert!(status.success());
            (
                format!("exec:exec cat {}", fifo.display()),
                format!("exec:test \"$QH_MARK\" = inherited && exec cat > {}", fifo.display()),
            )
        }
    };
    dq.migrate_incoming(&incoming).expect("migrate-incoming");
    sq.migrate(&outgoing).expect("migrate");
    let info = sq.wait_migration(PATIENCE).unwrap_or_else(|e| {
        panic!(
            "migration: {e}\nsource stderr: {}\ndestination stderr: {}",
            src.stderr_tail(),
            dst.stderr_tail()
        )
    });
    let resume = dq.wait_event("RESUME", Duration::from_secs(10)).expect("the destination resumes");
    let stop = sq
        .take_events()
        .expect("source events")
        .into_iter()
        .find(|e| e.name == "STOP")
        .expect("the source stopped (STOP event)");
    let true_down = true_downtime(&stop, &resume).expect("RESUME after STOP");
    assert_eq!(sq.query_status().expect("status").status, RunState::Postmigrate);
    assert_eq!(dq.query_status().expect("status").status, RunState::Running);

    // The source's console is final now; the destination's continues it.
    let src_text = src.serial_text().expect("source serial");
    let src_ticks = ticks(&src_text);
    let last_src = *src_ticks.last().expect("source ticks");
    dst.wait_for_serial(
        |l| matches!(LoadLine::parse(l), Some(LoadLine::Tick(n)) if n >= last_src + 10),
        PATIENCE,
    )
    .expect("the destination keeps ticking");
    dst.wait_for_serial(|l| l.starts_with("sum "), PATIENCE).expect("the destination checks its memory");
    let dst_text = dst.serial_text().expect("destination serial");
    let c = check_continuation(&src_text, &dst_text).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.destination_sums > 0);
    let (first_dst, sum) = (c.first_destination_tick, c.sum);

    let ram = info.ram.clone().unwrap_or_default();
    eprintln!(
        "migration {transport:?}: total {} ms, QEMU downtime {} ms, true downtime {:.1} ms (STOP -> RESUME), \
         setup {} ms, {:.1} MiB sent of {} MiB ({} pages whole, {} zero, {} rounds), {:.0} Mbit/s; last source tick {last_src}, first destination \
         tick {first_dst}, sum {sum:016x}",
        info.total_time_ms.unwrap_or(0),
        info.downtime_ms.unwrap_or(0),
        true_down.as_secs_f64() * 1e3,
        info.setup_time_ms.unwrap_or(0),
        ram.transferred as f64 / (1 << 20) as f64,
        ram.total >> 20,
        ram.normal,
        ram.duplicate,
        ram.dirty_sync_count,
        ram.mbps,
    );
    assert!(info.total_time_ms.is_some() && info.downtime_ms.is_some(), "{info:?}");
    assert!(true_down < PATIENCE, "true downtime {true_down:?}");

    sq.quit().expect("quit source");
    dq.quit().expect("quit destination");
    for vm in [&mut src, &mut dst] {
        assert!(vm.wait_exit(Duration::from_secs(10)).expect("wait").is_some(), "QEMU exits after quit");
    }
}

#[test]
fn migrates_over_tcp_between_namespaces() {
    if !require_root() {
        return;
    }
    migrate(Transport::Tcp);
}

#[test]
fn migrates_over_exec_cat_through_a_fifo() {
    if !require_root() {
        return;
    }
    migrate(Transport::ExecFifo);
}
