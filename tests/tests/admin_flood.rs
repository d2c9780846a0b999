//! The router's admin socket flooded while pings cross both routers of Fig. 1b: hundreds of
//! connections that never send their command, some that stop in the middle of it, a line too
//! long, and bursts of real `stats` commands. Forwarding does not notice (the admin socket is
//! served off the forwarding path), the routes between the ADs never expire, `stats` still
//! answers within a second, the router's memory stays bounded, and what the router refused or
//! cut short is counted. Needs root; under CI=true it must run.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use xia_tests::probe::{rss_kb, within, xping};
use xia_tests::{re_words, require_root, Fig1};

/// One command over the admin socket, as `xia-router` sends it (a line in, the reply until the
/// router closes): the reply and how long it took from connecting.
fn command(admin: &Path, line: &str) -> Result<(Duration, String), String> {
    let t = Instant::now();
    let mut c = UnixStream::connect(admin).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    c.write_all(line.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    // A reset after the reply (what the router did not read) still leaves the reply.
    if let Err(e) = c.read_to_end(&mut reply) {
        if reply.is_empty() {
            return Err(format!("read: {e} after {:?}", t.elapsed()));
        }
    }
    Ok((t.elapsed(), String::from_utf8_lossy(&reply).into_owned()))
}

/// The counters of a `stats` reply.
fn counters(reply: &str) -> HashMap<String, u64> {
    reply
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

/// Opens idle connections to `admin` until `stop`: 200 at once, then 50 every 500 ms, one in
/// ten sending half a command (`stats` without its newline), the newest 400 kept open. The
/// connections still open when it stops, and how many it opened.
fn flood(admin: PathBuf, stop: Arc<AtomicBool>) -> (VecDeque<UnixStream>, u64) {
    let mut held = VecDeque::new();
    let mut opened = 0u64;
    let mut burst = 200;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..burst {
            // A connection the router closed at once still connects: only a router that does
            // not accept at all makes this fail (or wait).
            if let Ok(mut c) = UnixStream::connect(&admin) {
                if i % 10 == 0 {
                    let _ = c.write_all(b"stats");
                }
                held.push_back(c);
                opened += 1;
            }
        }
        while held.len() > 400 {
            held.pop_front();
        }
        burst = 50;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(500) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    (held, opened)
}

/// Until `stop`: every 500 ms a burst of 10 `stats` commands at once; each one's latency or
/// error. The router's largest RSS seen goes to `max_rss`.
fn probe(
    admin: PathBuf,
    pid: u32,
    stop: Arc<AtomicBool>,
    max_rss: Arc<AtomicU64>,
) -> Vec<Result<Duration, String>> {
    let mut results = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let burst: Vec<Result<Duration, String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..10).map(|_| s.spawn(|| command(&admin, "stats\n"))).collect();
            hs.into_iter()
                .map(|h| match h.join().expect("a stats request") {
                    Ok((d, r)) if r.starts_with("ok\n") && r.contains("forwarded ") => Ok(d),
                    Ok((d, r)) => Err(format!("after {d:?}: {}", r.lines().next().unwrap_or("(nothing)"))),
                    Err(e) => Err(e),
                })
                .collect()
        });
        results.extend(burst);
        max_rss.fetch_max(rss_kb(pid), Ordering::Relaxed);
        while t.elapsed() < Duration::from_millis(500) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    results
}

