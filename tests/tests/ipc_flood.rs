//! Host A's `xiad` flooded with unfinished messages while pings cross R1 in Fig. 1a: 64 local
//! connections each announce a 16 MiB chunk, send 4 MiB of it and then nothing. The daemon
//! holds no more than its buffer budget (the connections it has no room for wait, unread), a
//! real 16 MiB chunk is still published on A and fetched by B during the flood, no ping is lost,
//! and the stalled connections are closed (sooner while others wait for room) and counted.
//! Needs root; under CI=true it must run.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xia_core::ipc::{codec, Request, Response};
use xia_tests::probe::{pings_received, rss_kb, within, xping};
use xia_tests::{field, re_words, require_root, run_ok, Child, Fig1};

const MIB: usize = 1 << 20;
/// Flooding connections.
const CONNS: usize = 64;
/// What each announces, and sends of it.
const ANNOUNCED: usize = 16 * MIB;
const SENT: usize = 4 * MIB;
/// xiad's defaults (`--ipc-buffer-mib`, `--ipc-idle-secs`), and how soon a stalled connection
/// goes while others wait for room.
const BUDGET: u64 = 256 << 20;
const IDLE: Duration = Duration::from_secs(10);
const PRESSED_IDLE: Duration = xia_core::daemon::PRESSED_IDLE;

/// What became of one flooding connection, in time since the flood began.
#[derive(Debug, Default)]
struct Stalled {
    /// Its 4 MiB were written (the daemon may have kept it waiting for room).
    sent: Option<Duration>,
    /// The daemon closed it.
    closed: Option<Duration>,
    /// What the daemon said before closing it.
    said: Option<String>,
    error: Option<String>,
}

/// One flooding connection: the hello, a chunk announced, part of it, then nothing until the
/// daemon closes it or `stop`.
fn stall(socket: &Path, part: &[u8], t0: Instant, stop: &AtomicBool) -> Stalled {
    let mut out = Stalled::default();
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("connect: {e}"));
            return out;
        }
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(40)));
    let mut head = codec::hello().to_vec();
    head.extend(codec::encode_head(&Request::ChunkPut, ANNOUNCED));
    if let Err(e) = s.write_all(&head).and_then(|()| s.write_all(part)) {
        out.closed = Some(t0.elapsed());
        out.error = Some(format!("write: {e}"));
        return out;
    }
    out.sent = Some(t0.elapsed());
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                continue
            }
            Err(e) => {
                out.error = Some(format!("read: {e}"));
                break;
            }
        }
    }
    if stop.load(Ordering::Relaxed) {
        return out;
    }
    out.closed = Some(t0.elapsed());
    // The daemon's hello, then its reason.
    let frame = got.get(codec::HELLO_LEN..).unwrap_or_default();
    if let Ok(Some(p)) = codec::Prefix::parse(frame) {
        if let Some(Ok(Response::Error { message, .. })) =
            frame.get(codec::PREFIX_LEN..codec::PREFIX_LEN + p.head).map(codec::decode::<Response>)
        {
            out.said = Some(message);
        }
    }
    out
}

fn stats(f: &Fig1) -> HashMap<String, u64> {
    f.a.stats(&f.ns_a).unwrap()
}