#[test]
fn an_admin_socket_flood_neither_stops_forwarding_nor_locks_the_admin_out() {
    if !require_root() {
        return;
    }
    let f = Fig1::new(true, 1500, false, false).unwrap();
    let r2 = f.r2.as_ref().unwrap();
    let ns_r2 = f.ns_r2.as_ref().unwrap();
    let admin = f.r1.admin.clone();
    let pid = f.r1.child.id();
    // The router faults its cache's memory in while idle after start: done before measuring.
    let warm =
        || f.r1.stats(&f.ns_r1).ok().and_then(|s| s.get("cache_memory_faulted_in").copied()).unwrap_or(0);
    within(Duration::from_secs(20), || warm() > 0).expect("the cache's memory is faulted in");
    let knows_ad2 = |routes: &str| {
        routes
            .lines()
            .any(|l| l.starts_with(&r2.ad) && (l.contains("proto beacon") || l.contains("proto routing")))
    };
    let routes = f.r1.admin(&f.ns_r1, &["route", "show"]).unwrap();
    assert!(knows_ad2(&routes), "R1 knows AD2 before the flood: {routes}");
    let before1 = f.r1.stats(&f.ns_r1).unwrap();
    let before2 = r2.stats(ns_r2).unwrap();
    let rss_before = rss_kb(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(rss_before));
    let (flood_tx, flood_rx) = mpsc::channel();
    {
        let (admin, stop) = (admin.clone(), stop.clone());
        std::thread::spawn(move || flood_tx.send(flood(admin, stop)));
    }
    // The probes start once the first 200 idle connections are in.
    std::thread::sleep(Duration::from_millis(300));
    let (probe_tx, probe_rx) = mpsc::channel();
    {
        let (admin, stop, max_rss) = (admin.clone(), stop.clone(), max_rss.clone());
        std::thread::spawn(move || probe_tx.send(probe(admin, pid, stop, max_rss)));
    }
    // A pings B across both routers: 10 s at 100 per second.
    let t = Instant::now();
    let out =
        xping(&f.ns_a, &f.a, &["-c", "1000", "-i", "0.01", "-W", "2", "-q", "--gaps"], &re_words(&f.b.dag))
            .output()
            .unwrap();
    let ping_time = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let ping = String::from_utf8_lossy(&out.stdout).into_owned()
        + &String::from_utf8_lossy(&out.stderr).lines().map(|l| format!("{l}\n")).collect::<String>();
    // A router that does not accept leaves the threads waiting in connect: they are left behind.
    let flood = flood_rx.recv_timeout(Duration::from_secs(5));
    let probes = probe_rx.recv_timeout(Duration::from_secs(10));
    let rss_after = rss_kb(pid);

    let (held, opened) = flood.as_ref().map_or((0, 0), |(h, n)| (h.len(), *n));
    let probes = probes.unwrap_or_default();
    let answered: Vec<Duration> = probes.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let failed: Vec<&String> = probes.iter().filter_map(|r| r.as_ref().err()).collect();
    let slowest = answered.iter().max().copied().unwrap_or_default();
    let mut sorted = answered.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let after1 = f.r1.stats(&f.ns_r1).unwrap_or_default();
    let after2 = r2.stats(ns_r2).unwrap_or_default();
    let d = |a: &HashMap<String, u64>, b: &HashMap<String, u64>, k: &str| {
        a.get(k).copied().unwrap_or(0).saturating_sub(b.get(k).copied().unwrap_or(0))
    };
    let admin_counters: Vec<String> =
        after1.iter().filter(|(k, _)| k.starts_with("admin_")).map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "admin flood: {opened} idle connections opened ({held} still held), pings in {ping_time:?}: {}; \
         {} stats answered (median {median:?}, slowest {slowest:?}), {} failed {:?}; \
         routes expired R1 {} R2 {}; RSS {rss_before} -> {rss_after} kB (max {} kB); {}",
        ping.lines()
            .filter(|l| l.contains("packets transmitted") || l.contains("gap") || l.starts_with("xping"))
            .collect::<Vec<_>>()
            .join(" / "),
        answered.len(),
        failed.len(),
        failed.iter().take(3).collect::<Vec<_>>(),
        d(&after1, &before1, "routes_expired"),
        d(&after2, &before2, "routes_expired"),
        max_rss.load(Ordering::Relaxed),
        admin_counters.join(", ")
    );

    // Forwarding went on as if nothing happened.
    assert!(ping.contains("1000 packets transmitted, 1000 received, 0% packet loss"), "{ping}");
    assert!(
        flood.is_ok() && opened >= 500,
        "the flood thread opened {opened} connections (stuck in connect?)"
    );
    // The routes between the ADs never expired (R1 and R2 kept hearing each other's beacons and
    // distance vectors), and R1 still knows AD2.
    assert_eq!(d(&after1, &before1, "routes_expired"), 0, "R1's routes expired during the flood");
    assert_eq!(d(&after2, &before2, "routes_expired"), 0, "R2's routes expired during the flood");
    let routes = f.r1.admin(&f.ns_r1, &["route", "show"]).unwrap();
    assert!(knows_ad2(&routes), "R1 knows AD2 after the flood: {routes}");
    // The admin socket kept answering, every time, within a second.
    assert!(answered.len() >= 150, "{} stats answered during the flood", answered.len());
    assert!(failed.is_empty(), "stats refused during the flood: {failed:?}");
    assert!(slowest < Duration::from_secs(1), "the slowest stats took {slowest:?}");
    // Memory stays bounded.
    let max_rss = max_rss.load(Ordering::Relaxed);
    assert!(max_rss < rss_before + 8 * 1024, "R1's RSS {rss_before} -> {max_rss} kB during the flood");
    // What was refused or cut short is counted: the first 200 connections came at once, beyond
    // the router's bound; the idle ones made room for the real commands.
    assert!(after1["admin_conns_refused"] > 0, "{admin_counters:?}");
    assert!(after1["admin_conns_evicted"] > 0, "{admin_counters:?}");
    assert!(after1["admin_commands"] >= answered.len() as u64, "{admin_counters:?}");

    // The connections still open (a partial command among them) run out of time to send theirs.
    let timeouts =
        || command(&admin, "stats\n").map(|(_, r)| counters(&r).get("admin_timeouts").copied().unwrap_or(0));
    let t0 = timeouts().unwrap();
    let waited = within(Duration::from_secs(8), || timeouts().is_ok_and(|t| t > t0));
    assert!(waited.is_some(), "idle connections are cut after the read deadline");
    drop(flood);
    // A line longer than the bound is refused with a reason, not buffered.
    let long = "x".repeat(16 << 10);
    let (_, reply) = command(&admin, &long).unwrap();
    assert!(reply.starts_with("error: ") && reply.contains("long"), "{reply}");
    let (_, reply) = command(&admin, "stats\n").unwrap();
    assert_eq!(counters(&reply)["admin_lines_too_long"], 1, "{reply}");
    // And the admin tool still works, as does the socket's protection.
    assert!(f.r1.admin(&f.ns_r1, &["info"]).unwrap().contains(&f.r1.hid));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the admin socket is its owner's alone");
}