#[test]
fn unfinished_messages_flooding_xiad_are_bounded_and_evicted_while_pings_and_chunks_go_on() {
    if !require_root() {
        return;
    }
    let f = Fig1::new(false, 1500, false, false).unwrap();
    let pid = f.a.child.id();
    let socket: PathBuf = f.a.socket.clone();
    let before = stats(&f);
    assert_eq!(before["ipc_buffer_limit"], BUDGET, "{before:?}");
    let rss_before = rss_kb(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, max_rss) = (stop.clone(), max_rss.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_rss.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // The flood.
    let t0 = Instant::now();
    let part: Arc<Vec<u8>> = Arc::new((0..SENT).map(|i| (i % 253) as u8).collect());
    let flood: Vec<_> = (0..CONNS)
        .map(|_| {
            let (socket, part, stop) = (socket.clone(), part.clone(), stop.clone());
            std::thread::spawn(move || stall(&socket, &part, t0, &stop))
        })
        .collect();
    // Pings across R1 all along: A to B (through A's daemon's socket too), C to A.
    let pings: Vec<_> = [
        xping(&f.ns_a, &f.a, &["-c", "1000", "-i", "0.01", "-W", "2", "-q"], &re_words(&f.b.dag)),
        xping(&f.ns_c, &f.c, &["-c", "1000", "-i", "0.01", "-W", "2", "-q"], &re_words(&f.a.dag)),
    ]
    .into_iter()
    .map(|mut c| {
        std::thread::spawn(move || c.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()))
    })
    .collect();
    // The budget fills up: the connections it has no room for wait.
    let filled = within(Duration::from_secs(10), || stats(&f)["ipc_budget_waits"] > 0);
    let during = stats(&f);
    assert!(filled.is_some(), "nobody waits for room: {during:?}");
    // A real chunk of the largest size, published on A meanwhile and fetched by B.
    let manifest = f.dir.path().join("manifest");
    let mut serve = f.a.xia(&f.ns_a);
    serve.args([
        "chunk-serve",
        "--bytes",
        "16777216",
        "--chunk-size",
        "16777216",
        "--seed",
        "5",
        "--manifest",
    ]);
    serve.arg(&manifest);
    let t_serve = t0.elapsed();
    let mut serve = Child::spawn(serve).unwrap();
    let served = serve.wait_for_line(|l| l.starts_with("sha256 "), Duration::from_secs(30)).unwrap();
    let published = t0.elapsed();
    let mut fetch = f.b.xia(&f.ns_b);
    fetch.arg("chunk-fetch").arg(&manifest);
    let fetched = run_ok(fetch);
    let fetched_at = t0.elapsed();
    assert_eq!(field(&served, "sha256 "), field(&fetched, "sha256 "), "{served}\n{fetched}");
    assert!(fetched.contains("in 1 chunks"), "{fetched}");

    let pings: Vec<String> = pings.into_iter().map(|p| p.join().unwrap().unwrap()).collect();
    let pinged = t0.elapsed();
    // Every flooding connection is closed in the end: those that held room while others waited
    // after PRESSED_IDLE, the rest after IDLE.
    let all_evicted = within(Duration::from_secs(25), || {
        stats(&f)["ipc_evicted_idle"] - before["ipc_evicted_idle"] >= CONNS as u64
    });
    let evicted_at = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let stalled: Vec<Stalled> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    sampler.join().unwrap();
    let after = stats(&f);
    let max_rss = max_rss.load(Ordering::Relaxed);
    let rss_after = rss_kb(pid);
    drop(serve);

    let mut closed: Vec<(Duration, Duration)> =
        stalled.iter().filter_map(|s| Some((s.sent?, s.closed? - s.sent?))).collect();
    closed.sort();
    let ipc: Vec<String> =
        after.iter().filter(|(k, _)| k.starts_with("ipc_")).map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "ipc flood: budget filled after {filled:?} ({} MiB buffered, {} waiting); chunk-serve started at \
         {t_serve:?}, published at {published:?}, fetched by B at {fetched_at:?}; pings done at \
         {pinged:?}: {:?}; all {CONNS} evicted at {evicted_at:?} ({all_evicted:?} waited); \
         (sent at, closed after) {:?}; RSS {rss_before} kB -> max {max_rss} kB, now {rss_after} kB; {}",
        during["ipc_buffered_bytes"] >> 20,
        during["ipc_waiting"],
        pings.iter().map(|p| p.lines().find(|l| l.contains("transmitted")).unwrap_or(p)).collect::<Vec<_>>(),
        closed.iter().map(|(s, c)| (s.as_millis(), c.as_millis())).collect::<Vec<_>>(),
        ipc.join(", ")
    );

    // No ping lost, either way.
    for p in &pings {
        assert_eq!(pings_received(p), Some(1000), "{p}");
    }
    // Memory stays bounded: the budget and some (one finisher's message, a chunk being named,
    // the published chunk in the store).
    assert!(max_rss < (BUDGET >> 10) + 128 * 1024, "A's xiad RSS {rss_before} -> {max_rss} kB");
    assert!(after["ipc_buffered_peak"] <= BUDGET + 2 * ANNOUNCED as u64, "{ipc:?}");
    assert!(during["ipc_buffered_bytes"] >= BUDGET / 2, "the flood took room: {during:?}");
    // Some waited for room; all were closed, and counted; nothing is held any more (but the
    // read buffer of the connection asking).
    assert!(after["ipc_budget_waits"] > 0, "{ipc:?}");
    assert!(all_evicted.is_some(), "{ipc:?}");
    assert_eq!(after["ipc_evicted_idle"] - before["ipc_evicted_idle"], CONNS as u64, "{ipc:?}");
    assert!(after["ipc_buffered_bytes"] <= 64 << 10, "{ipc:?}");
    assert_eq!(after["ipc_waiting"], 0, "{ipc:?}");
    for s in &stalled {
        assert!(s.sent.is_some() && s.closed.is_some(), "a flooding connection: {s:?}");
        assert!(s.said.as_deref().is_some_and(|m| m.contains("no progress")), "{s:?}");
    }
    // None was closed before it stalled for PRESSED_IDLE; those closed once nobody waited any
    // more (the last ones), only after IDLE.
    let slack = Duration::from_millis(400);
    assert!(closed.iter().all(|&(_, after)| after + slack >= PRESSED_IDLE), "{closed:?}");
    assert!(closed.iter().any(|&(_, after)| after < IDLE), "none went sooner under pressure: {closed:?}");
    let last = closed.iter().map(|&(s, a)| s + a).max().unwrap();
    assert!(
        closed
            .iter()
            .filter(|&&(s, a)| s + a + Duration::from_secs(1) >= last)
            .all(|&(_, a)| a + slack >= IDLE),
        "{closed:?}"
    );
}
